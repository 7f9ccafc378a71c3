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
// Assigner (the scheduler).
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"

	"github.com/kiln-dev/kiln/planner"
)

// DefaultParallelism bounds the actions running at once when
// Engine.Parallelism is zero.
const DefaultParallelism = 16

// Engine runs operations. Runner and Recorder are required; Reader is
// required to resume an action recorded running; Assigner is optional.
type Engine struct {
	Recorder    Recorder
	Runner      Runner
	Reader      Reader
	Assigner    Assigner
	Parallelism int
	Logger      *slog.Logger
}

// node is the engine's view of one change.
type node struct {
	index   int
	change  planner.Change
	steps   []Action
	stepErr error
	status  Status
	resume  bool
	rec     ActionState
	deps    []string // addresses in the plan this one waits for
	waiting int      // deps not yet done
	users   []string // addresses in the plan that wait for this one
	queued  bool     // pushed on the ready queue (at most once)
	result  Result
}

type finished struct {
	addr   string
	result Result
	recErr error // the result could not be recorded
}

// Run runs op to its end and records how it finished. Cancelling ctx cancels
// the operation: no new action starts, the running ones finish (they run on a
// context that is not cancelled with ctx), every action not started is
// recorded cancelled and the operation CANCELLED.
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
	log := e.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("op", op.ID, "stack", op.Stack)
	rctx := context.WithoutCancel(ctx)
	if e.Runner == nil || e.Recorder == nil {
		return Outcome{}, errors.New("engine: Runner and Recorder are required")
	}
	bound := e.Parallelism
	if bound <= 0 {
		bound = DefaultParallelism
	}

	nodes, order, err := build(op)
	if err != nil {
		out := Outcome{Status: OperationFailed, Err: err.Error()}
		if rerr := e.Recorder.OperationFinished(rctx, op.ID, out.Status, out.Err); rerr != nil {
			return out, fmt.Errorf("record operation %s: %w", op.ID, rerr)
		}
		return out, nil
	}

	var firstErr string
	var recErr error
	record := func(addr string, r Result) {
		n := nodes[addr]
		n.status, n.result = r.Status, r
		if recErr != nil {
			return
		}
		if err := e.Recorder.ActionFinished(rctx, op.ID, addr, r); err != nil {
			recErr = fmt.Errorf("record %s: %w", addr, err)
		}
	}
	// skip marks every transitive dependent of a failed action skipped.
	var skip func(addr, reason string)
	skip = func(addr, reason string) {
		for _, u := range nodes[addr].users {
			if nodes[u].status.Final() {
				continue
			}
			record(u, Result{Status: StatusSkipped, Err: reason})
			log.Info("skipped", "address", u, "reason", reason)
			skip(u, reason)
		}
	}
	var ready []*node
	push := func(n *node) {
		if n.queued {
			return
		}
		n.queued = true
		i := sort.Search(len(ready), func(i int) bool { return ready[i].index > n.index })
		ready = append(ready, nil)
		copy(ready[i+1:], ready[i:])
		ready[i] = n
	}
	done := func(n *node) {
		for _, u := range n.users {
			un := nodes[u]
			un.waiting--
			if un.waiting == 0 && !un.status.Final() {
				push(un)
			}
		}
	}
	fail := func(n *node) {
		if firstErr == "" {
			firstErr = n.change.Address + ": " + n.result.Err
		}
		skip(n.change.Address, fmt.Sprintf("skipped: %s failed: %s", n.change.Address, n.result.Err))
	}

	// What earlier leaders recorded: done and failed actions stay so.
	for _, addr := range order {
		n := nodes[addr]
		switch n.status {
		case StatusDone:
			done(n)
		case StatusFailed:
			fail(n)
		case StatusSkipped:
			// Finish a propagation the earlier leader may have cut short.
			skip(n.change.Address, n.result.Err)
		}
	}
	for _, addr := range order {
		if n := nodes[addr]; n.waiting == 0 && !n.status.Final() {
			push(n)
		}
	}

	results := make(chan finished)
	running := 0
	cancelled := false
	stop := ctx.Done()
	for {
		for recErr == nil && !cancelled && running < bound && len(ready) > 0 {
			if ctx.Err() != nil {
				cancelled, stop = true, nil
				break
			}
			n := ready[0]
			ready = ready[1:]
			if n.status.Final() {
				continue
			}
			if n.stepErr != nil {
				n.result = Result{Status: StatusFailed, Err: n.stepErr.Error()}
				record(n.change.Address, n.result)
				fail(n)
				continue
			}
			n.status = StatusRunning
			running++
			deps := make(map[string]map[string]any, len(n.deps))
			for _, d := range n.deps {
				deps[d] = nodes[d].result.Attrs
			}
			go func(n *node) {
				results <- e.runOne(rctx, log, op, n, deps)
			}(n)
		}
		if running == 0 {
			break
		}
		select {
		case f := <-results:
			running--
			n := nodes[f.addr]
			n.status, n.result = f.result.Status, f.result
			if f.recErr != nil {
				if recErr == nil {
					recErr = f.recErr
				}
				continue
			}
			if n.status == StatusDone {
				done(n)
			} else {
				fail(n)
			}
		case <-stop:
			cancelled, stop = true, nil
			log.Info("cancelling")
		}
	}
	if recErr != nil {
		log.Warn("stopped: could not record progress", "err", recErr)
		return Outcome{}, recErr
	}

	out := Outcome{Status: OperationComplete, Err: firstErr, Actions: map[string]Result{}}
	if firstErr != "" {
		out.Status = OperationFailed
	}
	for _, addr := range order {
		n := nodes[addr]
		if !n.status.Final() {
			// Only a cancel leaves actions unstarted: build refuses cycles.
			record(addr, Result{Status: StatusCancelled, Err: "cancelled"})
			cancelled = true
		}
		if n.change.Action != planner.NoOp {
			out.Actions[addr] = n.result
		}
	}
	if cancelled {
		out.Status = OperationCancelled
		if out.Err == "" {
			out.Err = "cancelled"
		}
	}
	if recErr != nil {
		return Outcome{}, recErr
	}
	if err := e.Recorder.OperationFinished(rctx, op.ID, out.Status, out.Err); err != nil {
		return out, fmt.Errorf("record operation %s: %w", op.ID, err)
	}
	msg := fmt.Sprintf("operation %s %s", op.ID, out.Status)
	if out.Err != "" {
		msg += ": " + out.Err
	}
	if err := e.Recorder.Event(rctx, op.Stack, msg); err != nil {
		log.Warn("record event", "err", err)
	}
	log.Info("finished", "status", out.Status, "err", out.Err)
	return out, nil
}

