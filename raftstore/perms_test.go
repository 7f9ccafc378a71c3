package raftstore

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/kiln-dev/kiln/internal/testnet"
)

// A data directory made by an older kiln (0755 dirs, 0644 files) is
// tightened at start, and the snapshots written afterwards are private.
func TestDataDirPermissionsTightened(t *testing.T) {
	cfg := diskStore(t)
	// Loosen everything as an older kiln left it.
	filepath.WalkDir(cfg.DataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if d.IsDir() {
			mode = 0o755
		}
		return os.Chmod(p, mode)
	})
	cfg.RaftAddr = testnet.FreeAddr(t)
	s := openLeader(t, cfg)
	writeProjects(t, s, 100, 105)
	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	checked := 0
	filepath.WalkDir(cfg.DataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		want := FileMode
		if d.IsDir() {
			want = DirMode
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %o, want %o", p, got, want)
		}
		checked++
		return nil
	})
	snaps, _ := filepath.Glob(filepath.Join(cfg.DataDir, "snapshots", "*", "state.bin"))
	if len(snaps) < 2 || checked < 8 {
		t.Fatalf("checked %d paths with %d snapshots: the new snapshot is missing", checked, len(snaps))
	}
}
