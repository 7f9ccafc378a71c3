package engine

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/kiln-dev/kiln/planner"
	"github.com/kiln-dev/kiln/spec"
)

// Steps maps one planned change to the runner operations that carry it out,
// in order. The operation is recorded as one action per address whatever the
// number of steps:
//
//	create  -> create (Generation "")
//	update  -> update (ID = Before id)
//	delete  -> delete (ID = Before id)
//	replace -> delete (ID = Before id), then create (Generation = operation id)
//	replace with create_before_destroy
//	        -> create (Generation = operation id), then delete (ID = Before id)
//	no-op   -> nothing
//
// The create half of a replace gets a new generation so that its instance is
// distinct from the old one (a new id and physical name): that is what lets a
// create_before_destroy replace have both at once, and what lets a resumed
// replace tell, by reading, which half is already done.
func Steps(opID, stack string, ch planner.Change) ([]Action, error) {
	base := Action{OpID: opID, Stack: stack, Address: ch.Address, Kind: ch.Kind}
	oldID, _ := ch.Before["id"].(string)
	create := base
	create.Op, create.Attrs = OpCreate, ch.After
	del := base
	del.Op, del.Attrs, del.ID = OpDelete, ch.Before, oldID
	switch ch.Action {
	case planner.NoOp:
		return nil, nil
	case planner.Create:
		return []Action{create}, nil
	case planner.Update:
		up := base
		up.Op, up.Attrs, up.ID = OpUpdate, ch.After, oldID
		return []Action{up}, nil
	case planner.Delete:
		return []Action{del}, nil
	case planner.Replace:
		create.Generation, create.ID = opID, oldID
		if ch.CreateBeforeDestroy {
			if oldID == "" {
				// Without the old id the delete would find the new instance.
				return nil, fmt.Errorf("replace %s: create_before_destroy needs the id of the existing instance", ch.Address)
			}
			return []Action{create, del}, nil
		}
		return []Action{del, create}, nil
	}
	return nil, fmt.Errorf("%s: unknown action %v", ch.Address, ch.Action)
}

// apply runs the steps of one change. When resume is true the change was
// recorded running by an earlier leader: each step's effect is first read
// back, and a step whose effect is already there is not run again. Once a
// step has to run, the later ones cannot have happened and are run without
// reading.
func (e *Engine) apply(ctx context.Context, steps []Action, resume bool) (Result, error) {
	var res Result
	for _, st := range steps {
		if resume {
			got, done, err := e.effectPresent(ctx, st)
			if err != nil {
				return res, err
			}
			if done {
				if got.Node != "" {
					res.Node = got.Node
				}
				if st.Op != OpDelete {
					res.Attrs = got.Attrs
					res.Ready = got.Ready
				}
				continue
			}
			resume = false
		}
		r, err := e.Runner.Run(ctx, st)
		if r.Node != "" {
			res.Node = r.Node
		}
		if err != nil {
			return res, err
		}
		if st.Op != OpDelete {
			res.Attrs = r.Attrs
			res.Ready = r.Ready
		}
	}
	return res, nil
}

// effectPresent reads whether a step's effect is already in place.
func (e *Engine) effectPresent(ctx context.Context, st Action) (Result, bool, error) {
	if e.Reader == nil {
		return Result{}, false, errors.New("resume needs a Reader")
	}
	if st.Kind == spec.KindServer && st.Op != OpDelete {
		// A server that exists is not done: it is done when its guest is
		// ready. Its read waits for that (and fails when it does not come).
		st.AwaitReady = true
	}
	got, exists, err := e.Reader.Read(ctx, st)
	if err != nil {
		return got, false, fmt.Errorf("read %s: %w", st.Address, err)
	}
	switch st.Op {
	case OpCreate:
		if !exists {
			return got, false, nil
		}
		if st.Generation == "" {
			return got, true, nil
		}
		// The create half of a replace is done only if the instance found is
		// not the one being replaced.
		id, _ := got.Attrs["id"].(string)
		return got, id != "" && id != st.ID, nil
	case OpDelete:
		return got, !exists, nil
	case OpUpdate:
		return got, exists && matches(st.Attrs, got.Attrs), nil
	}
	return got, false, fmt.Errorf("%s: unknown op %q", st.Address, st.Op)
}

// matches reports whether every known desired value is what was read.
func matches(want, got map[string]any) bool {
	for k, v := range want {
		if spec.IsUnknown(v) {
			continue
		}
		if !reflect.DeepEqual(v, got[k]) {
			return false
		}
	}
	return true
}
