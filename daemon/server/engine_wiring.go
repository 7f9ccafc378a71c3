package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/daemon/api"
	"github.com/kiln-dev/kiln/daemon/engine"
	"github.com/kiln-dev/kiln/daemon/scheduler"
	"github.com/kiln-dev/kiln/planner"
	"github.com/kiln-dev/kiln/raftstore"
	"github.com/kiln-dev/kiln/spec"
)

// opRun wires the engine to raft and the agents for one operation on the
// leader: it is the engine's Recorder (every call a raft apply), Runner and
// Reader (work items for an agent, waited for on the state) and Assigner
// (the scheduler; a stack lives on one agent).
type opRun struct {
	s *Server
	// lead is the leadership context: waits end when leadership is lost
	// (the engine's own context is not cancelled for running actions).
	lead context.Context
	op   raftstore.Operation

	mu       sync.Mutex
	agent    string            // the agent the stack is placed on
	physical map[string]string // address -> physical name reported
	desired  *spec.Stack       // loaded once, for lifecycle and outputs
	// fresh is the template evaluated against the state at freshSerial
	// (see freshDesired).
	fresh       *spec.Stack
	freshSerial uint64
}

var (
	_ engine.Recorder = (*opRun)(nil)
	_ engine.Runner   = (*opRun)(nil)
	_ engine.Reader   = (*opRun)(nil)
	_ engine.Assigner = (*opRun)(nil)
)

func (o *opRun) event(msg string, lvl raftstore.Level) []raftstore.Event {
	return []raftstore.Event{{Time: time.Now().UTC(), Node: o.s.cfg.NodeID, Level: lvl, Message: msg}}
}

// ActionStarted implements engine.Recorder.
func (o *opRun) ActionStarted(ctx context.Context, opID, address, node string) error {
	msg := address + " started"
	if node != "" {
		msg += " on " + node
	}
	return o.record(ctx, &raftstore.ActionStarted{
		Operation: opID, Address: address, Agent: node, Time: time.Now().UTC(), Events: o.event(msg, raftstore.LevelInfo),
	})
}

// ActionFinished implements engine.Recorder: a done action records (or
// forgets) the resource in the same step.
func (o *opRun) ActionFinished(ctx context.Context, opID, address string, res engine.Result) error {
	cmd := &raftstore.ActionFinished{Operation: opID, Address: address, Error: res.Err, Time: time.Now().UTC()}
	ch := o.op.Change(address)
	switch res.Status {
	case engine.StatusDone:
		cmd.Status = raftstore.ActionDone
		if ch != nil && ch.Action == planner.Delete {
			cmd.DeleteResource = true
			cmd.Events = o.event(address+" deleted", raftstore.LevelInfo)
		} else if ch != nil {
			r := o.resource(*ch, res)
			msg := fmt.Sprintf("%s %sd on %s", address, ch.Action, res.Node)
			if res.Ready > 0 {
				cmd.ReadySeconds = res.Ready.Seconds()
				r.ReadyAt = cmd.Time
				r.ReadySeconds = res.Ready.Seconds()
				msg += fmt.Sprintf(", ready after %.1fs", res.Ready.Seconds())
			}
			cmd.Resource = &r
			cmd.Events = o.event(msg, raftstore.LevelInfo)
		}
	case engine.StatusFailed:
		cmd.Status = raftstore.ActionFailed
	default: // skipped, cancelled: only pending actions
		cmd.Status = raftstore.ActionSkipped
		cmd.Events = o.event(address+" "+string(res.Status)+": "+res.Err, raftstore.LevelWarn)
	}
	err := o.record(ctx, cmd)
	if err == nil {
		o.s.metrics.actions.WithLabelValues(string(res.Status), "recorded").Inc()
	}
	return err
}

