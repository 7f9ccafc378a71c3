package raftstore

import (
	"fmt"
	"io"

	"github.com/hashicorp/raft"
)

// FSM applies committed log entries to a State. It implements
// raft.BatchingFSM: a batch of entries is applied under one lock and wakes
// the waiters once.
type FSM struct {
	state *State
}

// NewFSM returns an FSM over an empty state.
func NewFSM() *FSM { return &FSM{state: NewState()} }

// State returns the state the FSM applies to. It stays the same object
// across Restore (its content is swapped).
func (f *FSM) State() *State { return f.state }

var _ raft.BatchingFSM = (*FSM)(nil)

// Apply applies one entry.
func (f *FSM) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch applies committed entries in order. The response of a command
// is its result, or the error value that refused it (nil for success).
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	// Decode before taking the lock: decoding is the expensive part.
	cmds := make([]Command, len(logs))
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			continue
		}
		c, err := Decode(l.Data)
		if err != nil {
			// A committed entry this code cannot read is a bug; going on
			// would make this node's state differ from the others'.
			panic(fmt.Sprintf("raftstore: log entry %d: %v", l.Index, err))
		}
		cmds[i] = c
	}

	s := f.state
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, l := range logs {
		if l.Index > s.t.index {
			s.t.index = l.Index
		}
		if cmds[i] == nil {
			continue
		}
		resp, err := cmds[i].apply(&txn{t: s.t, index: l.Index})
		if err != nil {
			out[i] = err
		} else {
			out[i] = resp
		}
	}
	s.notifyLocked()
	return out
}

// Snapshot captures the state (a deep copy, no I/O); Persist writes it.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	s := f.state
	s.mu.RLock()
	defer s.mu.RUnlock()
	return &fsmSnapshot{data: s.t.export()}, nil
}

// Restore replaces the state with a snapshot: it is read into fresh tables
// which are swapped in whole.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	t, err := readSnapshot(rc)
	if err != nil {
		return err
	}
	s := f.state
	s.mu.Lock()
	// The index never goes back, even for an older backup restored by an
	// operator, so that blocking queries keep their meaning.
	t.index = max(t.index, s.t.index)
	s.t = t
	s.notifyLocked()
	s.mu.Unlock()
	return nil
}
