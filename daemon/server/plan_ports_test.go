package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/api"
)

// forwardTemplate is a stack with one server and a forward of host port
// hostPort (protocol proto) to it, on network cidr.
func forwardTemplate(cidr string, hostPort int, proto string) *api.Template {
	return mainHCL(fmt.Sprintf(`
image "i" {
  source = "https://images.example.org/i.qcow2"
  sha256 = "%s"
}

network "lan" {
  cidr = %q
}

server "web" {
  image = image.i.id
  network "lan" {
    address = cidrhost(network.lan.cidr, 10)
  }
}

port_forward "http" {
  host_port   = %d
  protocol    = %q
  target      = server.web.address
  target_port = 80
}
`, strings.Repeat("ab", 32), cidr, hostPort, proto))
}

// TestPlanHostPortTaken: a host port another stack forwards on the agent is
// refused at plan time, naming the stack only to its own project.
func TestPlanHostPortTaken(t *testing.T) {
	s, mgmt := single(t, nil)
	agentOn(t, s, "agent-1")
	p1, p2 := mgmt.as("p1", "member"), mgmt.as("p2", "member")

	p1.complete("apply", "first", api.ApplyRequest{Template: forwardTemplate("10.41.0.0/24", 18080, "tcp")})

	plan := func(c client, stack string, tmpl *api.Template) (int, string) {
		code, body := c.do("POST", "/v1/stacks/"+stack+"/plan", api.PlanRequest{Template: *tmpl})
		return code, string(body)
	}
	// The same project: the other stack is named.
	code, body := plan(p1, "second", forwardTemplate("10.42.0.0/24", 18080, "tcp"))
	if code != http.StatusConflict || !strings.Contains(body, "port_forward.http: host port tcp/18080 is already forwarded by stack first (port_forward.http) on agent agent-1") {
		t.Fatalf("plan of a taken port in the same project: %d %s", code, body)
	}
	// Apply is refused the same way.
	if code, body := p1.do("POST", "/v1/stacks/second/apply", api.ApplyRequest{Template: forwardTemplate("10.42.0.0/24", 18080, "tcp")}); code != http.StatusConflict {
		t.Fatalf("apply of a taken port: %d %s", code, body)
	}
	// Another project: refused, the stack not named.
	code, body = plan(p2, "third", forwardTemplate("10.43.0.0/24", 18080, "tcp"))
	if code != http.StatusConflict || !strings.Contains(body, "another project's stack") || strings.Contains(body, "first") {
		t.Fatalf("plan of a taken port in another project: %d %s", code, body)
	}
	// Another port, or the same port in udp: fine.
	if code, body := plan(p2, "third", forwardTemplate("10.43.0.0/24", 18081, "tcp")); code != http.StatusOK {
		t.Fatalf("plan of a free port: %d %s", code, body)
	}
	if code, body := plan(p1, "second", forwardTemplate("10.42.0.0/24", 18080, "udp")); code != http.StatusOK {
		t.Fatalf("plan of udp beside tcp: %d %s", code, body)
	}
	// The stack that holds the port plans it again freely.
	if code, body := plan(p1, "first", forwardTemplate("10.41.0.0/24", 18080, "tcp")); code != http.StatusOK {
		t.Fatalf("plan of the holder: %d %s", code, body)
	}
}

