package agent

import (
	"context"
	"time"
)

// Object is what a driver knows of one resource instance after an action.
type Object struct {
	// PhysicalName is the name of the OS object (domain, bridge, volume).
	PhysicalName string
	// Attrs are the configured and computed attributes.
	Attrs map[string]any
	// ReadyAfter is, for a server created or updated, how long its guest
	// took to pass its readiness check.
	ReadyAfter time.Duration
}

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
