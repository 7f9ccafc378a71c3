package agent

import (
	"context"
	"fmt"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/executors"
)

// refresh reads every listed resource through its kind's driver (the
// answer to api.HostRefresh). It uses only the drivers' Read, so it works
// with any driver set.
func (a *Agent) refresh(ctx context.Context, req api.RefreshRequest) (*api.RefreshAnswer, error) {
	stack := executors.Scope(req.Project, req.Stack)
	out := &api.RefreshAnswer{Resources: make([]api.ResourceRead, 0, len(req.Resources))}
	for _, res := range req.Resources {
		d := a.cfg.Drivers[res.Kind]
		if d == nil {
			return nil, fmt.Errorf("refresh %s: agent %s has no driver for %q", res.Address, a.id, res.Kind)
		}
		// With an id the read is about that existing instance (as for a
		// delete); without one, about the newest instance at the address.
		op := api.OpCreate
		if res.ID != "" {
			op = api.OpDelete
		}
		obj, exists, err := d.Read(ctx, Action{Stack: stack, Address: res.Address, Kind: res.Kind, Op: op, Attrs: res.Attrs, ID: res.ID})
		if err != nil {
			return nil, fmt.Errorf("refresh %s: %w", res.Address, err)
		}
		r := api.ResourceRead{Address: res.Address, Exists: exists}
		if exists && obj.Attrs != nil {
			r.Attrs = obj.Attrs
		}
		out.Resources = append(out.Resources, r)
	}
	return out, nil
}
