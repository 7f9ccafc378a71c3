package server

import (
	"sync"

	"github.com/kiln-dev/kiln/raftstore"
	"github.com/kiln-dev/kiln/spec"
)

// opEvaluator evaluates an operation's stack template on the leader, for
// what the plan could not know: lifecycle settings and configured
// attributes of the resources it records, values that were unknown at plan
// time, and the outputs once an apply is done.
type opEvaluator struct {
	s  *Server
	op raftstore.Operation

	mu           sync.Mutex
	desiredStack *spec.Stack // loaded once, for lifecycle and configured attributes
	freshStack   *spec.Stack // evaluated against the state at freshSerial (see fresh)
	freshSerial  uint64
}

// desired is the stack an apply makes, evaluated once (nil for other
// operations).
func (ev *opEvaluator) desired() *spec.Stack {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if ev.desiredStack != nil || ev.op.Kind != raftstore.OpApply {
		return ev.desiredStack
	}
	ev.desiredStack = ev.evaluate("load stack")
	return ev.desiredStack
}

// evaluate evaluates the template of the operation's stack with the state as
// it is now. It is nil for a stack that is gone or a template that does not
// evaluate, which is logged as what.
func (ev *opEvaluator) evaluate(what string) *spec.Stack {
	st, ok := ev.s.store.State().Stack(ev.op.Project, ev.op.Stack)
	if !ok {
		return nil
	}
	d, err := ev.s.loadStack(st)
	if err != nil {
		ev.s.log.Warn(what, "stack", ev.op.Stack, "err", err)
		return nil
	}
	return d
}

// fresh evaluates the template with the state as it is now. The result is
// kept until the stack's serial moves, so the actions that become
// runnable together share one evaluation.
func (ev *opEvaluator) fresh() *spec.Stack {
	st, ok := ev.s.store.State().Stack(ev.op.Project, ev.op.Stack)
	if !ok {
		return nil
	}
	ev.mu.Lock()
	if ev.freshStack != nil && ev.freshSerial == st.Serial {
		d := ev.freshStack
		ev.mu.Unlock()
		return d
	}
	ev.mu.Unlock()
	d, err := ev.s.loadStack(st)
	if err != nil {
		return nil
	}
	ev.mu.Lock()
	ev.freshStack, ev.freshSerial = d, st.Serial
	ev.mu.Unlock()
	return d
}

// known returns the attributes an action is to be run with: attrs, unless
// they still hold values that depended on other resources. Those are known
// now: the configured attributes are then taken from the template evaluated
// again. Only actions that still hold unknown values need it.
func (ev *opEvaluator) known(kind, address string, attrs map[string]any) map[string]any {
	if !configuredUnknown(kind, attrs) {
		return attrs
	}
	if d := ev.fresh(); d != nil {
		if dr := d.Resource(address); dr != nil {
			return dr.Attrs
		}
	}
	return attrs
}

// outputs evaluates the outputs of an apply's stack with the state as it is
// now (once it is done: with the attributes the agents reported). It is nil
// for other operations, a stack that is gone or a template that does not
// evaluate.
func (ev *opEvaluator) outputs() map[string]spec.Output {
	if ev.op.Kind != raftstore.OpApply {
		return nil
	}
	d := ev.evaluate("outputs")
	if d == nil {
		return nil
	}
	if d.Outputs == nil {
		return map[string]spec.Output{}
	}
	return d.Outputs
}

// configuredUnknown reports whether a configured attribute of attrs (one
// the template sets, not one the executor computes) is unknown: only then
// does an action need the template evaluated again. The computed ones
// (id, a network's gateway, a server's address, ...) are unknown in every
// create's plan and are filled by the agent that makes the object.
func configuredUnknown(kind string, attrs map[string]any) bool {
	schema := spec.Schemas[kind]
	for name, v := range attrs {
		if name == "id" || schema != nil && schema.Attr(name) != nil && schema.Attr(name).Computed {
			continue
		}
		if spec.IsUnknown(v) {
			return true
		}
	}
	return false
}
