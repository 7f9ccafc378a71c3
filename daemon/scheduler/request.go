package scheduler

import (
	"maps"
	"slices"

	"github.com/kiln-dev/kiln/planner"
)

// StackRequest sums what a plan adds to its stack's host: cpus, memory and
// disk of the servers it creates or replaces, the size of the volumes it
// creates or replaces, and the images its servers need (by sha256, or by
// source when there is none), and the host ports of the port forwards it
// creates or replaces. Values not known before apply count as zero (a host
// port: not counted).
// Updates and deletes are not counted: growing a server in place is checked
// by the agent, and freed capacity shows in the agent's next report.
func StackRequest(p *planner.Result) Request {
	req := Request{Stack: p.Stack}
	images := map[string]bool{}
	ports := map[int]bool{}
	for _, c := range p.Changes {
		if c.Action != planner.Create && c.Action != planner.Replace {
			continue
		}
		switch c.Kind {
		case "server":
			req.CPUs += num(c.After["cpus"])
			req.Memory += num(c.After["memory"])
			req.Disk += num(c.After["disk"])
		case "volume":
			req.Disk += num(c.After["size"])
		case "port_forward":
			if p := num(c.After["host_port"]); p > 0 {
				ports[int(p)] = true
			}
		case "image":
			key, _ := c.After["sha256"].(string)
			if key == "" {
				key, _ = c.After["source"].(string)
			}
			if key != "" {
				images[key] = true
			}
		}
	}
	req.Images = slices.Sorted(maps.Keys(images))
	req.HostPorts = slices.Sorted(maps.Keys(ports))
	return req
}

func num(v any) int64 {
	switch n := v.(type) {
	case int64:
		return n
	case int:
		return int64(n)
	case float64:
		return int64(n)
	}
	return 0
}
