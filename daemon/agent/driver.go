package agent

import (
	"context"

	"github.com/kiln-dev/kiln/executors"
)

// Object is what a driver knows of one resource instance after an action:
// an executor's result.
type Object = executors.Result

// Driver runs the actions of one resource kind on this host. Every method
// takes ctx first and is idempotent: a create of something that exists
// adopts it (physical names derive from stack, address and generation), a
// delete of something missing succeeds. Read returns exists false when
// there is nothing.
type Driver interface {
	Create(ctx context.Context, a Action) (Object, error)
	Update(ctx context.Context, a Action) (Object, error)
	Delete(ctx context.Context, a Action) error
	Read(ctx context.Context, a Action) (obj Object, exists bool, err error)
}

// ImageLister is implemented by a driver (the image kind's) that can say
// which images this host has cached; they are sent with every heartbeat.
type ImageLister interface {
	CachedImages(ctx context.Context) ([]string, error)
}

// Drivers maps a resource kind ("server", "network", ...) to its driver.
type Drivers map[string]Driver

// RealDrivers (real.go) returns the drivers of the real executors.
