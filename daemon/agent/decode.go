package agent

import (
	"context"
	"maps"

	"github.com/kiln-dev/kiln/executors"
	"github.com/kiln-dev/kiln/executors/kinds"
	"github.com/kiln-dev/kiln/executors/portforward"
	"github.com/kiln-dev/kiln/executors/server"
	"github.com/kiln-dev/kiln/spec"
)

// The real drivers are one registry (Real.Drivers): each kind's executor
// (image.Executor, ..., each in its kind's package under executors/)
// implements executors.Executor over its kind's typed attributes, and
// typed turns every Action into that typed request,
// decoding the attributes once (kinds.Decoder, handed spec's "known after
// apply" test, which executors/kinds may not import). Errors name the
// resource and the attribute; a read that needs only some attributes takes
// their errors alone (kinds.For).

// typed runs the actions of one kind through its executor e.
type typed[A any] struct {
	r *Real
	e executors.Executor[A]
}

// resolver is implemented by an executor whose attributes still unknown
// when the action runs may be settled by a dependency: Resolve returns
// their values.
type resolver interface {
	Resolve(a executors.Instance) map[string]any
}

// The executors that resolve (a method set that does not match would
// silently leave their unknown attributes unresolved).
var (
	_ resolver = server.Executor{}
	_ resolver = portforward.Executor{}
)

func (t typed[A]) real() *Real { return t.r }

func (t typed[A]) Create(ctx context.Context, a Action) (Object, error) {
	return t.e.Create(ctx, request[A](t.e, a))
}

func (t typed[A]) Update(ctx context.Context, a Action) (Object, error) {
	return t.e.Update(ctx, request[A](t.e, a))
}

func (t typed[A]) Delete(ctx context.Context, a Action) error {
	return t.e.Delete(ctx, request[A](t.e, a))
}

func (t typed[A]) Read(ctx context.Context, a Action) (Object, bool, error) {
	return t.e.Read(ctx, request[A](t.e, a))
}

// imageDriver is the image kind's driver, which also lists the cache.
type imageDriver struct {
	typed[kinds.ImageAttrs]
	ImageLister
}

// instance is the executors' view of which instance a is about.
func instance(a Action) executors.Instance {
	return executors.Instance{Stack: a.Stack, Address: a.Address, Kind: a.Kind, Op: executors.Op(a.Op),
		ID: a.ID, Generation: a.Generation, AwaitReady: a.AwaitReady, Attrs: a.Attrs, Deps: a.Deps}
}

// request is the typed request of a for e: its attributes decoded into A,
// with those e resolves from the dependencies settled first.
func request[A any](e any, a Action) executors.Request[A] {
	req := executors.Request[A]{Instance: instance(a)}
	attrs := a.Attrs
	if rs, ok := e.(resolver); ok {
		if resolve := rs.Resolve(req.Instance); len(resolve) > 0 {
			attrs = maps.Clone(a.Attrs)
			maps.Copy(attrs, resolve)
		}
	}
	req.SpecErr = kinds.Decoder{Address: a.Address, Unknown: spec.IsUnknown}.Decode(attrs, &req.Spec)
	return req
}
