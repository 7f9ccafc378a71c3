package raftstore

import (
	"errors"
	"fmt"
)

// Errors callers branch on. A command the FSM refuses comes back from
// Store.Apply as an error that wraps one of the first four.
var (
	// ErrNotFound: the command names something that does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the command clashes with the current state (a duplicate
	// id, an operation already running, an action already finished).
	ErrConflict = errors.New("conflict")
	// ErrStaleSerial: the plan was made against a stack serial that has moved.
	ErrStaleSerial = errors.New("stale plan: the stack state changed since it was planned")
	// ErrInvalid: the command is malformed (a missing id, an unknown status).
	ErrInvalid = errors.New("invalid command")

	// ErrNotLeader: this node is not the leader; send the write to Leader().
	ErrNotLeader = errors.New("not the leader")
	// ErrLeadershipLost: leadership was lost while the command was in
	// flight; it may or may not have been committed. Read the state (on
	// the new leader) before proposing it again.
	ErrLeadershipLost = errors.New("leadership lost while the command was in flight")
	// ErrDataDirLocked: another process holds the data directory.
	ErrDataDirLocked = errors.New("data directory is in use by another process")
	// ErrShutdown: the store is shut down.
	ErrShutdown = errors.New("store is shut down")
	// ErrTooLarge: a blob, a plan or a command is over its size limit.
	ErrTooLarge = errors.New("too large")
)

func notFound(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrNotFound}, args...)...)
}

func conflict(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrConflict}, args...)...)
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

func errorf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...)
}
