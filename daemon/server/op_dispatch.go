package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/daemon/engine"
	"github.com/kiln-dev/kiln/daemon/scheduler"
	"github.com/kiln-dev/kiln/planner"
	"github.com/kiln-dev/kiln/raftstore"
)

// opDispatcher hands an operation's actions to the agents on the leader: it
// is the engine's Assigner (the scheduler; a stack lives on one agent),
// Runner and Reader (work items put for an agent and waited for on the
// state, with retries on another agent and re-placement).
type opDispatcher struct {
	s *Server
	// lead is the leadership context: waits end when leadership is lost
	// (the engine's own context is not cancelled for running actions).
	lead  context.Context
	op    raftstore.Operation
	rec   *opRecorder    // work items and assignments are recorded through it
	eval  *opEvaluator   // the attributes that were unknown at plan time
	names *physicalNames // the physical names the agents report

	mu    sync.Mutex
	agent string // the agent the stack is placed on
}

var (
	_ engine.Runner   = (*opDispatcher)(nil)
	_ engine.Reader   = (*opDispatcher)(nil)
	_ engine.Assigner = (*opDispatcher)(nil)
)

// Assign implements engine.Assigner: the stack's agent when it has one
// (it must be up), otherwise the scheduler's choice. Only the scheduler's
// choice is recorded here (it reserves the agent's capacity); the stack's
// own agent is recorded with the action's start.
func (d *opDispatcher) Assign(ctx context.Context, a engine.Action) (string, error) {
	if p := d.pinned(); p != "" {
		if !d.waitUp(ctx, p) {
			return "", fmt.Errorf("the stack lives on agent %s, which is down", p)
		}
		return p, nil
	}
	return d.place(ctx, a.Address, nil)
}

// pinned returns the agent the stack lives on: the node of any of its
// resources, or the one this operation placed it on.
func (d *opDispatcher) pinned() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.agent != "" {
		return d.agent
	}
	for _, r := range d.s.store.State().Resources(d.op.Project, d.op.Stack) {
		if r.Node != "" {
			d.agent = r.Node
			return r.Node
		}
	}
	return ""
}

// place picks an agent for the stack and assigns the action to it.
func (d *opDispatcher) place(ctx context.Context, address string, exclude map[string]bool) (string, error) {
	req := scheduler.StackRequest(&d.op.Plan)
	req.Stack = d.op.Stack
	cand, err := scheduler.DefaultWeights.Schedule(ctx, req, d.schedAgents(exclude), func(ctx context.Context, c scheduler.Candidate) error {
		return d.rec.recordFor(ctx, address, &raftstore.AssignAction{Operation: d.op.ID, Address: address, Agent: c.Agent, Time: time.Now().UTC()})
	})
	if err != nil {
		return "", err
	}
	d.mu.Lock()
	d.agent = cand.Agent
	d.mu.Unlock()
	return cand.Agent, nil
}

// schedAgents is the scheduler's view of the agents, less those in exclude.
func (d *opDispatcher) schedAgents(exclude map[string]bool) []scheduler.Agent {
	var out []scheduler.Agent
	for _, a := range d.s.store.State().Agents() {
		if exclude[a.ID] {
			continue
		}
		out = append(out, scheduler.Agent{
			ID: a.ID, Down: a.Status != raftstore.AgentUp, Images: a.Images,
			Capacity: scheduler.Resources{CPUs: int64(a.Capacity.CPUs), Memory: a.Capacity.MemoryBytes, Disk: a.Capacity.DiskBytes},
			CPURatio: a.Capacity.CPURatio, MemoryRatio: a.Capacity.MemoryRatio,
			HostPortsLo: a.Capacity.HostPortsLo, HostPortsHi: a.Capacity.HostPortsHi, ReservedPorts: a.Capacity.ReservedPorts,
		})
	}
	return out
}

// waitUp reports whether an agent is up, waiting for it at most two
// heartbeat windows: an agent that restarts (or the embedded default's,
// which a new process registers again) comes back within one.
func (d *opDispatcher) waitUp(ctx context.Context, agent string) bool {
	hb := d.s.cfg.AgentHeartbeat
	ctx, cancel := context.WithTimeout(ctx, 2*hb.Interval*time.Duration(max(hb.Missed, 1)))
	defer cancel()
	st := d.s.store.State()
	for {
		idx := st.Index()
		if status, ok := st.AgentStatus(agent); ok && status == raftstore.AgentUp {
			return true
		}
		if _, err := st.Wait(ctx, idx); err != nil {
			return false
		}
	}
}

