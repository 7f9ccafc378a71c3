package raftstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kiln-dev/kiln/internal/testnet"
	"github.com/kiln-dev/kiln/internal/testwait"
)

// diskStore makes a one-node store on disk (real raft-wal, file
// snapshots, TCP transport) with a snapshot and entries after it, shuts it
// down and returns its config.
func diskStore(t *testing.T) Config {
	t.Helper()
	cfg := soloConfig(t)
	s := openLeader(t, cfg)
	for _, cmd := range base() {
		if _, err := s.Apply(ctx(t), cmd); err != nil {
			t.Fatal(err)
		}
	}
	writeProjects(t, s, 0, 30)
	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	writeProjects(t, s, 30, 40) // only in the log
	testwait.For(t, 10*time.Second, "marker", func() bool {
		_, err := os.Stat(filepath.Join(cfg.DataDir, MarkerFile))
		return err == nil
	})
	if err := s.Shutdown(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// rewrite replaces the content of the file at path with what damage makes
// of it.
func rewrite(t *testing.T, path string, damage func([]byte) []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, damage(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// openDamaged opens a damaged store: it must fail with ErrDamaged naming
// the file and the recovery section, and must not panic.
func openDamaged(t *testing.T, cfg Config, file string, want ...string) {
	t.Helper()
	cfg.RaftAddr = testnet.FreeAddr(t)
	s, err := Open(cfg)
	if err == nil {
		s.Shutdown()
		t.Fatalf("open of a data dir with a damaged %s succeeded", file)
	}
	if !errors.Is(err, ErrDamaged) {
		t.Fatalf("error %v does not wrap ErrDamaged", err)
	}
	for _, w := range append([]string{file, "docs/operations.md"}, want...) {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	t.Logf("start error: %v", err)
}

func snapshotState(t *testing.T, dir string) string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "snapshots", "*", "state.bin"))
	if err != nil || len(m) != 1 {
		t.Fatalf("snapshots: %v %v", m, err)
	}
	return m[0]
}

func TestOpenTruncatedSnapshotFails(t *testing.T) {
	cfg := diskStore(t)
	path := snapshotState(t, cfg.DataDir)
	fi, _ := os.Stat(path)
	if err := os.Truncate(path, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	openDamaged(t, cfg, path, "snapshot")
}

// A snapshot whose CRC is right but whose content is not a state (written
// by something else) is refused by the decoder, not a panic.
func TestOpenGarbageSnapshotFails(t *testing.T) {
	cfg := diskStore(t)
	path := snapshotState(t, cfg.DataDir)
	data, _ := os.ReadFile(path)
	garbage := bytes.Repeat([]byte{'['}, len(data))
	if err := os.WriteFile(path, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	// Fix the CRC in meta.json so that only the content is wrong.
	fixSnapshotCRC(t, filepath.Dir(path), garbage)
	openDamaged(t, cfg, path, "cannot be read")
}

// segmentFile is the one segment file of a small store's WAL.
func segmentFile(t *testing.T, dir string) string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, walDir, "*.wal"))
	if err != nil || len(m) != 1 {
		t.Fatalf("segments: %v %v", m, err)
	}
	return m[0]
}

func TestOpenCorruptedLogFails(t *testing.T) {
	meta := func(dir string) string { return filepath.Join(dir, walDir, "wal-meta.db") }
	for _, tc := range []struct {
		name   string
		file   func(t *testing.T, dir string) string
		damage func(t *testing.T, path string)
	}{
		{"meta truncated", func(_ *testing.T, dir string) string { return meta(dir) }, func(t *testing.T, path string) {
			fi, _ := os.Stat(path)
			if err := os.Truncate(path, fi.Size()/2); err != nil {
				t.Fatal(err)
			}
		}},
		{"meta pages overwritten", func(_ *testing.T, dir string) string { return meta(dir) }, func(t *testing.T, path string) {
			rewrite(t, path, func(data []byte) []byte {
				for i := 2 * 4096; i < len(data); i++ {
					data[i] = byte(i*7 + 3)
				}
				return data
			})
		}},
		{"meta meta pages overwritten", func(_ *testing.T, dir string) string { return meta(dir) }, func(t *testing.T, path string) {
			rewrite(t, path, func(data []byte) []byte {
				for i := 0; i < 2*4096; i++ {
					data[i] = 0x5a
				}
				return data
			})
		}},
		{"entry bytes flipped", segmentFile, func(t *testing.T, path string) {
			rewrite(t, path, func(data []byte) []byte {
				if !bytes.Contains(data, []byte(`{"Name":"p0038"`)) {
					t.Fatal("entry p0038 not found in the segment")
				}
				return bytes.ReplaceAll(data, []byte(`{"Name":"p0038"`), []byte(`}"Name":"p0038"`))
			})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := diskStore(t)
			path := tc.file(t, cfg.DataDir)
			tc.damage(t, path)
			// The error names the file, or for the segments the wal/ directory.
			name := path
			if filepath.Ext(path) == ".wal" {
				name = filepath.Dir(path)
			}
			openDamaged(t, cfg, name)
		})
	}
}

// A deleted wal/ must not start as a fresh node: the writes after the last
// snapshot would be lost silently. -recover (Config.Recover) starts from
// the snapshot, accepting that loss.
func TestOpenDeletedLogFails(t *testing.T) {
	cfg := diskStore(t)
	path := filepath.Join(cfg.DataDir, walDir)
	if err := os.RemoveAll(path); err != nil {
		t.Fatal(err)
	}
	openDamaged(t, cfg, path, "empty or missing", MarkerFile)

	cfg.Recover, cfg.RaftAddr = true, testnet.FreeAddr(t)
	s, err := Open(cfg)
	if err != nil {
		t.Fatalf("-recover: %v", err)
	}
	defer s.Shutdown()
	testwait.For(t, 10*time.Second, "leadership after recover", s.IsLeader)
	if _, ok := s.State().Project("p0029"); !ok {
		t.Error("the snapshot's state is not there after recover")
	}
	if _, ok := s.State().Project("p0039"); ok {
		t.Error("an entry that was only in the lost log is there")
	}
}

// fixSnapshotCRC rewrites the CRC in a file snapshot's meta.json for data.
func fixSnapshotCRC(t *testing.T, dir string, data []byte) {
	t.Helper()
	path := filepath.Join(dir, "meta.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var meta map[string]any
	if err := json.Unmarshal(raw, &meta); err != nil {
		t.Fatal(err)
	}
	h := crc64.New(crc64.MakeTable(crc64.ECMA))
	h.Write(data)
	meta["CRC"] = h.Sum(nil)
	meta["Size"] = len(data)
	raw, _ = json.Marshal(meta)
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
}

// The start checks read the whole log: their cost at open, for a log of
// 5,000 entries (a stack apply's worth of commands each).
func BenchmarkStartChecks(b *testing.B) {
	cfg := soloConfig(b)
	s := openLeader(b, cfg)
	ctx := context.Background()
	for _, c := range base() {
		if _, err := s.Apply(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 5000 {
		c := startOp(fmt.Sprintf("op%d", i), 0)
		if _, err := s.Apply(ctx, c); err != nil && !errors.Is(err, ErrConflict) {
			b.Fatal(err)
		}
	}
	s.Shutdown()
	path := filepath.Join(cfg.DataDir, walDir)
	b.Run("checks", func(b *testing.B) {
		for range b.N {
			w, err := openWAL(path, hclog.NewNullLogger())
			if err != nil {
				b.Fatal(err)
			}
			if err := checkLog(path, w, 0); err != nil {
				b.Fatal(err)
			}
			w.Close()
		}
	})
	b.Run("open", func(b *testing.B) {
		for range b.N {
			cfg.RaftAddr = testnet.FreeAddr(b)
			s, err := Open(cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			s.Shutdown()
			b.StartTimer()
		}
	})
}
