package engine

import (
	"errors"
	"fmt"

	"github.com/kiln-dev/kiln/planner"
	"github.com/kiln-dev/kiln/raftstore"
)

// node is the engine's view of one change: what the plan says (fixed once
// built) and how far the run has got with it.
type node struct {
	// Fixed by build.
	index   int
	change  planner.Change
	steps   []Action
	stepErr error
	resume  bool
	rec     ActionState
	deps    []string // addresses in the plan this one waits for
	users   []string // addresses in the plan that wait for this one

	// The run's progress, touched only by the goroutine that walks.
	status  raftstore.ActionStatus
	waiting int  // deps not yet done
	queued  bool // pushed on the ready queue (at most once)
	result  Result
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
		nodes[ch.Address] = newNode(op, i, ch)
		order = append(order, ch.Address)
	}
	if err := link(nodes, order); err != nil {
		return nil, nil, err
	}
	if cyc := cycle(nodes, order); cyc != "" {
		return nil, nil, fmt.Errorf("dependency cycle through %s", cyc)
	}
	return nodes, order, nil
}

// newNode makes the node of the i-th change of op's plan, starting from what
// is recorded of it.
func newNode(op Operation, i int, ch planner.Change) *node {
	n := &node{index: i, change: ch, status: raftstore.ActionPending}
	n.steps, n.stepErr = Steps(op.ID, op.Stack, ch)
	rec, ok := op.Actions[ch.Address]
	switch {
	case ch.Action == planner.NoOp:
		// Nothing to run or record; dependents see the state as it is.
		n.status = raftstore.ActionDone
		n.result = Result{Status: raftstore.ActionDone, Attrs: ch.Before}
		if n.result.Attrs == nil {
			n.result.Attrs = ch.After
		}
	case ok && rec.Status == raftstore.ActionRunning:
		n.resume, n.rec = true, rec
	case ok && rec.Status.Final():
		// Done, failed, skipped or cancelled stays so: a cancelled action
		// never runs, and restore carries the cancel through.
		n.status, n.rec = rec.Status, rec
		n.result = Result{Status: rec.Status, Err: rec.Err, Node: rec.Node, Attrs: rec.Attrs}
	}
	return n
}

// link adds the edges between nodes: a dependency outside the plan is not
// waited for, a repeated one counts once, and one on itself is refused.
func link(nodes map[string]*node, order []string) error {
	for _, addr := range order {
		n := nodes[addr]
		seen := map[string]bool{}
		for _, d := range n.change.DependsOn {
			dn, ok := nodes[d]
			if !ok || seen[d] {
				continue // not part of this plan: nothing to wait for
			}
			if d == addr {
				return fmt.Errorf("%s depends on itself", addr)
			}
			seen[d] = true
			n.deps = append(n.deps, d)
			n.waiting++
			dn.users = append(dn.users, addr)
		}
	}
	return nil
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
