package server

import (
	"context"
	"sync"

	"github.com/kiln-dev/kiln/daemon/engine"
	"github.com/kiln-dev/kiln/daemon/scheduler"
	"github.com/kiln-dev/kiln/raftstore"
)

// opEngine wires the engine to raft and the agents for one operation on the
// leader, by responsibility: an opRecorder records progress to raft
// (op_record.go), an opDispatcher places actions and hands them to the
// agents (op_dispatch.go), and an opEvaluator evaluates the template for
// what the plan could not know (op_eval.go). lead is the leadership
// context.
func (s *Server) opEngine(lead context.Context, op raftstore.Operation) *engine.Engine {
	eval := &opEvaluator{s: s, op: op}
	names := &physicalNames{byAddress: map[string]string{}}
	rec := &opRecorder{s: s, lead: lead, op: op, eval: eval, names: names}
	d := &opDispatcher{s: s, lead: lead, op: op, rec: rec, eval: eval, names: names}
	for _, a := range op.Actions {
		if a.Agent != "" && !a.Status.Final() {
			d.agent = a.Agent
		}
	}
	return &engine.Engine{
		Recorder: rec, Runner: d, Reader: d, Assigner: d,
		Parallelism: s.cfg.Parallelism, KindParallelism: scheduler.KindParallelism,
		Logger: s.log.With("sub", "engine"),
	}
}

// physicalNames are the physical names the agents reported during an
// operation, by address: the dispatcher notes them, the recorder records
// them with the resource.
type physicalNames struct {
	mu        sync.Mutex
	byAddress map[string]string
}

// set notes the physical name reported for address, if one was.
func (p *physicalNames) set(address, name string) {
	if name == "" {
		return
	}
	p.mu.Lock()
	p.byAddress[address] = name
	p.mu.Unlock()
}

// get returns the physical name reported for address, or "".
func (p *physicalNames) get(address string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.byAddress[address]
}

// engineOp turns a recorded operation into the engine's form. The engine
// speaks the same status vocabulary: a pending action is left out (the
// engine's missing address), a done one takes the recorded resource's
// attributes, and one skipped or cancelled never ran on any node.
func (s *Server) engineOp(op raftstore.Operation) engine.Operation {
	eo := engine.Operation{ID: op.ID, Stack: op.Stack, Plan: &op.Plan, Actions: map[string]engine.ActionState{}}
	for _, a := range op.Actions {
		if a.Status == raftstore.ActionPending {
			continue
		}
		es := engine.ActionState{Status: a.Status}
		switch a.Status {
		case raftstore.ActionRunning:
			es.Node = a.Agent
		case raftstore.ActionDone:
			es.Node = a.Agent
			if r, ok := s.store.State().Resource(op.Project, op.Stack, a.Address); ok {
				es.Attrs = mergeAttrs(r.State.Attrs, r.State.Computed)
				es.Node = r.Node
			}
		case raftstore.ActionFailed:
			es.Err, es.Node = a.Error, a.Agent
		case raftstore.ActionSkipped, raftstore.ActionCancelled:
			es.Err = a.Error
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