// Run implements engine.Runner: put a work item for the action's agent and
// wait for the report. A create that the agent refuses or fails is tried
// on another agent, at most scheduler.MaxAttempts attempts in all (the
// first included), while the stack has nothing on any agent.
func (d *opDispatcher) Run(ctx context.Context, a engine.Action) (engine.Result, error) {
	node := a.Node
	if node == "" {
		var err error
		if node, err = d.Assign(ctx, a); err != nil {
			return engine.Result{}, err
		}
	}
	tried := map[string]bool{}
	for attempt := 1; ; attempt++ {
		rep, err := d.ask(a, node, api.Op(a.Op), attempt)
		if err != nil {
			if !errors.Is(err, errAgentDown) || !d.canMove(a, attempt) {
				return engine.Result{Node: node}, err
			}
			// The agent went down before it reported: its work item is
			// withdrawn (ask deleted it) and, while the stack has nothing
			// on that agent yet, the create goes to another one.
			rep = api.ActionReport{Error: err.Error()}
		}
		if rep.OK && !rep.Refused {
			return d.result(a, node, rep), nil
		}
		msg := rep.Error
		if rep.Refused {
			msg = "refused: " + msg
		}
		tried[node] = true
		if !d.canMove(a, attempt) {
			return engine.Result{Node: node}, fmt.Errorf("%s on %s: %s", a.Op, node, msg)
		}
		d.s.log.Warn("create failed, trying another agent", "address", a.Address, "agent", node, "err", msg)
		d.mu.Lock()
		d.agent = ""
		d.mu.Unlock()
		next, perr := d.place(d.lead, a.Address, tried)
		if perr != nil {
			return engine.Result{Node: node}, fmt.Errorf("%s on %s: %s; no other agent: %v", a.Op, node, msg, perr)
		}
		node = next
	}
}

// canMove reports whether a create that failed on its agent may be tried on
// another: only creates, at most scheduler.MaxAttempts in all, and only while
// the stack has no resource anywhere (its resources live on one agent).
func (d *opDispatcher) canMove(a engine.Action, attempt int) bool {
	return a.Op == engine.OpCreate && attempt < scheduler.MaxAttempts &&
		len(d.s.store.State().Resources(d.op.Project, d.op.Stack)) == 0
}

// Read implements engine.Reader. A request an earlier leader put for the
// same step is waited for first: its report says whether the step's effect
// is there, and asking the agent again would run it twice.
func (d *opDispatcher) Read(ctx context.Context, a engine.Action) (engine.Result, bool, error) {
	node := a.Node
	if node == "" {
		node = d.pinned()
	}
	if node == "" {
		return engine.Result{}, false, nil // never placed: nothing can exist
	}
	for _, w := range d.s.store.State().WorkFor(d.op.ID, a.Address) {
		if w.Op != string(a.Op) || !sameGeneration(w, a.Generation) {
			continue
		}
		rep, err := d.wait(a.Address, w.ID, w.Agent)
		if err != nil {
			continue // the agent went down: read instead
		}
		if rep.OK {
			return d.result(a, w.Agent, rep), a.Op != engine.OpDelete, nil
		}
	}
	rep, err := d.ask(a, node, api.OpRead, 1)
	if err != nil {
		return engine.Result{Node: node}, false, err
	}
	if !rep.OK {
		return engine.Result{Node: node}, false, fmt.Errorf("read on %s: %s", node, rep.Error)
	}
	return d.result(a, node, rep), rep.Exists, nil
}

// result is what an agent's successful report says of an action; the
// physical name it reports is kept for the resource's record.
func (d *opDispatcher) result(a engine.Action, node string, rep api.ActionReport) engine.Result {
	d.names.set(a.Address, rep.PhysicalName)
	return engine.Result{Node: node, Attrs: rep.Attrs, Ready: time.Duration(rep.ReadySeconds * float64(time.Second))}
}

// sameGeneration reports whether work w is about the instance of generation
// gen. Work an earlier kiln put has no Generation of its own (it reads as
// ""): its payload says.
func sameGeneration(w raftstore.Work, gen string) bool {
	if w.Generation == gen {
		return true
	}
	if w.Generation != "" {
		return false
	}
	var wi api.WorkItem
	return json.Unmarshal(w.Payload, &wi) == nil && wi.Generation == gen
}

