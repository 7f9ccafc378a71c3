package raftstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/hashicorp/raft"
	"go.etcd.io/bbolt"
)

// Damaged data. A server that starts over a damaged data directory must
// stop with an error that names the file and what is wrong, never panic and
// never carry on over lost writes. Open checks, before raft starts:
//   - wal/ (see logstore.go): every page of wal-meta.db (the stable store
//     and the list of segments) can be read (bbolt panics, or faults, on a
//     bad page: the check recovers), raft-wal opens the segments (it checks
//     the CRC of the tail segment's last commit, and cuts a torn write
//     off the tail), and every command in the log decodes; a raft.db of an
//     older kiln gets the same page check before it is migrated;
//   - the newest snapshot: its CRC (raft's file store) and its content;
//   - the log and the snapshot join up (no missing entries between them);
//   - a data directory that held a cluster (MarkerFile) still has its log:
//     an emptied or deleted wal/ would otherwise start as a fresh node
//     and silently lose every write after the last snapshot.
// The recovery paths are in docs/operations.md ("Damaged data").

// MarkerFile is written in the data directory once the node holds raft
// state; its presence with an empty log means the log was lost.
const MarkerFile = "raft.marker"

// ErrDamaged is wrapped by every damaged-data error of Open.
var ErrDamaged = errors.New("damaged data")

const recoveryHint = "see \"Damaged data\" in docs/operations.md for how to recover"

func damaged(path, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s; %s", ErrDamaged, path, fmt.Sprintf(format, args...), recoveryHint)
}

// guard runs f, turning a panic or a memory fault (a page of a truncated
// or corrupted file) into an error.
func guard(f func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	return f()
}

// checkBoltFile reads every key and value of a bbolt file (wal-meta.db, or
// the raft.db of an older kiln), read-only, before the
// store opens it for writing (bbolt's own scan at open panics in a
// goroutine of its own on a bad page, which nothing can recover).
func checkBoltFile(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) || (err == nil && fi.Size() == 0) {
		return nil // a new (or emptied) file: the marker check decides
	}
	if err != nil {
		return fmt.Errorf("raftstore: %w", err)
	}
	var db *bbolt.DB
	err = guard(func() error {
		var err error
		db, err = bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
		return err
	})
	if errors.Is(err, bbolt.ErrTimeout) {
		return nil // locked by another process: Open reports it
	}
	if err != nil {
		return damaged(path, "cannot open the database: %v", err)
	}
	defer db.Close()
	err = guard(func() error {
		return db.View(func(tx *bbolt.Tx) error {
			if need := tx.Size(); need > fi.Size() {
				return fmt.Errorf("the file is %d bytes but its pages reach %d bytes (truncated)", fi.Size(), need)
			}
			return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
				return walkBucket(b)
			})
		})
	})
	if err != nil {
		return damaged(path, "the database is corrupted: %v", err)
	}
	return nil
}

func walkBucket(b *bbolt.Bucket) error {
	return b.ForEach(func(k, v []byte) error {
		if v == nil {
			if nb := b.Bucket(k); nb != nil {
				return walkBucket(nb)
			}
		}
		return nil
	})
}

// logRange returns the first and last index of the log (0, 0 when empty).
func logRange(path string, logs raft.LogStore) (first, last uint64, err error) {
	err = guard(func() error {
		var err error
		if first, err = logs.FirstIndex(); err != nil {
			return err
		}
		last, err = logs.LastIndex()
		return err
	})
	if err != nil {
		return 0, 0, damaged(path, "cannot read the raft log: %v", err)
	}
	return first, last, nil
}

