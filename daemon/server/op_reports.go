package server

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/raftstore"
)

// reportInbox hands an agent's report straight to the leader's dispatcher
// that waits for it, so that the report is recorded in the same log entry
// as what the report leads to (the action's result, or its next step's work
// item) instead of in one of its own. The agent's request is answered once
// that entry is committed: a report is acknowledged only when it is
// durable. A report nobody waits for (a follower forwarded it after the
// wait ended, a second copy) is recorded on its own as before.
type reportInbox struct {
	mu      sync.Mutex
	waiters map[string]chan *delivery // work id -> the dispatcher waiting
}

// delivery is one report handed to a dispatcher: the command that records
// it and where to say whether it was recorded.
type delivery struct {
	rep  api.ActionReport
	cmd  *raftstore.ReportWork
	done chan error // buffered
}

// ack says whether the report was recorded (nil: it is durable).
func (d *delivery) ack(err error) {
	if errors.Is(err, raftstore.ErrConflict) {
		// Already reported (a copy was recorded on its own): durable.
		err = nil
	}
	d.done <- err
}

// expect registers a wait for work id's report; the returned func ends it.
func (in *reportInbox) expect(id string) (<-chan *delivery, func()) {
	ch := make(chan *delivery, 1)
	in.mu.Lock()
	if in.waiters == nil {
		in.waiters = map[string]chan *delivery{}
	}
	in.waiters[id] = ch
	in.mu.Unlock()
	return ch, func() {
		in.mu.Lock()
		if in.waiters[id] == ch {
			delete(in.waiters, id)
		}
		in.mu.Unlock()
	}
}

// deliver hands a report to the dispatcher waiting for it, if one is; the
// wait then ends (a second copy is recorded on its own).
func (in *reportInbox) deliver(id string, d *delivery) bool {
	in.mu.Lock()
	ch, ok := in.waiters[id]
	if ok {
		delete(in.waiters, id)
	}
	in.mu.Unlock()
	if !ok {
		return false
	}
	ch <- d // buffered, one delivery per registration
	return true
}

// reportHandoffTimeout bounds how long a report handed to a dispatcher
// waits to be recorded with what follows it; then the handler records it on
// its own (a copy the dispatcher records too is refused as a duplicate).
const reportHandoffTimeout = 10 * time.Second

// recordReport records an agent's report: handed to the leader's
// dispatcher that waits for it when there is one, otherwise (or when that
// does not record it in time) applied on its own.
func (s *Server) recordReport(ctx context.Context, rep api.ActionReport, cmd *raftstore.ReportWork) error {
	// Only a report of work assigned to the reporting agent and not yet
	// reported is handed over (the FSM checks the same when it records it,
	// but the dispatcher acts on it first).
	if w, ok := s.store.State().Work(cmd.ID); ok && w.Agent == cmd.Agent && !w.Done && s.store.IsLeader() {
		d := &delivery{rep: rep, cmd: cmd, done: make(chan error, 1)}
		if s.reports.deliver(cmd.ID, d) {
			t := time.NewTimer(reportHandoffTimeout)
			defer t.Stop()
			select {
			case err := <-d.done:
				if err == nil {
					return nil
				}
			case <-t.C:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	err := s.apply(ctx, cmd)
	if errors.Is(err, raftstore.ErrConflict) {
		if res, done, _ := s.store.State().WorkReport(cmd.ID); done && string(res) == string(cmd.Result) {
			return nil // the dispatcher recorded this very report meanwhile
		}
	}
	return err
}
