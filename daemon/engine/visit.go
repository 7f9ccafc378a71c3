package engine

import (
	"fmt"

	"github.com/kiln-dev/kiln/raftstore"
)

// visit carries out one action: it places it and records its start (unless
// an earlier leader did and it is being resumed), runs or resumes its steps
// and records its result. It runs in a goroutine of its own (see run).
func (r *run) visit(n *node, deps map[string]map[string]any) finished {
	addr := n.change.Address
	steps := n.bind(deps)
	if n.resume {
		r.log.Info("resuming", "address", addr, "node", n.rec.Node)
	} else {
		if err := r.place(steps); err != nil {
			return r.failed(addr, Result{}, fmt.Errorf("place %s: %w", addr, err))
		}
		if err := r.e.Recorder.ActionStarted(r.rctx, r.op.ID, addr, steps[0].Node); err != nil {
			return finished{addr: addr, recErr: fmt.Errorf("record start of %s: %w", addr, err)}
		}
		r.log.Info("started", "address", addr, "action", n.change.Action, "node", steps[0].Node)
	}
	res, err := r.e.apply(r.rctx, steps, n.resume)
	if res.Node == "" {
		res.Node = steps[0].Node
	}
	if err != nil {
		res.Attrs = nil
		return r.failed(addr, res, err)
	}
	res.Status = raftstore.ActionDone
	f := finished{addr: addr, result: res}
	if rerr := r.e.Recorder.ActionFinished(r.rctx, r.op.ID, addr, res); rerr != nil {
		f.recErr = fmt.Errorf("record %s: %w", addr, rerr)
	}
	r.log.Info("done", "address", addr)
	return f
}

// bind returns n's steps with the dependencies' attributes and the node
// recorded for it (on resume; "" otherwise).
func (n *node) bind(deps map[string]map[string]any) []Action {
	steps := make([]Action, len(n.steps))
	for i, st := range n.steps {
		st.Deps = deps
		st.Node = n.rec.Node
		steps[i] = st
	}
	return steps
}

// place asks the Assigner, if there is one, for the node that runs the
// steps.
func (r *run) place(steps []Action) error {
	if r.e.Assigner == nil {
		return nil
	}
	nd, err := r.e.Assigner.Assign(r.rctx, steps[0])
	if err != nil {
		return err
	}
	for i := range steps {
		steps[i].Node = nd
	}
	return nil
}

// failed records an action failed with err (res says what is known of it,
// such as the node it ran on) and an event saying so.
func (r *run) failed(addr string, res Result, err error) finished {
	res.Status, res.Err = raftstore.ActionFailed, err.Error()
	f := finished{addr: addr, result: res}
	if rerr := r.e.Recorder.ActionFinished(r.rctx, r.op.ID, addr, res); rerr != nil {
		f.recErr = fmt.Errorf("record %s: %w", addr, rerr)
	}
	r.log.Warn("action failed", "address", addr, "err", err)
	msg := addr + " failed"
	if res.Node != "" {
		msg += " on " + res.Node
	}
	if eerr := r.e.Recorder.Event(r.rctx, r.op.Stack, msg+": "+err.Error()); eerr != nil {
		r.log.Warn("record event", "err", eerr)
	}
	return f
}
