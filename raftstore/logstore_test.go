package raftstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/kiln-dev/kiln/internal/testnet"
	"github.com/kiln-dev/kiln/internal/testwait"
)

// boltDataDir writes a data directory the way kiln did before raft-wal: a
// real raft node over raft-boltdb's raft.db and file snapshots, projects
// p0000..p0029 in a snapshot and p0030..p0039 only in the log, the marker
// written. It returns a config that opens it.
func boltDataDir(t *testing.T) Config {
	t.Helper()
	cfg := soloConfig(t)
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.DataDir, boltFile)})
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := raft.NewFileSnapshotStore(cfg.DataDir, 2, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	rc := raftConfig(cfg.withDefaults())
	_, trans := raft.NewInmemTransport(raft.ServerAddress(cfg.RaftAddr))
	conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: rc.LocalID, Address: trans.LocalAddr()}}}
	if err := raft.BootstrapCluster(rc, bolt, bolt, snaps, trans, conf); err != nil {
		t.Fatal(err)
	}
	r, err := raft.NewRaft(rc, NewFSM(), bolt, bolt, snaps, trans)
	if err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "leadership", func() bool { return r.State() == raft.Leader })
	apply := func(c Command) {
		data, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Apply(data, 5*time.Second).Error(); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range base() {
		apply(c)
	}
	for i := range 40 {
		apply(&UpsertProject{Name: fmt.Sprintf("p%04d", i), Time: t0})
		if i == 29 {
			if err := r.Snapshot().Error(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := r.Shutdown().Error(); err != nil {
		t.Fatal(err)
	}
	if err := bolt.Close(); err != nil {
		t.Fatal(err)
	}
	if err := writeMarker(cfg.DataDir, cfg.NodeID); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// checkMigrated opens cfg's data directory, checks that it holds every
// write of boltDataDir and takes a new one, and that raft.db was set aside.
func checkMigrated(t *testing.T, cfg Config) {
	t.Helper()
	cfg.RaftAddr = testnet.FreeAddr(t)
	s := openLeader(t, cfg)
	testwait.For(t, 10*time.Second, "ready", s.Ready)
	for i := range 40 {
		if _, ok := s.State().Project(fmt.Sprintf("p%04d", i)); !ok {
			t.Fatalf("project p%04d lost in the migration", i)
		}
	}
	writeProjects(t, s, 40, 41)
	if err := s.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, boltFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("raft.db is still there: %v", err)
	}
	for _, p := range []string{boltMigrated, walDir} {
		if _, err := os.Stat(filepath.Join(cfg.DataDir, p)); err != nil {
			t.Error(err)
		}
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, walMigrating)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s is left: %v", walMigrating, err)
	}

	// A restart opens the WAL alone, with the write made after the migration.
	cfg.RaftAddr = testnet.FreeAddr(t)
	s = openLeader(t, cfg)
	testwait.For(t, 10*time.Second, "ready", s.Ready)
	for _, p := range []string{"p0039", "p0040"} {
		if _, ok := s.State().Project(p); !ok {
			t.Errorf("project %s lost after a restart", p)
		}
	}
}

func TestOpenMigratesBoltStore(t *testing.T) {
	checkMigrated(t, boltDataDir(t))
}

// The term and vote of a node move with the log: a node that forgot its
// vote could vote twice in one term.
func TestMigrationKeepsTermAndVote(t *testing.T) {
	cfg := boltDataDir(t)
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.DataDir, boltFile)})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, k := range stableKeys {
		v, err := bolt.Get([]byte(k.key))
		if err != nil {
			t.Fatalf("%s: %v", k.key, err)
		}
		want[k.key] = string(v)
	}
	bolt.Close()
	if want["CurrentTerm"] == "" || want["LastVoteCand"] == "" {
		t.Fatalf("the bolt store has no term or vote: %q", want)
	}
	lock, err := openLogStore(cfg.DataDir, cfg.withDefaults().Logger)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	for _, k := range stableKeys {
		got, err := lock.Get([]byte(k.key))
		if err != nil {
			t.Fatal(err)
		}
		if k.number {
			n, _ := lock.GetUint64([]byte(k.key))
			b, _ := raftboltdbUint64(want[k.key])
			if n != b {
				t.Errorf("%s: %d in the WAL, %d in raft.db", k.key, n, b)
			}
			continue
		}
		if string(got) != want[k.key] {
			t.Errorf("%s: %q in the WAL, %q in raft.db", k.key, got, want[k.key])
		}
	}
}

// raftboltdbUint64 decodes raft-boltdb's big-endian uint64.
func raftboltdbUint64(s string) (uint64, bool) {
	if len(s) != 8 {
		return 0, false
	}
	var n uint64
	for i := range 8 {
		n = n<<8 | uint64(s[i])
	}
	return n, true
}

// A crash in the middle of the copy leaves raft.db and a partial
// wal.migrating/: the next start copies again.
func TestMigrationInterruptedDuringCopy(t *testing.T) {
	cfg := boltDataDir(t)
	tmp := filepath.Join(cfg.DataDir, walMigrating)
	if err := os.Mkdir(tmp, DirMode); err != nil {
		t.Fatal(err)
	}
	// What a crash leaves: some of the copy (here an empty meta database
	// and a segment of garbage).
	for name, data := range map[string]string{"wal-meta.db": "", "00000000000000000001-0000000000000001.wal": "torn"} {
		if err := os.WriteFile(filepath.Join(tmp, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	checkMigrated(t, cfg)
}

// A crash after the copy was renamed to wal/ but before raft.db was set
// aside: the next start finishes with the rename.
func TestMigrationInterruptedBeforeSetAside(t *testing.T) {
	cfg := boltDataDir(t)
	tmp := filepath.Join(cfg.DataDir, walMigrating)
	if err := os.Mkdir(tmp, DirMode); err != nil {
		t.Fatal(err)
	}
	if err := copyBolt(filepath.Join(cfg.DataDir, boltFile), tmp, cfg.withDefaults().Logger); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(cfg.DataDir, walDir)); err != nil {
		t.Fatal(err)
	}
	checkMigrated(t, cfg)
}

// The WAL's files are private, like the rest of the data directory.
func TestLogStoreFilesArePrivate(t *testing.T) {
	cfg := diskStore(t)
	err := filepath.Walk(filepath.Join(cfg.DataDir, walDir), func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		want := FileMode
		if fi.IsDir() {
			want = DirMode
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
