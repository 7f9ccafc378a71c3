// Package volume runs volume resources: qcow2 or raw disks in the libvirt
// directory storage pool "kiln-volumes", created at a size in bytes, grown
// in place, deleted idempotently.
//
// A libvirt volume cannot carry metadata, so its owner is written in its
// name: "kiln_<stack>_<address>.<format>", both parts sanitized, or
// "kiln_<project>_<stack>_<address>.<format>" outside the default project
// (see BaseName).
// The server executor keeps its overlays and seeds in the same pool under
// the same scheme.
package volume

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"

	"libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/kiln-dev/kiln/executors"
	"github.com/kiln-dev/kiln/executors/kinds"
)

// PoolName is the libvirt storage pool that holds kiln's volumes.
const PoolName = "kiln-volumes"

// NamePrefix starts the name of every volume kiln makes in the pool.
const NamePrefix = kinds.VolumeNamePrefix

// Formats a volume can have.
const (
	QCOW2 = kinds.QCOW2
	Raw   = kinds.Raw
)

// ErrShrink is returned by Update when the requested size is below the
// current one: shrinking a disk would cut the guest's file system.
var ErrShrink = errors.New("volumes only grow: shrinking would destroy data")

// Spec is the desired state of one volume resource.
type Spec struct {
	Stack   string
	Address string // volume.data[0]
	Size    int64  // bytes
	Format  string // qcow2 (default) or raw
}

// Volume is what is really in the pool.
type Volume struct {
	Name       string // libvirt volume (and file) name
	Path       string
	Format     string
	Size       int64 // capacity in bytes, as the guest sees it
	Allocation int64 // bytes used on the host
	// Stack and Address as decoded from the name: sanitized, so only good
	// for display; compare Name with Name(stack, address) to match.
	Stack, Address string
}

// Driver creates and removes volumes in the kiln-volumes pool.
type Driver struct {
	conn *libvirt.Connect
	pool *libvirt.StoragePool
	dir  string
	mu   sync.Mutex // serializes pool refreshes
}

// New makes sure the pool exists (under dataDir/volumes when it has to be
// defined) and returns a driver using it.
func New(conn *libvirt.Connect, dataDir string) (*Driver, error) {
	pool, err := EnsurePool(conn, PoolName, filepath.Join(dataDir, "volumes"))
	if err != nil {
		return nil, err
	}
	dir, err := PoolPath(pool)
	if err != nil {
		pool.Free()
		return nil, fmt.Errorf("storage pool %s: %w", PoolName, err)
	}
	return &Driver{conn: conn, pool: pool, dir: dir}, nil
}

// Close frees the driver's pool handle (not the pool).
func (d *Driver) Close() error { return d.pool.Free() }

// Pool is the libvirt pool handle, for executors that keep files beside
// volumes (server overlays and seeds).
func (d *Driver) Pool() *libvirt.StoragePool { return d.pool }

// Dir is the pool's directory.
func (d *Driver) Dir() string { return d.dir }

// BaseName is the owner-carrying stem of a volume's name, without format
// suffix (kinds.VolumeBaseName).
func BaseName(scope, address string) string { return kinds.VolumeBaseName(scope, address) }

// Name is the pool volume name of a volume resource of the given format
// (kinds.VolumeName).
func Name(stack, address, format string) string { return kinds.VolumeName(stack, address, format) }

func formatOf(f string) (string, error) {
	switch f {
	case "", QCOW2:
		return QCOW2, nil
	case Raw:
		return Raw, nil
	}
	return "", fmt.Errorf("volume format %q: want qcow2 or raw", f)
}

// refresh rescans the pool directory, so files added or removed behind
// libvirt's back are seen. Errors (a refresh refused while another volume
// is being built) are ignored: the next refresh catches up.
func (d *Driver) refresh() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pool.Refresh(0)
}

// Lookup finds a volume of the pool by name, rescanning once if libvirt
// does not know it or knows a file that is gone. It returns an error
// wrapping executors.ErrNotFound when there is no such volume.
func (d *Driver) Lookup(name string) (Volume, error) {
	for attempt := 0; ; attempt++ {
		v, err := d.lookupOnce(name)
		if err == nil || attempt > 0 || !errors.Is(err, executors.ErrNotFound) {
			return v, err
		}
		d.refresh()
	}
}

