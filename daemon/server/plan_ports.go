package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/kiln-dev/kiln/raftstore"
	"github.com/kiln-dev/kiln/spec"
)

// hostPort is the host port of a port forward and its key, "tcp/8080";
// ok is false when the port is not known at plan time.
func hostPort(attrs map[string]any) (port int64, key string, ok bool) {
	switch v := attrs["host_port"].(type) {
	case int64:
		port = v
	case int:
		port = int64(v)
	case float64:
		port = int64(v)
	case json.Number:
		n, err := v.Int64()
		if err != nil {
			return 0, "", false
		}
		port = n
	default:
		return 0, "", false
	}
	proto, _ := attrs["protocol"].(string)
	if proto == "" {
		proto = "tcp"
	}
	return port, fmt.Sprintf("%s/%d", proto, port), true
}

// hostPortKey is "tcp/8080": a host port of a port forward.
func hostPortKey(attrs map[string]any) (string, bool) {
	_, k, ok := hostPort(attrs)
	return k, ok
}

// portRefusal says why the agent a does not forward host port port, by
// the host-port policy it reported; "" when it does, or when it said
// nothing (an agent older than the report: the agent decides when the
// forward is made).
func portRefusal(a raftstore.Agent, port int64) string {
	c := a.Capacity
	if c.HostPortsLo == 0 && c.HostPortsHi == 0 {
		return ""
	}
	for _, r := range c.ReservedPorts {
		if int64(r) == port {
			return fmt.Sprintf("%d is a port of kiln itself on agent %s (its API, raft or ready-signal port)", port, a.ID)
		}
	}
	if port < int64(c.HostPortsLo) || port > int64(c.HostPortsHi) {
		return fmt.Sprintf("agent %s forwards host ports %d-%d only", a.ID, c.HostPortsLo, c.HostPortsHi)
	}
	return ""
}

// checkHostPorts refuses a plan whose port forwards take a host port that
// no agent this stack is on (or, for a stack not placed yet, no agent it
// could go to) can give it: one where a port forward of another stack
// already holds it, or whose host-port policy (the range of its
// -host-ports, the reserved ports of kiln itself) does not allow it. The
// other stack is named when it is in the caller's project; another
// project's is not. Host ports not known at plan time are not checked.
// The agent refuses too, when the forward is made (a plan made meanwhile,
// an agent that did not report its policy).
func (s *Server) checkHostPorts(project, stack string, desired *spec.Stack) error {
	want := map[string]string{} // key -> address
	ports := map[string]int64{} // key -> port
	for _, r := range desired.Resources {
		if r.Kind != spec.KindPortForward {
			continue
		}
		if port, k, ok := hostPort(r.Attrs); ok {
			want[k], ports[k] = r.Address, port
		}
	}
	if len(want) == 0 {
		return nil
	}
	st := s.store.State()
	// The agents the stack is on, or could be placed on.
	nodes := map[string]bool{}
	for _, r := range st.Resources(project, stack) {
		if r.Node != "" {
			nodes[r.Node] = true
		}
	}
	if len(nodes) == 0 {
		for _, a := range st.Agents() {
			if a.Status == raftstore.AgentUp {
				nodes[a.ID] = true
			}
		}
	}
	if len(nodes) == 0 {
		return nil
	}
	// holders[key][node] is the other stack's forward on that node.
	holders := map[string]map[string]raftstore.Resource{}
	for _, other := range st.Stacks("") {
		if other.Project == project && other.Name == stack {
			continue
		}
		for _, r := range st.Resources(other.Project, other.Name) {
			if r.State.Kind != spec.KindPortForward || !nodes[r.Node] {
				continue
			}
			k, ok := hostPortKey(r.State.Attrs)
			if _, wanted := want[k]; !ok || !wanted {
				continue
			}
			if holders[k] == nil {
				holders[k] = map[string]raftstore.Resource{}
			}
			if _, seen := holders[k][r.Node]; !seen {
				holders[k][r.Node] = r
			}
		}
	}
	heldBy := func(r raftstore.Resource) string {
		if r.Project == project {
			return fmt.Sprintf("stack %s (%s)", r.Stack, r.State.Address)
		}
		return "another project's stack"
	}
	var msgs []string
	code := http.StatusBadRequest
	for _, k := range sortedKeys(want) {
		// Why each agent cannot give the port; the port is refused when
		// none can.
		held, refused := map[string]string{}, map[string]string{}
		for n := range nodes {
			if r, ok := holders[k][n]; ok {
				held[n] = heldBy(r)
			} else if a, ok := st.Agent(n); ok {
				if why := portRefusal(a, ports[k]); why != "" {
					refused[n] = why
				}
			}
		}
		if len(held)+len(refused) < len(nodes) {
			continue // free and allowed on some agent the stack can use
		}
		if len(refused) == 0 {
			var by []string
			for _, n := range sortedKeys(held) {
				by = append(by, fmt.Sprintf("%s on agent %s", held[n], n))
			}
			sort.Strings(by)
			msgs = append(msgs, fmt.Sprintf("%s: host port %s is already forwarded by %s", want[k], k, strings.Join(by, ", ")))
			code = http.StatusConflict
			continue
		}
		var why []string
		for _, n := range sortedKeys(refused) {
			why = append(why, refused[n])
		}
		for _, n := range sortedKeys(held) {
			why = append(why, fmt.Sprintf("%s already forwards it on agent %s", held[n], n))
			code = http.StatusConflict
		}
		msgs = append(msgs, fmt.Sprintf("%s: attribute \"host_port\": host port %d is not allowed on any agent this stack can use: %s (an agent's -host-ports sets its range)",
			want[k], ports[k], strings.Join(why, " and ")))
	}
	if len(msgs) > 0 {
		return &httpError{code: code, field: "template", msg: strings.Join(msgs, "; ") + "; pick another host_port"}
	}
	return nil
}
