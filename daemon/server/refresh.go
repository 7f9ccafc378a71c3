package server

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/executors/kinds"
	"github.com/kiln-dev/kiln/planner"
)

// refreshWait bounds how long a plan waits for an agent to read the actual
// state of a stack's resources.
const refreshWait = 20 * time.Second

// driftAttrs are the configured attributes the drivers of a kind read back
// reliably (kinds.Kind.Drift); a difference in them is drift, which the
// plan shows as an update. Any other attribute keeps its recorded value:
// only existence is checked.
func driftAttrs(kind string) []string {
	k, _ := kinds.Get(kind)
	return k.Drift
}

// refresh asks the agents that own a stack's resources what is really
// there, and returns the actual state to plan against: a resource removed
// behind kiln's back is left out (so the plan creates it again) and drifted
// attributes take their real values. An agent that cannot answer leaves its
// resources as recorded, with a warning. A stack with an unfinished
// operation is not refreshed: its resources are changing.
func (s *Server) refresh(ctx context.Context, project, stack string, actual *planner.State) (*planner.State, []api.Diagnostic) {
	st, ok := s.store.State().Stack(project, stack)
	if !ok || st.ActiveOperation != "" || len(actual.Resources) == 0 {
		return actual, nil
	}
	byNode := map[string][]api.RefreshResource{}
	for _, r := range s.store.State().Resources(project, stack) {
		if r.Node == "" {
			continue
		}
		id, _ := r.State.Computed["id"].(string)
		byNode[r.Node] = append(byNode[r.Node], api.RefreshResource{
			Address: r.State.Address, Kind: r.State.Kind, ID: id, Attrs: mergeAttrs(r.State.Attrs, r.State.Computed),
		})
	}
	read := map[string]api.ResourceRead{}
	var warnings []api.Diagnostic
	nodes := sortedKeys(byNode)
	for _, node := range nodes {
		req := &api.RefreshRequest{Project: project, Stack: stack, Resources: byNode[node]}
		ans, err := s.askHost(ctx, node, api.HostRequest{Op: api.HostRefresh, Refresh: req}, refreshWait)
		if err != nil {
			warnings = append(warnings, api.Diagnostic{Severity: "warning", Summary: "Could not refresh",
				Detail: fmt.Sprintf("%v; the resources on %s are planned against their recorded state.", err, node)})
			continue
		}
		if ans.Refresh == nil {
			continue
		}
		for _, got := range ans.Refresh.Resources {
			read[got.Address] = got
		}
	}
	out := &planner.State{Stack: actual.Stack, Serial: actual.Serial}
	for _, r := range actual.Resources {
		got, ok := read[r.Address]
		if ok && !got.Exists {
			s.log.Info("refresh: resource is gone", "stack", stack, "address", r.Address)
			continue
		}
		if ok {
			for _, name := range driftAttrs(r.Kind) {
				v, have := got.Attrs[name]
				if _, set := r.Attrs[name]; have && set {
					if r.Attrs[name] != v {
						attrs := make(map[string]any, len(r.Attrs))
						for k, x := range r.Attrs {
							attrs[k] = x
						}
						attrs[name] = v
						r.Attrs = attrs
					}
				}
			}
		}
		out.Resources = append(out.Resources, r)
	}
	sort.Slice(out.Resources, func(i, j int) bool { return out.Resources[i].Address < out.Resources[j].Address })
	return out, warnings
}