// checkLog reads the entries of the log from index from on (the ones the
// FSM will apply: those up to the snapshot never reach it) and decodes
// their commands.
func checkLog(path string, logs raft.LogStore, from uint64) error {
	first, last, err := logRange(path, logs)
	if err != nil {
		return err
	}
	err = guard(func() error {
		for i := max(first, from); i <= last && last > 0; i++ {
			var l raft.Log
			if err := logs.GetLog(i, &l); err != nil {
				return fmt.Errorf("log entry %d of %d..%d: %v", i, first, last, err)
			}
			if l.Index != i {
				return fmt.Errorf("log entry %d is stored as entry %d", i, l.Index)
			}
			if l.Type == raft.LogCommand {
				if _, err := Decode(l.Data); err != nil {
					return fmt.Errorf("log entry %d: %v", i, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return damaged(path, "the raft log is corrupted: %v", err)
	}
	return nil
}

// restoreNewestSnapshot checks the newest snapshot and restores it into the
// FSM (raft is then told not to restore it again). It returns the
// snapshot's index, 0 when there is none.
func restoreNewestSnapshot(dir string, snaps raft.SnapshotStore, fsm *FSM) (uint64, error) {
	list, err := snaps.List()
	if err != nil {
		return 0, damaged(filepath.Join(dir, "snapshots"), "cannot list the snapshots: %v", err)
	}
	if len(list) == 0 {
		return 0, nil
	}
	meta := list[0]
	path := filepath.Join(dir, "snapshots", meta.ID, "state.bin")
	err = guard(func() error {
		_, rc, err := snaps.Open(meta.ID)
		if err != nil {
			return err
		}
		return fsm.Restore(rc)
	})
	if err != nil {
		return 0, damaged(path, "the newest snapshot (index %d) cannot be read: %v", meta.Index, err)
	}
	return meta.Index, nil
}

// readMarker reports whether the data directory held raft state before.
func readMarker(dir string) (bool, error) {
	_, err := os.Stat(filepath.Join(dir, MarkerFile))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// writeMarker records that the data directory holds raft state.
func writeMarker(dir, nodeID string) error {
	path := filepath.Join(dir, MarkerFile)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	body := fmt.Sprintf("This data directory holds the raft state of kiln node %s.\n"+
		"If its raft log (wal/) is lost while this file exists, the node refuses to start\n"+
		"(see \"Damaged data\" in docs/operations.md).\n", nodeID)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// checkState runs the checks of an on-disk store before raft starts, and
// restores the newest snapshot into the FSM. It reports whether the
// snapshot was restored (raft must then not restore it again).
func checkState(cfg Config, logs raft.LogStore, stable raft.StableStore, snaps raft.SnapshotStore, fsm *FSM) (bool, error) {
	dbPath := filepath.Join(cfg.DataDir, walDir)
	first, last, err := logRange(dbPath, logs)
	if err != nil {
		return false, err
	}
	var term uint64
	if err := guard(func() error {
		var err error
		term, err = stable.GetUint64([]byte("CurrentTerm"))
		if err != nil && err.Error() == "not found" {
			err = nil
		}
		return err
	}); err != nil {
		return false, damaged(dbPath, "cannot read the current term: %v", err)
	}
	had, err := readMarker(cfg.DataDir)
	if err != nil {
		return false, fmt.Errorf("raftstore: %w", err)
	}
	if had && last == 0 && term == 0 && !cfg.Recover {
		return false, damaged(dbPath, "the raft log is empty or missing, but this data directory held raft state (%s is there): "+
			"starting would lose every write made after the last snapshot (on a cluster member: and its vote)",
			filepath.Join(cfg.DataDir, MarkerFile))
	}
	snapIndex, err := restoreNewestSnapshot(cfg.DataDir, snaps, fsm)
	if err != nil {
		return false, err
	}
	if had && last == 0 && term == 0 && cfg.Recover && snapIndex == 0 {
		return false, damaged(dbPath, "-recover: the raft log is lost and there is no snapshot to recover from")
	}
	if err := checkLog(dbPath, logs, snapIndex+1); err != nil {
		return false, err
	}
	// The log must continue the snapshot: no entry missing in between.
	switch {
	case last == 0:
	case snapIndex == 0 && first > 1:
		return false, damaged(dbPath, "the log starts at entry %d but there is no snapshot: entries 1..%d are missing", first, first-1)
	case snapIndex > 0 && first > snapIndex+1:
		return false, damaged(dbPath, "the log starts at entry %d but the newest snapshot ends at %d: entries %d..%d are missing",
			first, snapIndex, snapIndex+1, first-1)
	}
	return snapIndex > 0, nil
}
