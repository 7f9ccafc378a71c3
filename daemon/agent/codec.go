package agent

import (
	"fmt"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/executors"
)

// actionOf turns a work item into the engine action a driver runs.
func actionOf(it api.WorkItem) (Action, error) {
	if err := executors.CheckOwner(it.Project, it.Stack, it.Address); err != nil {
		return Action{}, err
	}
	attrs, err := api.DecodeValues(it.Attrs)
	if err != nil {
		return Action{}, fmt.Errorf("decode attributes of %s: %w", it.Address, err)
	}
	var deps map[string]map[string]any
	if it.Deps != nil {
		deps = make(map[string]map[string]any, len(it.Deps))
		for addr, m := range it.Deps {
			d, err := api.DecodeValues(m)
			if err != nil {
				return Action{}, fmt.Errorf("decode attributes of dependency %s: %w", addr, err)
			}
			deps[addr] = d
		}
	}
	op := it.Op
	if it.Op == "read" {
		// A read is about the instance the interrupted action was making or
		// changing; the item's ID and Generation say which.
		op = api.OpCreate
		if it.ID != "" && it.Generation == "" {
			op = api.OpDelete
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
		Attrs:      attrs,
		ID:         it.ID,
		Generation: it.Generation,
		Deps:       deps,
		AwaitReady: it.AwaitReady,
	}, nil
}