// resource builds the record of an applied instance: configured and
// computed attributes split by the kind's schema.
func (o *opRun) resource(ch planner.Change, res engine.Result) raftstore.Resource {
	rs := planner.ResourceState{
		Address: ch.Address, Kind: ch.Kind, Attrs: map[string]any{}, Computed: map[string]any{},
		DependsOn: ch.DependsOn, Sensitive: ch.Sensitive,
	}
	schema := spec.Schemas[ch.Kind]
	for k, v := range res.Attrs {
		computed := k == "id"
		if schema != nil {
			if a := schema.Attr(k); a != nil && a.Computed {
				computed = true
			}
		}
		if computed {
			rs.Computed[k] = v
		} else {
			rs.Attrs[k] = v
		}
	}
	if d := o.desiredStack(); d != nil {
		if dr := d.Resource(ch.Address); dr != nil {
			rs.PreventDestroy = dr.Lifecycle.PreventDestroy
			// Keep the configured attributes as the template set them, so
			// that the next plan compares like with like.
			for k := range rs.Attrs {
				if _, ok := dr.Attrs[k]; !ok {
					delete(rs.Attrs, k)
				}
			}
			for k, v := range dr.Attrs {
				if _, ok := rs.Attrs[k]; !ok && !spec.IsUnknown(v) {
					rs.Attrs[k] = v
				}
			}
		}
	}
	o.mu.Lock()
	phys := o.physical[ch.Address]
	o.mu.Unlock()
	return raftstore.Resource{State: rs, PhysicalName: phys, Status: raftstore.ResourceReady, Node: res.Node}
}

func (o *opRun) desiredStack() *spec.Stack {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.desired != nil || o.op.Kind != raftstore.OpApply {
		return o.desired
	}
	st, ok := o.s.store.State().Stack(o.op.Project, o.op.Stack)
	if !ok {
		return nil
	}
	d, err := o.s.loadStack(st)
	if err != nil {
		o.s.log.Warn("load stack", "stack", o.op.Stack, "err", err)
		return nil
	}
	o.desired = d
	return d
}

// OperationFinished implements engine.Recorder. A done apply evaluates the
// outputs again with the attributes the agents reported.
func (o *opRun) OperationFinished(ctx context.Context, opID, status, errMsg string) error {
	cmd := &raftstore.FinishOperation{ID: opID, Error: errMsg, Time: time.Now().UTC()}
	switch status {
	case engine.OperationComplete:
		cmd.Status = raftstore.OpDone
		if o.op.Kind == raftstore.OpApply {
			if st, ok := o.s.store.State().Stack(o.op.Project, o.op.Stack); ok {
				d, err := o.s.loadStack(st)
				if err != nil {
					o.s.log.Warn("outputs", "stack", o.op.Stack, "err", err)
				} else {
					cmd.Outputs = d.Outputs
					if cmd.Outputs == nil {
						cmd.Outputs = map[string]spec.Output{}
					}
				}
			}
		}
	case engine.OperationFailed:
		cmd.Status = raftstore.OpFailed
	default:
		cmd.Status = raftstore.OpCancelled
	}
	lvl := raftstore.LevelInfo
	if cmd.Status != raftstore.OpDone {
		lvl = raftstore.LevelError
	}
	msg := string(o.op.Kind) + " " + string(cmd.Status)
	if errMsg != "" {
		msg += ": " + errMsg
	}
	cmd.Events = o.event(msg, lvl)
	err := o.record(ctx, cmd)
	if err == nil {
		o.s.metrics.operations.WithLabelValues(string(o.op.Kind), string(cmd.Status)).Inc()
	}
	return err
}

// Event implements engine.Recorder.
func (o *opRun) Event(ctx context.Context, stack, msg string) error {
	return o.record(ctx, &raftstore.AppendEvents{Project: o.op.Project, Stack: stack, Events: o.event(msg, raftstore.LevelInfo)})
}

// pinned returns the agent the stack lives on: the node of any of its
// resources, or the one this operation placed it on.
func (o *opRun) pinned() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.agent != "" {
		return o.agent
	}
	for _, r := range o.s.store.State().Resources(o.op.Project, o.op.Stack) {
		if r.Node != "" {
			o.agent = r.Node
			return r.Node
		}
	}
	return ""
}

