package engine

import (
	"context"
	"fmt"
	"log/slog"
	"sort"

	"github.com/kiln-dev/kiln/planner"
	"github.com/kiln-dev/kiln/raftstore"
)

// run is the state of one Engine.Run, kept as a graph walk: the nodes with
// their per-action state, the queue of actions ready to start, how many are
// running and how the operation is going. Its methods are the walk's steps:
// restore what earlier leaders recorded, schedule what has nothing left to
// wait for, start and visit an action, receive its result, and release its
// dependents or skip them.
//
// Only the goroutine that called Run touches the progress fields and the
// nodes' progress. visit runs in a goroutine of its own per action: it reads
// only the fixed fields and the node's plan-time fields, and its result comes
// back over results.
type run struct {
	// Fixed for the run.
	e       *Engine
	op      Operation
	log     *slog.Logger
	rctx    context.Context // not cancelled with Run's ctx: records and running actions
	bound   int             // actions running at once
	nodes   map[string]*node
	order   []string // the plan's order
	results chan finished

	// Progress.
	ready     []*node // to start, in plan order
	running   int
	byKind    map[string]int // running, by kind
	cancelled bool           // nothing more starts
	firstErr  string         // "address: error" of the first failed action
	recErr    error          // the first record that could not be made: the walk stops
}

// finished is what visit hands back for one action.
type finished struct {
	addr   string
	result Result
	recErr error // the result could not be recorded
}

// newRun sets up the walk of op's graph.
func (e *Engine) newRun(rctx context.Context, op Operation, nodes map[string]*node, order []string) *run {
	log := e.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bound := e.Parallelism
	if bound <= 0 {
		bound = DefaultParallelism
	}
	return &run{
		e:       e,
		op:      op,
		log:     log.With("op", op.ID, "stack", op.Stack),
		rctx:    rctx,
		bound:   bound,
		nodes:   nodes,
		order:   order,
		results: make(chan finished),
		byKind:  map[string]int{},
	}
}

// restore takes in what earlier leaders recorded (done, failed, skipped and
// cancelled actions stay so; a skip they may have cut short is carried
// through, and so is a cancel: only the cancel of an operation records an
// action cancelled, so nothing more starts), then schedules every action
// that has nothing left to wait for.
func (r *run) restore() {
	for _, addr := range r.order {
		n := r.nodes[addr]
		switch n.status {
		case raftstore.ActionDone:
			r.release(n)
		case raftstore.ActionFailed:
			r.fail(n)
		case raftstore.ActionSkipped:
			r.skip(addr, n.result.Err)
		case raftstore.ActionCancelled:
			r.cancelled = true
		}
	}
	for _, addr := range r.order {
		if n := r.nodes[addr]; n.waiting == 0 && !n.status.Final() {
			r.schedule(n)
		}
	}
}

// walk starts ready actions and receives their results until nothing runs.
// Once ctx is cancelled nothing more starts; the running actions are waited
// for.
func (r *run) walk(ctx context.Context) {
	stop := ctx.Done()
	for {
		r.startReady(ctx)
		if r.cancelled {
			stop = nil
		}
		if r.running == 0 {
			return
		}
		select {
		case f := <-r.results:
			r.receive(f)
		case <-stop:
			r.cancelled, stop = true, nil
			r.log.Info("cancelling")
		}
	}
}

// startReady starts ready actions in plan order while there is room and
// every record was made. An action whose change cannot be turned into steps
// fails without running. Once the operation is cancelled nothing new starts,
// but an action an earlier leader recorded running is still resumed: it is
// running, and a cancel lets running actions finish (recording it cancelled
// would be false, and refused).
func (r *run) startReady(ctx context.Context) {
	for r.recErr == nil && r.running < r.bound && len(r.ready) > 0 {
		if ctx.Err() != nil {
			r.cancelled = true
		}
		n := r.next()
		if n == nil {
			return
		}
		switch {
		case n.status.Final():
		case n.stepErr != nil:
			r.record(n.change.Address, Result{Status: raftstore.ActionFailed, Err: n.stepErr.Error()})
			r.fail(n)
		default:
			r.start(n)
		}
	}
}