// TestPlanHostPortRange: a host port that no agent the stack can use
// forwards, by the host-port policy the agents report (range, reserved
// ports), is refused at plan time naming the resource, host_port, the port
// and the agents' ranges; a port inside is accepted; an agent that reports
// no policy refuses nothing at plan time.
func TestPlanHostPortRange(t *testing.T) {
	s, mgmt := single(t, nil)
	// The agents report the policies of hosts whose real drivers forward
	// these ports (see onHost).
	policy := func(lo, hi int, reserved ...int) agentOpt {
		h := bigHost
		h.HostPortsLo, h.HostPortsHi, h.ReservedPorts = lo, hi, reserved
		return onHost(h)
	}
	agentOn(t, s, "agent-1", policy(10000, 60000, 8775, 14646))
	p1 := mgmt.as("p1", "member")
	plan := func(stack string, port int) (int, api.Error) {
		t.Helper()
		code, body := p1.do("POST", "/v1/stacks/"+stack+"/plan", api.PlanRequest{Template: *forwardTemplate("10.51.0.0/24", port, "tcp")})
		var e api.Error
		if code != http.StatusOK {
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("plan %s port %d: %d %s", stack, port, code, body)
			}
		}
		return code, e
	}
	refused := func(what string, code int, e api.Error, parts ...string) {
		t.Helper()
		if code != http.StatusBadRequest || e.Field != "template" {
			t.Fatalf("%s: %d %+v, want 400 on field template", what, code, e)
		}
		for _, p := range parts {
			if !strings.Contains(e.Error, p) {
				t.Fatalf("%s: %q does not say %q", what, e.Error, p)
			}
		}
	}

	code, e := plan("web", 22)
	refused("port 22", code, e, `port_forward.http: attribute "host_port": host port 22 is not allowed`, "agent agent-1 forwards host ports 10000-60000 only", "-host-ports")
	code, e = plan("web", 14646)
	refused("a reserved port", code, e, "host port 14646", "14646 is a port of kiln itself on agent agent-1")
	// Apply is refused the same way, and nothing is stored.
	if code, body := p1.do("POST", "/v1/stacks/web/apply", api.ApplyRequest{Template: forwardTemplate("10.51.0.0/24", 22, "tcp")}); code != http.StatusBadRequest {
		t.Fatalf("apply of port 22: %d %s", code, body)
	}
	if code, _ := p1.do("GET", "/v1/stacks/web", nil); code != http.StatusNotFound {
		t.Fatalf("a refused apply left stack web: %d", code)
	}
	// Inside the range: accepted, and applied.
	if code, e := plan("web", 18080); code != http.StatusOK {
		t.Fatalf("plan of port 18080: %d %+v", code, e)
	}
	p1.complete("apply", "web", api.ApplyRequest{Template: forwardTemplate("10.51.0.0/24", 18080, "tcp")})

	// A second agent with another range: a new stack may use a port of
	// either; one that neither forwards names both ranges. The stack placed
	// on agent-1 stays bound by agent-1's range.
	agentOn(t, s, "agent-2", policy(2000, 9000))
	if code, e := plan("other", 2222); code != http.StatusOK {
		t.Fatalf("plan of a port agent-2 forwards: %d %+v", code, e)
	}
	code, e = plan("other", 22)
	refused("port 22 on two agents", code, e, "agent agent-1 forwards host ports 10000-60000 only and agent agent-2 forwards host ports 2000-9000 only")
	code, e = plan("web", 2222)
	refused("port 2222 for the stack on agent-1", code, e, "host port 2222", "agent agent-1 forwards host ports 10000-60000 only")
	if strings.Contains(e.Error, "agent-2") {
		t.Fatalf("the refusal names agent-2, which the stack cannot use: %s", e.Error)
	}

	// Held on one agent, outside the range of the other: refused (409, a
	// conflict), with both reasons.
	code, e = plan("other", 18080)
	if code != http.StatusConflict || !strings.Contains(e.Error, "agent agent-2 forwards host ports 2000-9000 only and stack web (port_forward.http) already forwards it on agent agent-1") {
		t.Fatalf("port 18080 held on agent-1, outside agent-2's range: %d %+v", code, e)
	}

	// The scheduler places a new stack only on an agent that allows its
	// ports: 2222 goes to agent-2 (agent-1 would win the tie otherwise).
	p1.complete("apply", "other", api.ApplyRequest{Template: forwardTemplate("10.52.0.0/24", 2222, "tcp")})
	var detail api.StackDetail
	p1.must("GET", "/v1/stacks/other", nil, http.StatusOK, &detail)
	for _, r := range detail.Resources {
		if r.Node != "agent-2" {
			t.Fatalf("%s of stack other placed on %q, want agent-2 (the only agent that forwards 2222)", r.Address, r.Node)
		}
	}

	// An agent that reports no policy (an older agent): no plan-time
	// refusal for a new stack, which may land there.
	agentOn(t, s, "agent-3")
	if code, e := plan("third", 22); code != http.StatusOK {
		t.Fatalf("plan of port 22 with an agent without a policy: %d %+v", code, e)
	}
}