// runOne records the start of an action (unless it is being resumed), runs
// or resumes it and records its result.
func (e *Engine) runOne(ctx context.Context, log *slog.Logger, op Operation, n *node, deps map[string]map[string]any) finished {
	addr := n.change.Address
	steps := make([]Action, len(n.steps))
	for i, st := range n.steps {
		st.Deps = deps
		st.Node = n.rec.Node
		steps[i] = st
	}
	f := finished{addr: addr}
	fail := func(err error) finished {
		f.result.Status, f.result.Err = StatusFailed, err.Error()
		if rerr := e.Recorder.ActionFinished(ctx, op.ID, addr, f.result); rerr != nil {
			f.recErr = fmt.Errorf("record %s: %w", addr, rerr)
		}
		log.Warn("action failed", "address", addr, "err", err)
		msg := addr + " failed"
		if f.result.Node != "" {
			msg += " on " + f.result.Node
		}
		if eerr := e.Recorder.Event(ctx, op.Stack, msg+": "+err.Error()); eerr != nil {
			log.Warn("record event", "err", eerr)
		}
		return f
	}
	if !n.resume {
		if e.Assigner != nil {
			nd, err := e.Assigner.Assign(ctx, steps[0])
			if err != nil {
				return fail(fmt.Errorf("place %s: %w", addr, err))
			}
			for i := range steps {
				steps[i].Node = nd
			}
		}
		if err := e.Recorder.ActionStarted(ctx, op.ID, addr, steps[0].Node); err != nil {
			f.recErr = fmt.Errorf("record start of %s: %w", addr, err)
			return f
		}
		log.Info("started", "address", addr, "action", n.change.Action, "node", steps[0].Node)
	} else {
		log.Info("resuming", "address", addr, "node", n.rec.Node)
	}
	res, err := e.apply(ctx, steps, n.resume)
	f.result = res
	if f.result.Node == "" {
		f.result.Node = steps[0].Node
	}
	if err != nil {
		f.result.Attrs = nil
		return fail(err)
	}
	f.result.Status = StatusDone
	if rerr := e.Recorder.ActionFinished(ctx, op.ID, addr, f.result); rerr != nil {
		f.recErr = fmt.Errorf("record %s: %w", addr, rerr)
	}
	log.Info("done", "address", addr)
	return f
}

