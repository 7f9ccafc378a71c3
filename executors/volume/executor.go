package volume

import (
	"context"
	"fmt"

	"github.com/kiln-dev/kiln/executors"
	"github.com/kiln-dev/kiln/executors/host"
	"github.com/kiln-dev/kiln/executors/kinds"
	"github.com/kiln-dev/kiln/executors/records"
)

// Executor is the volume kind's executor (executors.Executor): volumes in
// the kiln-volumes pool. A volume's id is its name in the pool, which is
// what a server's `volumes` lists; its record is written before it is
// made.
type Executor struct {
	Host *host.Host
	Vols *Driver
	// Grow grows the disk at path to size through the domain of a running
	// guest that has it attached, grown false when none has
	// (server.Driver.GrowDisk: the server package imports this one).
	Grow func(ctx context.Context, path string, size int64) (grown bool, err error)
}

var _ executors.Executor[kinds.VolumeAttrs] = Executor{}

func volumeSpec(a executors.Instance, at kinds.VolumeAttrs, phys string) Spec {
	return Spec{Stack: a.Stack, Address: phys, Size: at.Size, Format: formatOr(at.Format)}
}

// formatOr is a volume's format, qcow2 when the attribute is not set.
func formatOr(format string) string {
	if format == "" {
		return QCOW2
	}
	return format
}

// target finds the volume an action is about.
func (e Executor) target(a executors.Instance) (string, error) {
	return e.Host.Target("volume", a)
}

func (e Executor) result(a executors.Instance, v Volume) executors.Result {
	return executors.Result{PhysicalName: v.Name, Attrs: e.Host.WithComputed(a, map[string]any{"id": v.Name, "size": v.Size, "format": v.Format})}
}

// Create makes the volume of the action's generation.
func (e Executor) Create(ctx context.Context, req executors.Request[kinds.VolumeAttrs]) (executors.Result, error) {
	a := req.Instance
	phys := host.PhysAddress(a.Address, a.Generation)
	at := req.Spec
	if err := req.SpecErr; err != nil {
		return executors.Result{}, err
	}
	s := volumeSpec(a, at, phys)
	if s.Size <= 0 {
		return executors.Result{}, fmt.Errorf("%s: attribute \"size\" is required", a.Address)
	}
	rec := records.Record{Kind: "volume", ID: Name(a.Stack, phys, s.Format), Stack: a.Stack, Phys: phys}
	if err := e.Host.Records.Put(rec); err != nil {
		return executors.Result{}, err
	}
	v, err := e.Vols.Create(ctx, s)
	if err != nil {
		return executors.Result{}, fmt.Errorf("%s: %w", a.Address, err)
	}
	return e.result(a, v), nil
}

// Update grows, shrinks or converts the volume in place where it can.
func (e Executor) Update(ctx context.Context, req executors.Request[kinds.VolumeAttrs]) (executors.Result, error) {
	a := req.Instance
	phys, err := e.target(a)
	if err != nil {
		return executors.Result{}, err
	}
	at := req.Spec
	if err := req.SpecErr; err != nil {
		return executors.Result{}, err
	}
	s := volumeSpec(a, at, phys)
	// A volume a running guest has attached is held open by qemu: grow it
	// through the guest's domain. Anything else (shrink, format) goes the
	// volume driver's way, which refuses what cannot be done in place.
	if cur, err := e.Vols.Read(ctx, a.Stack, phys); err == nil && s.Size > cur.Size {
		if at.Format == "" || at.Format == cur.Format {
			grown, err := e.Grow(ctx, cur.Path, s.Size)
			if err != nil {
				return executors.Result{}, fmt.Errorf("%s: %w", a.Address, err)
			}
			if grown {
				v, err := e.Vols.Reload(cur.Name)
				if err != nil {
					return executors.Result{}, fmt.Errorf("%s: %w", a.Address, err)
				}
				return e.result(a, v), nil
			}
		}
	}
	v, err := e.Vols.Update(ctx, s)
	if err != nil {
		return executors.Result{}, fmt.Errorf("%s: %w", a.Address, err)
	}
	return e.result(a, v), nil
}

// Delete removes the volume and its record.
func (e Executor) Delete(ctx context.Context, req executors.Request[kinds.VolumeAttrs]) error {
	a := req.Instance
	phys, gone, err := host.Existing(e.target(a))
	if gone || err != nil {
		return err
	}
	if err := e.Vols.Delete(ctx, a.Stack, phys); err != nil {
		return fmt.Errorf("%s: %w", a.Address, err)
	}
	for _, f := range []string{QCOW2, Raw} {
		if err := e.Host.Records.Del("volume", Name(a.Stack, phys, f)); err != nil {
			return err
		}
	}
	return nil
}

// Read returns the volume as the pool has it.
func (e Executor) Read(ctx context.Context, req executors.Request[kinds.VolumeAttrs]) (executors.Result, bool, error) {
	a := req.Instance
	phys, gone, err := host.Existing(e.target(a))
	if gone || err != nil {
		return executors.Result{}, false, err
	}
	v, err := e.Vols.Read(ctx, a.Stack, phys)
	if gone, err := host.Absent(err); gone || err != nil {
		return executors.Result{}, false, err
	}
	return e.result(a, v), true, nil
}
