package server

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/daemon/api"
	"github.com/kiln-dev/kiln/executors/memdriver"
)

// forwardTemplate is a stack with one server and a forward of host port
// hostPort (protocol proto) to it, on network cidr.
func forwardTemplate(cidr string, hostPort int, proto string) *api.Template {
	return bundle(map[string]string{"main.hcl": fmt.Sprintf(`
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
`, strings.Repeat("ab", 32), cidr, hostPort, proto)})
}

// TestPlanHostPortTaken: a host port another stack forwards on the agent is
// refused at plan time, naming the stack only to its own project.
func TestPlanHostPortTaken(t *testing.T) {
	s, mgmt := single(t, nil)
	startAgent(t, "agent-1", s.ManagementToken(), memdriver.New(), s.Addr())
	tok := func(project string) client {
		var tc api.TokenCreated
		mgmt.must("POST", "/v1/tokens", api.TokenRequest{Project: project, Role: "member"}, http.StatusCreated, &tc)
		return client{t: t, addr: s.Addr(), token: tc.Secret}
	}
	p1, p2 := tok("p1"), tok("p2")

	var ref api.OperationRef
	p1.must("POST", "/v1/stacks/first/apply", api.ApplyRequest{Template: forwardTemplate("10.41.0.0/24", 18080, "tcp")}, http.StatusAccepted, &ref)
	if op := p1.waitOp(ref.OperationID); op.Status != "complete" {
		t.Fatalf("apply first: %s %s", op.Status, op.Error)
	}

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
