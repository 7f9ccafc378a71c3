package agent

import (
	"fmt"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/executors"
)

// actionOf turns a work item into the action a driver runs. Its values
// were decoded with the item (planner.Values).
func actionOf(it api.WorkItem) (Action, error) {
	if err := executors.CheckOwner(it.Project, it.Stack, it.Address); err != nil {
		return Action{}, err
	}
	op := it.Op
	if it.Op == api.OpRead {
		// A driver's Read is told which instance by the op: create for the
		// instance a create was making, delete for the one with the ID.
		switch r := it.ReadSelector(); r {
		case api.ReadMade:
			op = api.OpCreate
		case api.ReadID:
			op = api.OpDelete
		default:
			return Action{}, fmt.Errorf("read of %s: unknown instance selector %q", it.Address, r)
		}
	}
	var deps map[string]map[string]any
	if it.Deps != nil {
		deps = make(map[string]map[string]any, len(it.Deps))
		for addr, v := range it.Deps {
			deps[addr] = v
		}
	}
	return Action{
		OpID: it.OperationID,
		// The drivers name and tag host objects after the stack's scope
		// (the project and the stack), so that stacks of one name in two
		// projects never share an object: see executors.Scope.
		Stack:      executors.Scope(it.Project, it.Stack),
		Address:    it.Address,
		Kind:       it.Kind,
		Op:         op,
		Attrs:      it.Attrs,
		ID:         it.ID,
		Generation: it.Generation,
		Deps:       deps,
		AwaitReady: it.AwaitReady,
	}, nil
}