// next takes the next action to start off the ready queue: the first one
// whose kind has room, or once the operation is cancelled the first one
// being resumed; nil when there is none.
func (r *run) next() *node {
	for i, n := range r.ready {
		if r.cancelled && (!n.resume || n.status.Final()) {
			continue
		}
		if b := r.e.kindBound(n.change.Kind); b > 0 && r.byKind[n.change.Kind] >= b && !n.status.Final() {
			continue
		}
		if i == 0 {
			r.ready = r.ready[1:]
		} else {
			r.ready = append(r.ready[:i], r.ready[i+1:]...)
		}
		return n
	}
	return nil
}

// start marks n running and visits it in a goroutine of its own, with its
// dependencies' attributes as they are now.
func (r *run) start(n *node) {
	n.status = raftstore.ActionRunning
	r.running++
	r.byKind[n.change.Kind]++
	deps := make(map[string]map[string]any, len(n.deps))
	for _, d := range n.deps {
		deps[d] = r.nodes[d].result.Attrs
	}
	go func() {
		r.results <- r.visit(n, deps)
	}()
}

// receive takes in the result of an action that ran: a done action releases
// its dependents, a failed one skips them, and a result that could not be
// recorded stops the walk.
func (r *run) receive(f finished) {
	r.running--
	n := r.nodes[f.addr]
	r.byKind[n.change.Kind]--
	n.status, n.result = f.result.Status, f.result
	if f.recErr != nil {
		if r.recErr == nil {
			r.recErr = f.recErr
		}
		return
	}
	if n.status == raftstore.ActionDone {
		r.release(n)
	} else {
		r.fail(n)
	}
}

// schedule puts n on the ready queue, in plan order, once.
func (r *run) schedule(n *node) {
	if n.queued {
		return
	}
	n.queued = true
	i := sort.Search(len(r.ready), func(i int) bool { return r.ready[i].index > n.index })
	r.ready = append(r.ready, nil)
	copy(r.ready[i+1:], r.ready[i:])
	r.ready[i] = n
}

// release tells n's dependents that n is done and schedules those that have
// nothing left to wait for.
func (r *run) release(n *node) {
	for _, u := range n.users {
		un := r.nodes[u]
		un.waiting--
		if un.waiting == 0 && !un.status.Final() {
			r.schedule(un)
		}
	}
}

// fail notes n's failure (the operation's error is the first one) and skips
// its dependents.
func (r *run) fail(n *node) {
	if r.firstErr == "" {
		r.firstErr = n.change.Address + ": " + n.result.Err
	}
	r.skip(n.change.Address, fmt.Sprintf("skipped: %s failed: %s", n.change.Address, n.result.Err))
}

// skip records every transitive dependent of addr that is not yet final as
// skipped, for reason.
func (r *run) skip(addr, reason string) {
	for _, u := range r.nodes[addr].users {
		if r.nodes[u].status.Final() {
			continue
		}
		r.record(u, Result{Status: raftstore.ActionSkipped, Err: reason})
		r.log.Info("skipped", "address", u, "reason", reason)
		r.skip(u, reason)
	}
}

// record sets an action's result and records it. After a record could not
// be made nothing more is recorded.
func (r *run) record(addr string, res Result) {
	n := r.nodes[addr]
	n.status, n.result = res.Status, res
	if r.recErr != nil {
		return
	}
	if err := r.e.Recorder.ActionFinished(r.rctx, r.op.ID, addr, res); err != nil {
		r.recErr = fmt.Errorf("record %s: %w", addr, err)
	}
}

// outcome records every action the walk left unstarted (only a cancel does
// that: build refuses cycles) cancelled, and says how the operation ended.
func (r *run) outcome() Outcome {
	out := Outcome{Status: OperationComplete, Err: r.firstErr, Actions: map[string]Result{}}
	if r.firstErr != "" {
		out.Status = OperationFailed
	}
	for _, addr := range r.order {
		n := r.nodes[addr]
		if !n.status.Final() {
			r.record(addr, Result{Status: raftstore.ActionCancelled, Err: "cancelled"})
			r.cancelled = true
		}
		if n.change.Action != planner.NoOp {
			out.Actions[addr] = n.result
		}
	}
	if r.cancelled {
		out.Status = OperationCancelled
		if out.Err == "" {
			out.Err = "cancelled"
		}
	}
	return out
}