func (o *opRun) schedAgents(exclude map[string]bool) []scheduler.Agent {
	var out []scheduler.Agent
	for _, a := range o.s.store.State().Agents() {
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

// place picks an agent for the stack and assigns the action to it.
func (o *opRun) place(ctx context.Context, address string, exclude map[string]bool) (string, error) {
	req := scheduler.StackRequest(&o.op.Plan)
	req.Stack = o.op.Stack
	cand, err := scheduler.DefaultWeights.Schedule(ctx, req, o.schedAgents(exclude), func(ctx context.Context, c scheduler.Candidate) error {
		return o.record(ctx, &raftstore.AssignAction{Operation: o.op.ID, Address: address, Agent: c.Agent, Time: time.Now().UTC()})
	})
	if err != nil {
		return "", err
	}
	o.mu.Lock()
	o.agent = cand.Agent
	o.mu.Unlock()
	return cand.Agent, nil
}

// Assign implements engine.Assigner: the stack's agent when it has one
// (it must be up), otherwise the scheduler's choice.
func (o *opRun) Assign(ctx context.Context, a engine.Action) (string, error) {
	if p := o.pinned(); p != "" {
		if !o.waitUp(ctx, p) {
			return "", fmt.Errorf("the stack lives on agent %s, which is down", p)
		}
		if err := o.record(ctx, &raftstore.AssignAction{Operation: o.op.ID, Address: a.Address, Agent: p, Time: time.Now().UTC()}); err != nil {
			return "", err
		}
		return p, nil
	}
	return o.place(ctx, a.Address, nil)
}

// waitUp reports whether an agent is up, waiting for it at most two
// heartbeat windows: an agent that restarts (or the embedded default's,
// which a new process registers again) comes back within one.
func (o *opRun) waitUp(ctx context.Context, agent string) bool {
	hb := o.s.cfg.AgentHeartbeat
	ctx, cancel := context.WithTimeout(ctx, 2*hb.Interval*time.Duration(max(hb.Missed, 1)))
	defer cancel()
	st := o.s.store.State()
	for {
		idx := st.Index()
		if ag, ok := st.Agent(agent); ok && ag.Status == raftstore.AgentUp {
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
func (o *opRun) Run(ctx context.Context, a engine.Action) (engine.Result, error) {
	node := a.Node
	if node == "" {
		var err error
		if node, err = o.Assign(ctx, a); err != nil {
			return engine.Result{}, err
		}
	}
	tried := map[string]bool{}
	for attempt := 1; ; attempt++ {
		rep, err := o.ask(a, node, string(a.Op), attempt)
		if err != nil {
			if !errors.Is(err, errAgentDown) || !o.canMove(a, attempt) {
				return engine.Result{Node: node}, err
			}
			// The agent went down before it reported: its work item is
			// withdrawn (ask deleted it) and, while the stack has nothing
			// on that agent yet, the create goes to another one.
			rep = api.ActionReport{Error: err.Error()}
		}
		if rep.OK && !rep.Refused {
			attrs, err := api.DecodeValues(rep.Attrs)
			if err != nil {
				return engine.Result{Node: node}, fmt.Errorf("report of %s: %w", a.Address, err)
			}
			if rep.PhysicalName != "" {
				o.mu.Lock()
				o.physical[a.Address] = rep.PhysicalName
				o.mu.Unlock()
			}
			return engine.Result{Node: node, Attrs: attrs, Ready: time.Duration(rep.ReadySeconds * float64(time.Second))}, nil
		}
		msg := rep.Error
		if rep.Refused {
			msg = "refused: " + msg
		}
		tried[node] = true
		if !o.canMove(a, attempt) {
			return engine.Result{Node: node}, fmt.Errorf("%s on %s: %s", a.Op, node, msg)
		}
		o.s.log.Warn("create failed, trying another agent", "address", a.Address, "agent", node, "err", msg)
		o.mu.Lock()
		o.agent = ""
		o.mu.Unlock()
		next, perr := o.place(o.lead, a.Address, tried)
		if perr != nil {
			return engine.Result{Node: node}, fmt.Errorf("%s on %s: %s; no other agent: %v", a.Op, node, msg, perr)
		}
		node = next
	}
}

// canMove reports whether a create that failed on its agent may be tried on
// another: only creates, at most scheduler.MaxAttempts in all, and only while
// the stack has no resource anywhere (its resources live on one agent).
func (o *opRun) canMove(a engine.Action, attempt int) bool {
	return a.Op == engine.OpCreate && attempt < scheduler.MaxAttempts &&
		len(o.s.store.State().Resources(o.op.Project, o.op.Stack)) == 0
}

// Read implements engine.Reader. A request an earlier leader put for the
// same step is waited for first: its report says whether the step's effect
// is there, and asking the agent again would run it twice.
func (o *opRun) Read(ctx context.Context, a engine.Action) (engine.Result, bool, error) {
	node := a.Node
	if node == "" {
		node = o.pinned()
	}
	if node == "" {
		return engine.Result{}, false, nil // never placed: nothing can exist
	}
	for _, w := range o.s.store.State().WorkFor(o.op.ID, a.Address) {
		var wi api.WorkItem
		if json.Unmarshal(w.Payload, &wi) != nil || wi.Op != string(a.Op) || wi.Generation != a.Generation {
			continue
		}
		rep, err := o.wait(w.ID, w.Agent)
		if err != nil {
			continue // the agent went down: read instead
		}
		if rep.OK {
			attrs, _ := api.DecodeValues(rep.Attrs)
			if rep.PhysicalName != "" {
				o.mu.Lock()
				o.physical[a.Address] = rep.PhysicalName
				o.mu.Unlock()
			}
			return engine.Result{Node: w.Agent, Attrs: attrs, Ready: time.Duration(rep.ReadySeconds * float64(time.Second))}, a.Op != engine.OpDelete, nil
		}
	}
	rep, err := o.ask(a, node, "read", 1)
	if err != nil {
		return engine.Result{Node: node}, false, err
	}
	if !rep.OK {
		return engine.Result{Node: node}, false, fmt.Errorf("read on %s: %s", node, rep.Error)
	}
	attrs, err := api.DecodeValues(rep.Attrs)
	if err != nil {
		return engine.Result{Node: node}, false, err
	}
	if rep.PhysicalName != "" {
		o.mu.Lock()
		o.physical[a.Address] = rep.PhysicalName
		o.mu.Unlock()
	}
	return engine.Result{Node: node, Attrs: attrs, Ready: time.Duration(rep.ReadySeconds * float64(time.Second))}, rep.Exists, nil
}

// ask puts a work item for an agent and waits for its report.
func (o *opRun) ask(a engine.Action, node, op string, attempt int) (api.ActionReport, error) {
	attrs := a.Attrs
	if a.Op != engine.OpDelete && op != "read" && spec.IsUnknown(attrs) {
		// Values that depended on other resources are known now: take the
		// configured attributes from the template evaluated again. Only
		// actions that still hold unknown values need it.
		if d := o.freshDesired(); d != nil {
			if dr := d.Resource(a.Address); dr != nil {
				attrs = dr.Attrs
			}
		}
	}
	enc, err := api.EncodeValues(attrs)
	if err != nil {
		return api.ActionReport{}, err
	}
	deps := map[string]map[string]any{}
	for k, v := range a.Deps {
		if deps[k], err = api.EncodeValues(v); err != nil {
			return api.ActionReport{}, err
		}
	}
	wi := api.WorkItem{
		OperationID: o.op.ID, Stack: o.op.Stack, Project: o.op.Project, Address: a.Address, Kind: a.Kind,
		Op: op, Attrs: enc, ID: a.ID, Generation: a.Generation, Deps: deps, Attempt: attempt,
		WorkID: "w-" + randomHex(8), AwaitReady: a.AwaitReady && op == "read",
	}
	payload, err := json.Marshal(wi)
	if err != nil {
		return api.ActionReport{}, err
	}
	err = o.record(o.lead, &raftstore.PutWork{Work: raftstore.Work{
		ID: wi.WorkID, Agent: node, Operation: o.op.ID, Address: a.Address, Op: op, Payload: payload, Created: time.Now().UTC(),
	}})
	if err != nil {
		return api.ActionReport{}, err
	}
	rep, err := o.wait(wi.WorkID, node)
	if err != nil {
		o.record(o.lead, &raftstore.DeleteWork{IDs: []string{wi.WorkID}})
		return rep, err
	}
	res := "ok"
	if !rep.OK {
		res = "failed"
	}
	o.s.metrics.actions.WithLabelValues(op, res).Inc()
	return rep, nil
}

// freshDesired evaluates the template with the state as it is now. The
// result is kept until the stack's serial moves, so the actions that become
// runnable together share one evaluation.
func (o *opRun) freshDesired() *spec.Stack {
	st, ok := o.s.store.State().Stack(o.op.Project, o.op.Stack)
	if !ok {
		return nil
	}
	o.mu.Lock()
	if o.fresh != nil && o.freshSerial == st.Serial {
		d := o.fresh
		o.mu.Unlock()
		return d
	}
	o.mu.Unlock()
	d, err := o.s.loadStack(st)
	if err != nil {
		return nil
	}
	o.mu.Lock()
	o.fresh, o.freshSerial = d, st.Serial
	o.mu.Unlock()
	return d
}

var errAgentDown = errors.New("agent went down before reporting")

// wait waits on the state for the report of a work item; it gives up when
// the agent is marked down or leadership is lost.
func (o *opRun) wait(id, agent string) (api.ActionReport, error) {
	st := o.s.store.State()
	for {
		idx := st.Index()
		w, ok := st.Work(id)
		if !ok {
			return api.ActionReport{}, fmt.Errorf("work %s is gone", id)
		}
		if w.Done {
			var rep api.ActionReport
			if err := json.Unmarshal(w.Result, &rep); err != nil {
				return rep, fmt.Errorf("report of work %s: %w", id, err)
			}
			return rep, nil
		}
		if ag, ok := st.Agent(agent); !ok || ag.Status != raftstore.AgentUp {
			return api.ActionReport{}, fmt.Errorf("agent %s: %w", agent, errAgentDown)
		}
		if _, err := st.Wait(o.lead, idx); err != nil {
			return api.ActionReport{}, fmt.Errorf("wait for agent %s: %w", agent, err)
		}
	}
}

// engineOp turns a recorded operation into the engine's form.
func (s *Server) engineOp(op raftstore.Operation) engine.Operation {
	eo := engine.Operation{ID: op.ID, Stack: op.Stack, Plan: &op.Plan, Actions: map[string]engine.ActionState{}}
	for _, a := range op.Actions {
		var es engine.ActionState
		switch a.Status {
		case raftstore.ActionPending:
			continue
		case raftstore.ActionRunning:
			es = engine.ActionState{Status: engine.StatusRunning, Node: a.Agent}
		case raftstore.ActionDone:
			es = engine.ActionState{Status: engine.StatusDone, Node: a.Agent}
			if r, ok := s.store.State().Resource(op.Project, op.Stack, a.Address); ok {
				es.Attrs = mergeAttrs(r.State.Attrs, r.State.Computed)
				es.Node = r.Node
			}
		case raftstore.ActionFailed:
			es = engine.ActionState{Status: engine.StatusFailed, Err: a.Error, Node: a.Agent}
		case raftstore.ActionSkipped:
			es = engine.ActionState{Status: engine.StatusSkipped, Err: a.Error}
		}
		eo.Actions[a.Address] = es
	}
	return eo
}

func mergeAttrs(a, b map[string]any) map[string]any {
	out := make(map[string]any, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// record applies a command of this operation unless leadership was lost:
// then nothing more is recorded and the next leader resumes the operation.
func (o *opRun) record(ctx context.Context, c raftstore.Command) error {
	if err := o.lead.Err(); err != nil {
		return fmt.Errorf("leadership lost: %w", err)
	}
	return o.s.apply(ctx, c)
}
