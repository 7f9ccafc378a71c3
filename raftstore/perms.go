package raftstore

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"
)

// File modes of the data directory: it holds template bundles (with their
// user_data) and token hashes, so only the server's user may read it.
const (
	DirMode  os.FileMode = 0o700
	FileMode os.FileMode = 0o600
)

// Tighten makes path (a directory) and everything under it private: 0700
// for directories, 0600 for files (the execute bits of a file are kept off;
// nothing in a data directory is a program). Symlinks are left alone. A
// data directory made by an older kiln with 0755/0644 is tightened at start.
func Tighten(path string) error {
	return filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			return nil
		case d.IsDir():
			return chmodIf(p, d, DirMode)
		case d.Type().IsRegular():
			return chmodIf(p, d, FileMode)
		}
		return nil
	})
}

func chmodIf(p string, d fs.DirEntry, mode os.FileMode) error {
	info, err := d.Info()
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	if info.Mode().Perm() == mode {
		return nil
	}
	return os.Chmod(p, mode)
}

// TightenIn makes dir 0700 (not what is under it: a server's data
// directory may hold an agent's images, which libvirt's user must read) and
// tightens the named entries of it that exist (a directory whole).
func TightenIn(dir string, names ...string) error {
	if err := os.Chmod(dir, DirMode); err != nil {
		return err
	}
	for _, n := range names {
		if err := Tighten(filepath.Join(dir, n)); err != nil {
			return err
		}
	}
	return nil
}

// privateSnapshots wraps raft's file snapshot store, which makes its
// directories 0755 and its files 0644, and tightens every snapshot it
// writes once it is complete.
type privateSnapshots struct {
	*raft.FileSnapshotStore
	dir string // the snapshots/ directory
}

func (p *privateSnapshots) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := p.FileSnapshotStore.Create(version, index, term, configuration, configurationIndex, trans)
	if err != nil {
		return nil, err
	}
	return &privateSink{SnapshotSink: sink, dir: p.dir}, nil
}

type privateSink struct {
	raft.SnapshotSink
	dir string
}

func (s *privateSink) Close() error {
	err := s.SnapshotSink.Close()
	if terr := Tighten(s.dir); err == nil {
		err = terr
	}
	return err
}