// readOf is the instance a read for action a is about: the one with a's ID
// for an update or a delete, otherwise (a create, or no ID known) the one a
// create was making.
func readOf(a engine.Action) api.ReadOf {
	if a.Op != engine.OpCreate && a.ID != "" {
		return api.ReadID
	}
	return api.ReadMade
}

// workItem is the request for an agent to do op (a's, or a read) for a.
// Attribute values that were unknown at plan time are filled in first,
// except for a delete or a read, which act on what exists.
func (d *opDispatcher) workItem(a engine.Action, op api.Op, attempt int) api.WorkItem {
	attrs := a.Attrs
	if a.Op != engine.OpDelete && op != api.OpRead {
		attrs = d.eval.known(a.Kind, a.Address, attrs)
	}
	var deps map[string]planner.Values
	if len(a.Deps) > 0 {
		deps = make(map[string]planner.Values, len(a.Deps))
		for k, v := range a.Deps {
			deps[k] = v
		}
	}
	wi := api.WorkItem{
		OperationID: d.op.ID, Stack: d.op.Stack, Project: d.op.Project, Address: a.Address, Kind: a.Kind,
		Op: op, Attrs: attrs, ID: a.ID, Generation: a.Generation, Deps: deps, Attempt: attempt,
		WorkID: "w-" + randomHex(8),
	}
	if op == api.OpRead {
		wi.Read, wi.AwaitReady = readOf(a), a.AwaitReady
	}
	return wi
}

// ask puts a work item for an agent and waits for its report.
func (d *opDispatcher) ask(a engine.Action, node string, op api.Op, attempt int) (api.ActionReport, error) {
	wi := d.workItem(a, op, attempt)
	payload, err := json.Marshal(wi)
	if err != nil {
		return api.ActionReport{}, fmt.Errorf("work for %s: %w", a.Address, err)
	}
	err = d.rec.recordFor(d.lead, a.Address, &raftstore.PutWork{Work: raftstore.Work{
		ID: wi.WorkID, Agent: node, Operation: d.op.ID, Address: a.Address, Op: string(op), Generation: a.Generation,
		Payload: payload, Created: time.Now().UTC(),
	}})
	if err != nil {
		return api.ActionReport{}, err
	}
	d.rec.noteWork(a.Address, wi.WorkID)
	rep, err := d.wait(a.Address, wi.WorkID, node)
	if err != nil {
		d.rec.recordFor(d.lead, a.Address, &raftstore.DeleteWork{IDs: []string{wi.WorkID}})
		return rep, err
	}
	res := "ok"
	if !rep.OK {
		res = "failed"
	}
	d.s.metrics.actions.WithLabelValues(string(op), res).Inc()
	return rep, nil
}

var errAgentDown = errors.New("agent went down before reporting")

// wait waits for the report of work item id of the action at address: the
// agent's report handed over by the report route (reportInbox), parked
// for the action's next record, or the report recorded in the state (by
// an earlier leader, or on its own). It gives up when the agent is marked
// down or leadership is lost.
func (d *opDispatcher) wait(address, id, agent string) (api.ActionReport, error) {
	inbox, stop := d.s.reports.expect(id)
	defer stop()
	st := d.s.store.State()
	for {
		changed := st.WatchCh()
		result, done, ok := st.WorkReport(id)
		if !ok {
			return api.ActionReport{}, fmt.Errorf("work %s is gone", id)
		}
		if done {
			var rep api.ActionReport
			if err := json.Unmarshal(result, &rep); err != nil {
				return rep, fmt.Errorf("report of work %s: %w", id, err)
			}
			return rep, nil
		}
		if status, ok := st.AgentStatus(agent); !ok || status != raftstore.AgentUp {
			return api.ActionReport{}, fmt.Errorf("agent %s: %w", agent, errAgentDown)
		}
		select {
		case dl := <-inbox:
			d.rec.parkReport(address, dl)
			return dl.rep, nil
		case <-changed:
			st.Woke()
		case <-d.lead.Done():
			return api.ActionReport{}, fmt.Errorf("wait for agent %s: %w", agent, d.lead.Err())
		}
	}
}