func (d *Driver) lookupOnce(name string) (Volume, error) {
	vol, err := d.pool.LookupStorageVolByName(name)
	if err != nil {
		if IsCode(err, libvirt.ERR_NO_STORAGE_VOL) {
			return Volume{}, fmt.Errorf("volume %s: %w", name, executors.ErrNotFound)
		}
		return Volume{}, fmt.Errorf("volume %s: %w", name, err)
	}
	defer vol.Free()
	doc, err := vol.GetXMLDesc(0)
	if err != nil {
		if IsCode(err, libvirt.ERR_NO_STORAGE_VOL) || IsCode(err, libvirt.ERR_SYSTEM_ERROR) {
			return Volume{}, fmt.Errorf("volume %s: %w", name, executors.ErrNotFound)
		}
		return Volume{}, fmt.Errorf("volume %s: %w", name, err)
	}
	var x libvirtxml.StorageVolume
	if err := x.Unmarshal(doc); err != nil {
		return Volume{}, fmt.Errorf("volume %s: %w", name, err)
	}
	v := Volume{Name: name}
	if x.Target != nil {
		v.Path = x.Target.Path
		if x.Target.Format != nil {
			v.Format = x.Target.Format.Type
		}
	}
	if x.Capacity != nil {
		v.Size = int64(scale(x.Capacity))
	}
	if x.Allocation != nil {
		v.Allocation = int64(scale(x.Allocation))
	}
	v.Stack, v.Address = parseName(name)
	return v, nil
}

func scale(s *libvirtxml.StorageVolumeSize) uint64 {
	switch s.Unit {
	case "", "bytes", "B", "b":
		return s.Value
	case "KiB", "K", "k":
		return s.Value << 10
	case "MiB", "M":
		return s.Value << 20
	case "GiB", "G":
		return s.Value << 30
	}
	return s.Value
}

// parseName reads scope and address back from a volume's name (sanitized:
// for display only).
func parseName(name string) (scope, address string) {
	rest, ok := strings.CutPrefix(name, NamePrefix)
	if !ok {
		return "", ""
	}
	if i := strings.LastIndexByte(rest, '.'); i >= 0 {
		rest = rest[:i]
	}
	parts := strings.SplitN(rest, "_", 3)
	switch len(parts) {
	case 3:
		return parts[0] + "/" + parts[1], parts[2]
	case 2:
		return parts[0], parts[1]
	}
	return rest, ""
}

// Read returns the volume of a resource as it is in the pool, trying both
// formats, or an error wrapping executors.ErrNotFound.
func (d *Driver) Read(ctx context.Context, stack, address string) (Volume, error) {
	if err := ctx.Err(); err != nil {
		return Volume{}, err
	}
	for _, f := range []string{QCOW2, Raw} {
		v, err := d.Lookup(Name(stack, address, f))
		if !errors.Is(err, executors.ErrNotFound) {
			return v, err
		}
	}
	return Volume{}, fmt.Errorf("volume %s/%s: %w", stack, address, executors.ErrNotFound)
}

// Create makes the volume, or adopts the one that exists (growing it when
// it is smaller than asked; it is never shrunk).
func (d *Driver) Create(ctx context.Context, spec Spec) (Volume, error) {
	if err := ctx.Err(); err != nil {
		return Volume{}, err
	}
	format, err := formatOf(spec.Format)
	if err != nil {
		return Volume{}, err
	}
	if spec.Size <= 0 {
		return Volume{}, fmt.Errorf("volume %s/%s: size %d: must be positive", spec.Stack, spec.Address, spec.Size)
	}
	name := Name(spec.Stack, spec.Address, format)
	if v, err := d.Lookup(name); err == nil {
		if v.Size < spec.Size {
			return d.resize(v, spec.Size)
		}
		return v, nil
	} else if !errors.Is(err, executors.ErrNotFound) {
		return v, err
	}
	v, err := CreateIn(d.pool, libvirtxml.StorageVolume{
		Name:       name,
		Capacity:   &libvirtxml.StorageVolumeSize{Unit: "bytes", Value: uint64(spec.Size)},
		Allocation: &libvirtxml.StorageVolumeSize{Unit: "bytes", Value: 0},
		Target:     &libvirtxml.StorageVolumeTarget{Format: &libvirtxml.StorageVolumeTargetFormat{Type: format}},
	})
	if err != nil {
		// A concurrent Create may have won the race: adopt its volume.
		if v, lerr := d.Lookup(name); lerr == nil {
			return v, nil
		}
		return Volume{}, fmt.Errorf("create volume %s: %w", name, err)
	}
	return d.Lookup(v)
}