// build makes the dependency graph of op, with the recorded state applied,
// and refuses duplicate addresses and cycles.
func build(op Operation) (map[string]*node, []string, error) {
	if op.Plan == nil {
		return nil, nil, errors.New("operation has no plan")
	}
	nodes := make(map[string]*node, len(op.Plan.Changes))
	order := make([]string, 0, len(op.Plan.Changes))
	for i, ch := range op.Plan.Changes {
		if _, dup := nodes[ch.Address]; dup {
			return nil, nil, fmt.Errorf("plan lists %s twice", ch.Address)
		}
		n := &node{index: i, change: ch, status: StatusPending}
		n.steps, n.stepErr = Steps(op.ID, op.Stack, ch)
		rec, ok := op.Actions[ch.Address]
		switch {
		case ch.Action == planner.NoOp:
			// Nothing to run or record; dependents see the state as it is.
			n.status = StatusDone
			n.result = Result{Status: StatusDone, Attrs: ch.Before}
			if n.result.Attrs == nil {
				n.result.Attrs = ch.After
			}
		case ok && rec.Status == StatusRunning:
			n.resume, n.rec = true, rec
		case ok && rec.Status == StatusCancelled:
			// A cancelled action of an operation being run again is pending.
		case ok && rec.Status.Final():
			n.status, n.rec = rec.Status, rec
			n.result = Result{Status: rec.Status, Err: rec.Err, Node: rec.Node, Attrs: rec.Attrs}
		}
		nodes[ch.Address] = n
		order = append(order, ch.Address)
	}
	for _, addr := range order {
		n := nodes[addr]
		seen := map[string]bool{}
		for _, d := range n.change.DependsOn {
			dn, ok := nodes[d]
			if !ok || seen[d] {
				continue // not part of this plan: nothing to wait for
			}
			if d == addr {
				return nil, nil, fmt.Errorf("%s depends on itself", addr)
			}
			seen[d] = true
			n.deps = append(n.deps, d)
			n.waiting++
			dn.users = append(dn.users, addr)
		}
	}
	if cyc := cycle(nodes, order); cyc != "" {
		return nil, nil, fmt.Errorf("dependency cycle through %s", cyc)
	}
	return nodes, order, nil
}

// cycle returns an address on a dependency cycle, or "".
func cycle(nodes map[string]*node, order []string) string {
	indeg := make(map[string]int, len(nodes))
	var queue []string
	for _, a := range order {
		indeg[a] = len(nodes[a].deps)
		if indeg[a] == 0 {
			queue = append(queue, a)
		}
	}
	seen := 0
	for len(queue) > 0 {
		a := queue[0]
		queue = queue[1:]
		seen++
		for _, u := range nodes[a].users {
			indeg[u]--
			if indeg[u] == 0 {
				queue = append(queue, u)
			}
		}
	}
	if seen == len(order) {
		return ""
	}
	for _, a := range order {
		if indeg[a] > 0 {
			return a
		}
	}
	return ""
}
