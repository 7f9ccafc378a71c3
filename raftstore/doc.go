// Package raftstore is kiln's replicated state: hashicorp/raft with
// raft-wal (fsynced log and stable store, logstore.go; a raft-boltdb
// raft.db of an older kiln is migrated at open), a log cache, a file
// snapshot store and the TCP transport, under an FSM whose state holds
// projects, tokens (hashed), content-addressed blobs (template bundles),
// stacks, resources, operations with per-action progress, bounded per-stack
// events and agents.
//
// Writes are typed commands (commands.go): one type byte, then a JSON body.
// Store.Apply proposes one and returns the FSM's answer; a command refused
// for a business reason (a stale plan serial, an action finished twice)
// comes back as an error wrapping ErrStaleSerial, ErrConflict, ErrNotFound
// or ErrInvalid. The FSM is deterministic: the proposer stamps times and ids.
//
// Reads go through State (Store.State): every method returns a deep copy;
// State.Wait blocks until the state index passes a given one, the base of
// the daemon's blocking queries and of agents waiting for work. Reads on a
// follower may lag the leader; Store.Barrier on the leader makes them
// consistent.
package raftstore