// CreateIn creates a volume in pool from its XML description and returns
// its name.
func CreateIn(pool *libvirt.StoragePool, x libvirtxml.StorageVolume) (string, error) {
	doc, err := x.Marshal()
	if err != nil {
		return "", err
	}
	vol, err := pool.StorageVolCreateXML(doc, 0)
	if err != nil {
		return "", err
	}
	vol.Free()
	return x.Name, nil
}

// Update grows the volume to spec.Size in place. A smaller size is refused
// with ErrShrink; the same size does nothing. A volume held open by a
// running guest is grown by the server executor (block resize) instead.
func (d *Driver) Update(ctx context.Context, spec Spec) (Volume, error) {
	if err := ctx.Err(); err != nil {
		return Volume{}, err
	}
	v, err := d.Read(ctx, spec.Stack, spec.Address)
	if err != nil {
		return v, err
	}
	if f, _ := formatOf(spec.Format); f != v.Format {
		return v, fmt.Errorf("volume %s: format %s cannot change to %s in place", v.Name, v.Format, f)
	}
	switch {
	case spec.Size < v.Size:
		return v, fmt.Errorf("volume %s: size %d is below current %d: %w", v.Name, spec.Size, v.Size, ErrShrink)
	case spec.Size == v.Size:
		return v, nil
	}
	return d.resize(v, spec.Size)
}

func (d *Driver) resize(v Volume, size int64) (Volume, error) {
	vol, err := d.pool.LookupStorageVolByName(v.Name)
	if err != nil {
		return v, fmt.Errorf("grow volume %s: %w", v.Name, err)
	}
	defer vol.Free()
	if err := vol.Resize(uint64(size), 0); err != nil {
		return v, fmt.Errorf("grow volume %s to %d bytes: %w", v.Name, size, err)
	}
	return d.Lookup(v.Name)
}

// Delete removes the volume of a resource in whichever format it has. A
// volume that is already gone is not an error.
func (d *Driver) Delete(ctx context.Context, stack, address string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, f := range []string{QCOW2, Raw} {
		if err := d.DeleteName(Name(stack, address, f)); err != nil {
			return err
		}
	}
	return nil
}

// DeleteName removes a volume of the pool by name; a missing one is fine.
func (d *Driver) DeleteName(name string) error {
	vol, err := d.pool.LookupStorageVolByName(name)
	if err != nil {
		if IsCode(err, libvirt.ERR_NO_STORAGE_VOL) {
			return nil
		}
		return fmt.Errorf("delete volume %s: %w", name, err)
	}
	defer vol.Free()
	if err := vol.Delete(0); err != nil {
		if IsCode(err, libvirt.ERR_NO_STORAGE_VOL) {
			return nil
		}
		// The file was removed behind libvirt's back: forget it.
		if _, lerr := d.Lookup(name); errors.Is(lerr, executors.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("delete volume %s: %w", name, err)
	}
	return nil
}

// List returns every kiln-made volume of the pool (volumes, and the
// overlays and seeds of servers), for `kiln gc`.
func (d *Driver) List(ctx context.Context) ([]Volume, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d.refresh()
	names, err := d.pool.ListStorageVolumes()
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	var out []Volume
	for _, n := range names {
		if !strings.HasPrefix(n, NamePrefix) {
			continue
		}
		v, err := d.Lookup(n)
		if errors.Is(err, executors.ErrNotFound) {
			continue
		}
		if err != nil {
			return out, err
		}
		out = append(out, v)
	}
	return out, nil
}

// Reload rescans the pool and returns the volume as it is now (after
// something other than libvirt's volume API changed it, such as a running
// guest's block resize).
func (d *Driver) Reload(name string) (Volume, error) {
	d.refresh()
	return d.Lookup(name)
}
