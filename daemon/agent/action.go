package agent

import (
	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/planner"
)

// Action is one work item as a driver runs it: its attribute values decoded
// once from the wire (api.WorkItem) and the stack turned into the scope the
// host objects are named and tagged after (executors.Scope).
type Action struct {
	OpID    string
	Stack   string // the scope: executors.Scope(project, stack)
	Address string
	Kind    string
	// Op is create, update or delete. A read (api.OpRead) reaches the
	// driver's Read with Op create when it is about the instance a create
	// was making (api.ReadMade), delete when it is about the instance with
	// ID, the one an update or a delete acts on (api.ReadID).
	Op api.Op
	// Attrs are the desired attributes for a create or update, the last
	// known ones for a delete (as Action.Attrs on the leader).
	Attrs planner.Values
	// ID is the id of the existing instance; Generation tells apart the
	// instances of one address (see api.WorkItem).
	ID         string
	Generation string
	// AwaitReady: a read of a server waits until its guest is ready.
	AwaitReady bool
	// Node is this agent's id.
	Node string
	// Deps holds the attributes of the action's dependencies, by address.
	Deps map[string]map[string]any
}
