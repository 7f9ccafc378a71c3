package engine

import (
	"context"
	"time"

	"github.com/kiln-dev/kiln/planner"
	"github.com/kiln-dev/kiln/raftstore"
)

// Operation outcomes passed to Recorder.OperationFinished.
const (
	OperationComplete  = "COMPLETE"
	OperationFailed    = "FAILED"
	OperationCancelled = "CANCELLED"
)

// Op is what a Runner is asked to do to one resource instance. A planned
// change maps to one or two of them (see Steps).
type Op string

// Runner operations.
const (
	OpCreate Op = "create"
	OpUpdate Op = "update"
	OpDelete Op = "delete"
)

// Action is one request to a Runner or Reader.
type Action struct {
	OpID    string
	Stack   string
	Address string
	Kind    string
	Op      Op
	// Attrs are the desired attributes for a create or update (the change's
	// After, which may still hold spec.Unknown for values that come from a
	// dependency: the runner fills them from Deps), and the last known
	// attributes for a delete (the change's Before).
	Attrs map[string]any
	// ID is the id of the existing instance an update or delete acts on
	// (Before["id"]); "" when it is not known, and then the instance is the
	// newest one at Address. For the create half of a replace it is the id of
	// the instance being replaced (a runner's create ignores it; the engine
	// uses it on resume to tell the new instance from the old).
	ID string
	// Generation tells apart the instances of one address: "" for a plain
	// create, the operation id for the create half of a replace. A physical
	// name derives from stack, address and generation, so the new instance of
	// a create_before_destroy replace does not collide with the old one, and a
	// repeated create of the same generation adopts what is there.
	Generation string
	// AwaitReady, on the read of a server's create or update that an
	// earlier leader left running, asks the agent to wait until the guest
	// is ready (a server that exists is not yet done).
	AwaitReady bool
	// Node is the agent the action is assigned to ("" when there is no
	// Assigner); on resume, the node recorded when the action started.
	Node string
	// Deps holds the attributes (configured and computed) of the action's
	// dependencies after they were applied, by address.
	Deps map[string]map[string]any
}

// Result is the outcome of one action.
type Result struct {
	Status raftstore.ActionStatus
	// Err is the error message of a failed action or the reason of a skipped
	// or cancelled one.
	Err string
	// Node is the agent that ran the action.
	Node string
	// Attrs are the resource's attributes (configured and computed) after the
	// action; nil after a delete.
	Attrs map[string]any
	// Ready is, for a server, how long its guest took to be ready.
	Ready time.Duration
}

// Recorder records progress; on the leader every call is a raft.Apply. An
// error means the record was not made (typically: no longer the leader) and
// stops the engine without finishing the operation, so that the next leader
// resumes it.
type Recorder interface {
	ActionStarted(ctx context.Context, opID, address, node string) error
	ActionFinished(ctx context.Context, opID, address string, result Result) error
	OperationFinished(ctx context.Context, opID string, status string, err string) error
	Event(ctx context.Context, stack, msg string) error
}

// Runner runs one action on some host and reports its result (Node and
// Attrs; the engine sets Status and Err).
type Runner interface {
	Run(ctx context.Context, action Action) (Result, error)
}

// Reader reads the actual state of the instance an action is about: for a
// delete with an ID, that instance; otherwise the newest instance at the
// address. exists is false when there is none.
type Reader interface {
	Read(ctx context.Context, action Action) (result Result, exists bool, err error)
}

// Assigner picks the node that runs an action. It is optional; an error
// fails the action (for example: no agent has room).
type Assigner interface {
	Assign(ctx context.Context, action Action) (node string, err error)
}

// ActionState is what is already recorded of one action.
type ActionState struct {
	Status raftstore.ActionStatus
	Err    string
	Node   string
	Attrs  map[string]any
}

// Operation is an operation to run or resume.
type Operation struct {
	ID    string
	Stack string
	Plan  *planner.Result
	// Actions is the recorded state by address; a missing address is
	// pending.
	Actions map[string]ActionState
}

// Outcome is how an operation finished.
type Outcome struct {
	Status string // OperationComplete, OperationFailed or OperationCancelled
	Err    string
	// Actions are the final results by address (no-op changes excluded).
	Actions map[string]Result
}
