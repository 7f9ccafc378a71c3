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

// hostPortKey is "tcp/8080": a host port of a port forward.
func hostPortKey(attrs map[string]any) (string, bool) {
	var port int64
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
			return "", false
		}
		port = n
	default:
		return "", false
	}
	proto, _ := attrs["protocol"].(string)
	if proto == "" {
		proto = "tcp"
	}
	return fmt.Sprintf("%s/%d", proto, port), true
}

// checkHostPorts refuses a plan whose port forwards take a host port that a
// port forward of another stack already holds on the agent this stack is on
// (or, for a stack not placed yet, on every agent it could go to). The
// other stack is named when it is in the caller's project; another
// project's is not. The agent refuses too, when the forward is made, if
// rules of another owner hold the port (a plan made meanwhile).
func (s *Server) checkHostPorts(project, stack string, desired *spec.Stack) error {
	want := map[string]string{} // key -> address
	for _, r := range desired.Resources {
		if r.Kind != spec.KindPortForward {
			continue
		}
		if k, ok := hostPortKey(r.Attrs); ok {
			want[k] = r.Address
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
	var msgs []string
	for _, k := range sortedKeys(want) {
		if len(holders[k]) < len(nodes) {
			continue // free on some agent the stack can use
		}
		var by []string
		for _, n := range sortedKeys(holders[k]) {
			r := holders[k][n]
			who := "another project's stack"
			if r.Project == project {
				who = fmt.Sprintf("stack %s (%s)", r.Stack, r.State.Address)
			}
			by = append(by, fmt.Sprintf("%s on agent %s", who, n))
		}
		sort.Strings(by)
		msgs = append(msgs, fmt.Sprintf("%s: host port %s is already forwarded by %s", want[k], k, strings.Join(by, ", ")))
	}
	if len(msgs) > 0 {
		return &httpError{code: http.StatusConflict, field: "template", msg: strings.Join(msgs, "; ") + "; pick another host_port"}
	}
	return nil
}
