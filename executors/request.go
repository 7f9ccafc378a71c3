package executors

import (
	"context"
	"time"
)

// Executor is the one shape of every kind's executor as the agent runs it:
// a typed request in (Request, whose Spec is the kind's attribute struct
// from executors/kinds); Create, Read, Update and Delete, ctx first and
// idempotent. A create of something that exists adopts it (physical
// names derive from scope, address and generation), a delete of something
// missing succeeds, and Read answers exists false when there is nothing.
type Executor[A any] interface {
	Create(ctx context.Context, r Request[A]) (Result, error)
	Read(ctx context.Context, r Request[A]) (res Result, exists bool, err error)
	Update(ctx context.Context, r Request[A]) (Result, error)
	Delete(ctx context.Context, r Request[A]) error
}

// Op is what an action does to an instance.
type Op string

// The ops; a read carries the op of the action it belongs to.
const (
	OpCreate Op = "create"
	OpUpdate Op = "update"
	OpDelete Op = "delete"
)

// Instance says which instance of a resource a request is about, with
// what the planner knows of it.
type Instance struct {
	// Stack is the scope of the instance's stack (see Scope): what its
	// physical names and owner tags are made from.
	Stack   string
	Address string
	Kind    string
	// Op is create, update or delete. A read is about the instance a
	// create was making (OpCreate) or one being removed (OpDelete).
	Op Op
	// ID is the id of the existing instance; Generation tells apart the
	// instances of one address (the create half of a replace has its own).
	ID         string
	Generation string
	// AwaitReady: a read of a server waits until its guest is ready.
	AwaitReady bool
	// Attrs are the configured attributes as the planner holds them: what
	// an executor reports back is these with its computed ones added.
	Attrs map[string]any
	// Deps holds the attributes of the action's dependencies, by address.
	Deps map[string]map[string]any
}

// Request is one action on an instance: the instance and its configured
// attributes decoded once into the kind's typed struct. SpecErr is the
// error of the attributes that did not decode (kinds.Errors; the others
// are in Spec): a create or update fails on it, a read or a delete only
// on the attributes it needs (kinds.For).
type Request[A any] struct {
	Instance
	Spec    A
	SpecErr error
}

// Result is what an executor knows of an instance after an action.
type Result struct {
	// PhysicalName is the name of the OS object (domain, bridge, volume).
	PhysicalName string
	// Attrs are the configured and computed attributes.
	Attrs map[string]any
	// ReadyAfter is, for a server created or updated, how long its guest
	// took to pass its readiness check.
	ReadyAfter time.Duration
}
