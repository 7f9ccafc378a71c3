// Package engine runs an operation's plan on the leader: it starts every
// action whose dependencies are done, up to a parallelism bound, records each
// action's start before running it and its result before starting anything
// that depends on it, skips the dependents of a failed action while
// independent branches go on, and resumes an operation that an earlier leader
// left unfinished without doing any action twice.
//
// The engine knows nothing of raft or agents: it is given a Recorder (on the
// leader, raft applies), a Runner (on the leader, the hand-off to an agent;
// in tests, an in-memory driver), a Reader for resuming and an optional
// Assigner (the scheduler). It speaks the state model's one vocabulary of
// action statuses (raftstore.ActionStatus), which is what it records and what
// it resumes from.
//
// Run reads as the steps of a graph walk: build the graph of the plan's
// changes with what is already recorded (graph.go), then walk it (walk.go):
// restore what earlier leaders recorded, start the actions that have
// nothing left to wait for, visit each in a goroutine of its own (visit.go:
// place, record the start, run or resume its steps, record the result),
// receive its result and release or skip its dependents; finally record the
// outcome. The per-run state is the walker, run; each node holds one
// action's state.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

// DefaultParallelism bounds the actions running at once when
// Engine.Parallelism is zero. Most actions cost kiln more than they cost the
// host (a bridge, a volume, a port forward are a few system calls): what
// bounds them is how many records one raft entry carries.
const DefaultParallelism = 64

// Engine runs operations. Runner and Recorder are required; Reader is
// required to resume an action recorded running; Assigner is optional.
type Engine struct {
	Recorder Recorder
	Runner   Runner
	Reader   Reader
	Assigner Assigner
	// Parallelism bounds the actions running at once (DefaultParallelism
	// when zero), and KindParallelism those of one kind (a kind it does not
	// name has no bound of its own): the costly kinds, such as guest boots.
	Parallelism     int
	KindParallelism map[string]int
	Logger          *slog.Logger
}

// kindBound is the bound of kind's actions running at once, 0 for none.
func (e *Engine) kindBound(kind string) int { return e.KindParallelism[kind] }

// Run runs op to its end and records how it finished. Cancelling ctx cancels
// the operation: no new action starts, the running ones finish (they run on a
// context that is not cancelled with ctx; one an earlier leader recorded
// running is resumed), every action not started is recorded cancelled and
// the operation CANCELLED. Resuming an operation with actions recorded
// cancelled carries that cancel through, whatever ctx says: they never run.
//
// The returned error is not the operation's failure (that is in the Outcome
// and recorded): it says the engine could not record progress, stopped, and
// left the operation for the next leader to resume. That is also what a
// leadership loss looks like: the leader loop cancels ctx, the engine waits
// for the running actions, and its records (cancelled actions, the CANCELLED
// operation) are refused by raft on a follower, so nothing false is written
// and the new leader resumes the operation. A Runner must bound its own
// waits (an agent that never reports), since running actions are waited for.
func (e *Engine) Run(ctx context.Context, op Operation) (Outcome, error) {
	if e.Runner == nil || e.Recorder == nil {
		return Outcome{}, errors.New("engine: Runner and Recorder are required")
	}
	rctx := context.WithoutCancel(ctx)
	nodes, order, err := build(op)
	if err != nil {
		return e.refuse(rctx, op, err)
	}
	r := e.newRun(rctx, op, nodes, order)
	r.restore()
	r.walk(ctx)
	if r.recErr != nil {
		r.log.Warn("stopped: could not record progress", "err", r.recErr)
		return Outcome{}, r.recErr
	}
	out := r.outcome()
	if r.recErr != nil {
		return Outcome{}, r.recErr
	}
	return out, r.report(out)
}

// refuse records an operation whose plan cannot be run (see build) failed.
func (e *Engine) refuse(ctx context.Context, op Operation, err error) (Outcome, error) {
	out := Outcome{Status: OperationFailed, Err: err.Error()}
	if rerr := e.Recorder.OperationFinished(ctx, op.ID, out.Status, out.Err); rerr != nil {
		return out, fmt.Errorf("record operation %s: %w", op.ID, rerr)
	}
	return out, nil
}

// report records how the operation finished, and an event saying so.
func (r *run) report(out Outcome) error {
	if err := r.e.Recorder.OperationFinished(r.rctx, r.op.ID, out.Status, out.Err); err != nil {
		return fmt.Errorf("record operation %s: %w", r.op.ID, err)
	}
	msg := fmt.Sprintf("operation %s %s", r.op.ID, out.Status)
	if out.Err != "" {
		msg += ": " + out.Err
	}
	if err := r.e.Recorder.Event(r.rctx, r.op.Stack, msg); err != nil {
		r.log.Warn("record event", "err", err)
	}
	r.log.Info("finished", "status", out.Status, "err", out.Err)
	return nil
}
