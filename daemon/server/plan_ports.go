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
	want, ports := wantedHostPorts(desired)
	if len(want) == 0 {
		return nil
	}
	st := s.store.State()
	nodes := stackNodes(st, project, stack)
	if len(nodes) == 0 {
		return nil
	}
	c := hostPortCheck{st: st, project: project, nodes: nodes,
		holders: hostPortHolders(st, project, stack, nodes, want)}
	var msgs []string
	code := http.StatusBadRequest
	for _, k := range sortedKeys(want) {
		msg, conflict := c.refusal(want[k], k, ports[k])
		if msg == "" {
			continue
		}
		msgs = append(msgs, msg)
		if conflict {
			code = http.StatusConflict
		}
	}
	if len(msgs) > 0 {
		return &httpError{code: code, field: "template", msg: strings.Join(msgs, "; ") + "; pick another host_port"}
	}
	return nil
}

// wantedHostPorts is the host ports the stack's port forwards take that
// are known at plan time: the address of the forward and the port, by
// key ("tcp/8080").
func wantedHostPorts(desired *spec.Stack) (want map[string]string, ports map[string]int64) {
	want, ports = map[string]string{}, map[string]int64{}
	for _, r := range desired.Resources {
		if r.Kind != spec.KindPortForward {
			continue
		}
		if port, k, ok := hostPort(r.Attrs); ok {
			want[k], ports[k] = r.Address, port
		}
	}
	return want, ports
}

// stackNodes is the agents the stack is on or, when it is not placed
// yet, the agents up that it could be placed on.
func stackNodes(st *raftstore.State, project, stack string) map[string]bool {
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
	return nodes
}

// hostPortHolders finds the port forwards of other stacks that hold a
// wanted host port on one of nodes: holders[key][node] is the (first)
// other stack's forward on that node.
func hostPortHolders(st *raftstore.State, project, stack string, nodes map[string]bool, want map[string]string) map[string]map[string]raftstore.Resource {
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
	return holders
}

// hostPortCheck is what checkHostPorts knows of the agents a stack can
// use: the state, the caller's project, the agents (nodes) and the other
// stacks' forwards on them (holders, by key and node).
type hostPortCheck struct {
	st      *raftstore.State
	project string
	nodes   map[string]bool
	holders map[string]map[string]raftstore.Resource
}

// refusal says why the forward at address cannot have host port key
// (port): "" when some agent the stack can use is free and allows it.
// conflict is true when another stack's forward holds it on an agent.
func (c hostPortCheck) refusal(address, k string, port int64) (msg string, conflict bool) {
	held, refused := c.whyNot(k, port)
	if len(held)+len(refused) < len(c.nodes) {
		return "", false // free and allowed on some agent the stack can use
	}
	if len(refused) == 0 {
		var by []string
		for _, n := range sortedKeys(held) {
			by = append(by, fmt.Sprintf("%s on agent %s", held[n], n))
		}
		sort.Strings(by)
		return fmt.Sprintf("%s: host port %s is already forwarded by %s", address, k, strings.Join(by, ", ")), true
	}
	var why []string
	for _, n := range sortedKeys(refused) {
		why = append(why, refused[n])
	}
	for _, n := range sortedKeys(held) {
		why = append(why, fmt.Sprintf("%s already forwards it on agent %s", held[n], n))
	}
	return fmt.Sprintf("%s: attribute \"host_port\": host port %d is not allowed on any agent this stack can use: %s (an agent's -host-ports sets its range)",
		address, port, strings.Join(why, " and ")), len(held) > 0
}

// whyNot says, for each agent that cannot give host port key (port), why:
// held[node] names the other stack whose forward holds it there,
// refused[node] the agent's host-port policy that does not allow it.
func (c hostPortCheck) whyNot(k string, port int64) (held, refused map[string]string) {
	held, refused = map[string]string{}, map[string]string{}
	for n := range c.nodes {
		if r, ok := c.holders[k][n]; ok {
			held[n] = c.heldBy(r)
		} else if a, ok := c.st.Agent(n); ok {
			if why := portRefusal(a, port); why != "" {
				refused[n] = why
			}
		}
	}
	return held, refused
}

// heldBy names the stack of a forward that holds a host port: by name
// when it is in the caller's project.
func (c hostPortCheck) heldBy(r raftstore.Resource) string {
	if r.Project == c.project {
		return fmt.Sprintf("stack %s (%s)", r.Stack, r.State.Address)
	}
	return "another project's stack"
}
