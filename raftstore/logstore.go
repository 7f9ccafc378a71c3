package raftstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
	walfs "github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/migrate"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
)

// The log and stable store: hashicorp/raft-wal in DataDir/wal (one fsync
// per append; raft-boltdb did two per commit, and the leader's and a
// follower's append are in series on every write). wal/ holds
// wal-meta.db (a small bbolt file: the stable store, raft's term and vote,
// and the list of segments) and the segment files *.wal, 64 MiB each,
// preallocated.
//
// A data directory written by an older kiln holds raft.db (raft-boltdb).
// Open migrates it (migrateBolt): every log entry and the stable keys are
// copied into wal.migrating/, fsynced, that directory renamed to wal/, and
// only then raft.db renamed to raft.db.migrated. A crash at any point
// leaves either raft.db and a partial wal.migrating/ (removed and copied
// again at the next start) or raft.db and a complete wal/ (the rename of
// raft.db is what is left).
const (
	walDir       = "wal"
	walMigrating = "wal.migrating"
	boltFile     = "raft.db"
	boltMigrated = "raft.db.migrated"
)

// logStore is raft-wal, its meta database (which WAL.Close leaves open in
// raft-wal v0.4.0) and the lock on the data directory (nil for a WAL of
// the migration).
type logStore struct {
	*wal.WAL
	meta *metadb.BoltMetaDB
	lock *os.File
}

func (l *logStore) Close() error {
	err := l.WAL.Close()
	if merr := l.meta.Close(); err == nil {
		err = merr
	}
	if l.lock != nil {
		l.lock.Close() // releases the flock
	}
	return err
}

// openLogStore locks dir (ErrDataDirLocked when another process holds
// it), migrates a raft.db of an older kiln and opens the WAL in dir/wal.
func openLogStore(dir string, logger hclog.Logger) (*logStore, error) {
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			lock.Close()
		}
	}()
	if err := migrateBolt(dir, logger); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, walDir)
	if err := os.MkdirAll(path, DirMode); err != nil {
		return nil, fmt.Errorf("raftstore: %w", err)
	}
	w, err := openWAL(path, logger)
	if err != nil {
		return nil, err
	}
	ok = true
	w.lock = lock
	return w, nil
}

// lockDir takes an exclusive flock on the directory dir itself, held until
// the returned file is closed (or the process ends).
func lockDir(dir string) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("raftstore: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("raftstore: %w: %s", ErrDataDirLocked, dir)
		}
		return nil, fmt.Errorf("raftstore: lock %s: %w", dir, err)
	}
	return f, nil
}

// openWAL checks wal-meta.db the way raft.db was checked (every page read,
// a panic or fault turned into an error), then opens the WAL in path with
// its files private (raft-wal makes them 0644).
func openWAL(path string, logger hclog.Logger) (*logStore, error) {
	if err := checkBoltFile(filepath.Join(path, metadb.FileName)); err != nil {
		return nil, err
	}
	meta := &metadb.BoltMetaDB{}
	var w *wal.WAL
	err := guard(func() error {
		var err error
		w, err = wal.Open(path, wal.WithLogger(logger.Named("wal")), wal.WithMetaStore(meta),
			wal.WithSegmentFiler(segment.NewFiler(path, privateFS{walfs.New()})))
		return err
	})
	if err != nil {
		meta.Close()
		return nil, damaged(path, "cannot open the raft log: %v", err)
	}
	l := &logStore{WAL: w, meta: meta}
	if err := Tighten(path); err != nil {
		l.Close()
		return nil, fmt.Errorf("raftstore: wal permissions: %w", err)
	}
	return l, nil
}

// privateFS creates the segment files 0600.
type privateFS struct{ *walfs.FS }

func (p privateFS) Create(dir, name string, size uint64) (types.WritableFile, error) {
	f, err := p.FS.Create(dir, name, size)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(filepath.Join(dir, name), FileMode); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// migrateBolt moves the log and stable store of dir/raft.db into dir/wal
// (see the comment at the top of the file). It does nothing when there is
// no raft.db.
func migrateBolt(dir string, logger hclog.Logger) error {
	boltPath := filepath.Join(dir, boltFile)
	if _, err := os.Stat(boltPath); errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("raftstore: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, walDir)); err == nil {
		// The copy was complete; the crash came before raft.db was renamed.
		return setAside(dir)
	}
	tmp := filepath.Join(dir, walMigrating)
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("raftstore: remove an interrupted migration: %w", err)
	}
	if err := os.Mkdir(tmp, DirMode); err != nil {
		return fmt.Errorf("raftstore: %w", err)
	}
	if err := copyBolt(boltPath, tmp, logger); err != nil {
		return err
	}
	if err := syncDir(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, walDir)); err != nil {
		return fmt.Errorf("raftstore: migrate: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	logger.Named("raftstore").Info("migrated the raft log from raft-boltdb to raft-wal", "from", boltPath, "to", filepath.Join(dir, walDir))
	return setAside(dir)
}

// copyBolt copies every log entry and the stable keys of raft.db into a new
// WAL in to, and closes both (the WAL fsyncs every append and its meta
// database every commit).
func copyBolt(boltPath, to string, logger hclog.Logger) error {
	if err := checkBoltFile(boltPath); err != nil {
		return err
	}
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: boltPath})
	if err != nil {
		return fmt.Errorf("raftstore: migrate: open %s: %w", boltPath, err)
	}
	defer bolt.Close()
	w, err := openWAL(to, logger)
	if err != nil {
		return err
	}
	ctx := context.Background()
	err = guard(func() error {
		if last, err := bolt.LastIndex(); err != nil || last == 0 {
			return err // an empty log: nothing to copy (CopyLogs wants one entry)
		}
		return migrate.CopyLogs(ctx, w, bolt, 1<<20, nil)
	})
	if err == nil {
		err = copyStable(w, bolt)
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return damaged(boltPath, "cannot migrate the raft log to %s: %v", to, err)
	}
	return nil
}

// stableKeys are the keys hashicorp/raft keeps in its stable store, with
// whether they hold a uint64 (migrate.CopyStable copies the same, but fails
// on a key that was never set: a node that never voted).
var stableKeys = []struct {
	key    string
	number bool
}{{"CurrentTerm", true}, {"LastVoteTerm", true}, {"LastVoteCand", false}}

func copyStable(dst, src raft.StableStore) error {
	for _, k := range stableKeys {
		v, err := src.Get([]byte(k.key))
		if errors.Is(err, raftboltdb.ErrKeyNotFound) || (err == nil && len(v) == 0) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", k.key, err)
		}
		if k.number {
			n, err := src.GetUint64([]byte(k.key))
			if err != nil {
				return fmt.Errorf("read %s: %w", k.key, err)
			}
			err = dst.SetUint64([]byte(k.key), n)
		} else {
			err = dst.Set([]byte(k.key), v)
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", k.key, err)
		}
	}
	return nil
}

// setAside renames dir/raft.db to raft.db.migrated once dir/wal holds its
// copy (kept for a downgrade; see docs/operations.md).
func setAside(dir string) error {
	if err := os.Rename(filepath.Join(dir, boltFile), filepath.Join(dir, boltMigrated)); err != nil {
		return fmt.Errorf("raftstore: migrate: %w", err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("raftstore: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("raftstore: sync %s: %w", dir, err)
	}
	return nil
}

var _ raft.LogStore = (*logStore)(nil)
