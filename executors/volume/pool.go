package volume

import (
	"errors"
	"fmt"
	"os"

	"libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"
)

// EnsurePool returns the libvirt directory storage pool called name,
// defining it on path (created if missing), starting it and marking it
// autostart when that is not done yet. An existing pool is adopted as it
// is, wherever its directory lies: Path reports where that is.
func EnsurePool(conn *libvirt.Connect, name, path string) (*libvirt.StoragePool, error) {
	pool, err := conn.LookupStoragePoolByName(name)
	if err != nil {
		if !IsCode(err, libvirt.ERR_NO_STORAGE_POOL) {
			return nil, fmt.Errorf("storage pool %s: %w", name, err)
		}
		if err := os.MkdirAll(path, PoolDirMode); err != nil {
			return nil, fmt.Errorf("storage pool %s: %w", name, err)
		}
		doc, err := (&libvirtxml.StoragePool{
			Type:   "dir",
			Name:   name,
			Target: &libvirtxml.StoragePoolTarget{Path: path},
		}).Marshal()
		if err != nil {
			return nil, fmt.Errorf("storage pool %s: %w", name, err)
		}
		pool, err = conn.StoragePoolDefineXML(doc, 0)
		if err != nil {
			// Another caller may have defined it meanwhile.
			var lerr error
			if pool, lerr = conn.LookupStoragePoolByName(name); lerr != nil {
				return nil, fmt.Errorf("define storage pool %s: %w", name, err)
			}
		}
	}
	active, err := pool.IsActive()
	if err != nil {
		pool.Free()
		return nil, fmt.Errorf("storage pool %s: %w", name, err)
	}
	if !active {
		// A pool whose directory was removed does not start: make it again
		// (the pool is adopted wherever it lies, see above).
		if dir, err := PoolPath(pool); err == nil {
			if err := os.MkdirAll(dir, PoolDirMode); err != nil {
				pool.Free()
				return nil, fmt.Errorf("storage pool %s: %w", name, err)
			}
		}
		if err := pool.Create(0); err != nil {
			if active, _ := pool.IsActive(); !active {
				pool.Free()
				return nil, fmt.Errorf("start storage pool %s: %w", name, err)
			}
		}
	}
	if dir, err := PoolPath(pool); err == nil {
		if err := TightenDir(dir, PoolDirMode); err != nil {
			pool.Free()
			return nil, fmt.Errorf("storage pool %s: %w", name, err)
		}
	}
	if auto, err := pool.GetAutostart(); err == nil && !auto {
		if err := pool.SetAutostart(true); err != nil {
			pool.Free()
			return nil, fmt.Errorf("autostart storage pool %s: %w", name, err)
		}
	}
	return pool, nil
}

// PoolDirMode is the mode of kiln's pool directories: searchable, so that
// QEMU (which libvirt may run as another user, after giving it the files of
// a guest) opens the files by path, but not listable; the files themselves
// (images, overlays, seeds with user_data) are 0600.
const PoolDirMode = 0o711

// TightenDir takes away from dir's mode the bits perm does not have.
func TightenDir(dir string, perm os.FileMode) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if m := fi.Mode().Perm(); m&^perm != 0 {
		return os.Chmod(dir, m&perm)
	}
	return nil
}

// PoolPath is the directory of a directory storage pool.
func PoolPath(pool *libvirt.StoragePool) (string, error) {
	doc, err := pool.GetXMLDesc(0)
	if err != nil {
		return "", err
	}
	var x libvirtxml.StoragePool
	if err := x.Unmarshal(doc); err != nil {
		return "", err
	}
	if x.Target == nil || x.Target.Path == "" {
		return "", fmt.Errorf("storage pool %s has no target path", x.Name)
	}
	return x.Target.Path, nil
}

// IsCode reports whether err is a libvirt error with the given code.
func IsCode(err error, code libvirt.ErrorNumber) bool {
	var lerr libvirt.Error
	return errors.As(err, &lerr) && lerr.Code == code
}
