package agent

import (
	"context"
	"fmt"

	"github.com/kiln-dev/kiln/daemon/api"
	"github.com/kiln-dev/kiln/daemon/engine"
	"github.com/kiln-dev/kiln/executors"
)

// HostRefresh asks an agent to read the actual state of a stack's resources
// for a plan (see api.HostRefresh).
const HostRefresh = api.HostRefresh

// refresh reads every listed resource through its kind's driver. It uses
// only the drivers' Read, so it works with any driver set.
func (a *Agent) refresh(ctx context.Context, p map[string]any) (map[string]any, error) {
	stack, _ := p["stack"].(string)
	project, _ := p["project"].(string)
	stack = executors.Scope(project, stack)
	list, _ := p["resources"].([]any)
	out := make([]any, 0, len(list))
	for _, v := range list {
		m, _ := v.(map[string]any)
		addr, _ := m["address"].(string)
		kind, _ := m["kind"].(string)
		id, _ := m["id"].(string)
		attrs, _ := m["attrs"].(map[string]any)
		d := a.cfg.Drivers[kind]
		if d == nil {
			return nil, fmt.Errorf("refresh %s: agent %s has no driver for %q", addr, a.id, kind)
		}
		// With an id the read is about that existing instance (as for a
		// delete); without one, about the newest instance at the address.
		op := engine.OpCreate
		if id != "" {
			op = engine.OpDelete
		}
		obj, exists, err := d.Read(ctx, engine.Action{Stack: stack, Address: addr, Kind: kind, Op: op, Attrs: attrs, ID: id})
		if err != nil {
			return nil, fmt.Errorf("refresh %s: %w", addr, err)
		}
		r := map[string]any{"address": addr, "exists": exists}
		if exists && obj.Attrs != nil {
			r["attrs"] = obj.Attrs
		}
		out = append(out, r)
	}
	return map[string]any{"resources": out}, nil
}
