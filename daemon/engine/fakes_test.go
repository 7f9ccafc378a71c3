package engine

import (
	"context"
	"errors"
	"sync"

	"github.com/kiln-dev/kiln/executors/memdriver"
	"github.com/kiln-dev/kiln/planner"
	"github.com/kiln-dev/kiln/raftstore"
)

// recorder is an in-memory Recorder that numbers every record it makes, so
// tests check order by sequence number, never by clock.
type recorder struct {
	mu      sync.Mutex
	seq     int
	started map[string]int // address -> sequence number of its start
	ended   map[string]int // address -> sequence number of its result
	actions map[string]ActionState
	starts  map[string]int // how many times each start was recorded
	opDone  []string       // "STATUS: err" per OperationFinished
	events  []string
	// failAfter, when > 0, makes every record after that many fail, as a
	// leader that lost its leadership would.
	failAfter int
	// onStart is called after a start is recorded.
	onStart func(address string)
}

var errNotLeader = errors.New("not the leader")

func newRecorder() *recorder {
	return &recorder{
		started: map[string]int{},
		ended:   map[string]int{},
		actions: map[string]ActionState{},
		starts:  map[string]int{},
	}
}

func (r *recorder) next() (int, error) {
	if r.failAfter > 0 && r.seq >= r.failAfter {
		return 0, errNotLeader
	}
	r.seq++
	return r.seq, nil
}

func (r *recorder) ActionStarted(_ context.Context, opID, address, node string) error {
	r.mu.Lock()
	s, err := r.next()
	if err != nil {
		r.mu.Unlock()
		return err
	}
	r.started[address] = s
	r.starts[address]++
	r.actions[address] = ActionState{Status: raftstore.ActionRunning, Node: node}
	f := r.onStart
	r.mu.Unlock()
	if f != nil {
		f(address)
	}
	return nil
}

func (r *recorder) ActionFinished(_ context.Context, opID, address string, res Result) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, err := r.next()
	if err != nil {
		return err
	}
	r.ended[address] = s
	r.actions[address] = ActionState{Status: res.Status, Err: res.Err, Node: res.Node, Attrs: res.Attrs}
	return nil
}

func (r *recorder) OperationFinished(_ context.Context, opID, status, msg string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := r.next(); err != nil {
		return err
	}
	r.opDone = append(r.opDone, status+": "+msg)
	return nil
}

func (r *recorder) Event(_ context.Context, stack, msg string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, msg)
	return nil
}

// state returns a copy of what is recorded, as a new leader would load it.
func (r *recorder) state() map[string]ActionState {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := make(map[string]ActionState, len(r.actions))
	for k, v := range r.actions {
		m[k] = v
	}
	return m
}

// driver adapts memdriver to Runner and Reader, the way an agent would.
type driver struct {
	d    *memdriver.Driver
	node string

	mu          sync.Mutex
	inflight    int
	maxInflight int
	// hook, if set, runs at the start of every Run with the action.
	hook func(Action)
}

func (r *driver) Run(ctx context.Context, a Action) (Result, error) {
	r.mu.Lock()
	r.inflight++
	if r.inflight > r.maxInflight {
		r.maxInflight = r.inflight
	}
	h := r.hook
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.inflight--
		r.mu.Unlock()
	}()
	if h != nil {
		h(a)
	}
	res := Result{Node: r.node}
	switch a.Op {
	case OpCreate:
		o, err := r.d.Create(ctx, a.Kind, a.Address, a.Generation, a.Attrs)
		res.Attrs = o.Values()
		return res, err
	case OpUpdate:
		o, err := r.d.Update(ctx, a.Kind, a.Address, a.Attrs)
		res.Attrs = o.Values()
		return res, err
	case OpDelete:
		return res, r.d.Delete(ctx, a.Kind, a.Address, a.ID)
	}
	return res, errors.New("bad op")
}

func (r *driver) Read(ctx context.Context, a Action) (Result, bool, error) {
	var o memdriver.Object
	var ok bool
	var err error
	if a.Op == OpDelete && a.ID != "" {
		o, ok, err = r.d.ReadID(ctx, a.Kind, a.Address, a.ID)
	} else {
		o, ok, err = r.d.Read(ctx, a.Kind, a.Address)
	}
	if !ok || err != nil {
		return Result{}, ok, err
	}
	return Result{Node: r.node, Attrs: o.Values()}, true, nil
}

// ch builds a change; kind is taken from the address.
func ch(addr string, action planner.Action, deps ...string) planner.Change {
	kind := addr
	for i, c := range addr {
		if c == '.' {
			kind = addr[:i]
			break
		}
	}
	c := planner.Change{Address: addr, Kind: kind, Action: action, DependsOn: deps}
	if action != planner.Create {
		c.Before = map[string]any{"id": "old-" + addr}
	}
	if action != planner.Delete {
		c.After = map[string]any{"name": addr}
	}
	return c
}

func plan(changes ...planner.Change) *planner.Result {
	return &planner.Result{Stack: "s", Changes: changes}
}
