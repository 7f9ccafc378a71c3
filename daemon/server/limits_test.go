package server

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/internal/testwait"
	"github.com/kiln-dev/kiln/spec"
)

// validationBase declares an image, a network and a volume (lines 1-12;
// the first line of a server after it is 13).
const validationBase = `image "base" {
  source = "/srv/images/base.qcow2"
}

network "n" {
  cidr = "10.9.0.0/24"
}

volume "v" {
  size = "1GiB"
}

`

// TestTemplateErrorsAnswer400 checks that every kind of template error (syntax,
// unknown variable, bad reference, validation) answers 400 with the
// diagnostics as JSON, each naming file, line and column, on plan and apply.
func TestTemplateErrorsAnswer400(t *testing.T) {
	_, c := single(t, nil)
	tests := []struct {
		name, src string
		line      int
		want      string // in a diagnostic's summary or detail
	}{
		{"syntax error", "network \"lan\" {\n  cidr = \n}\n", 2, "Invalid expression"},
		{"unclosed block", "network \"lan\" {\n  cidr = \"10.0.0.0/24\"\n", 1, "Unclosed"},
		{"unknown variable", "network \"lan\" {\n  cidr = nosuch.x\n}\n", 2, "nosuch"},
		{"unknown param", "network \"lan\" {\n  cidr = param.nope\n}\n", 2, "nope"},
		{"bad reference", "network \"lan\" {\n  cidr = \"10.0.0.0/24\"\n}\nserver \"web\" {\n  image = image.none.id\n  memory = \"64MiB\"\n}\n", 5, `No image named "none"`},
		{"bad function", "network \"lan\" {\n  cidr = nofunc(1)\n}\n", 2, "nofunc"},
		// validation gaps: plan used to accept these and apply failed
		{"volume on two servers", validationBase + "server \"a\" {\n  image   = image.base.id\n  volumes = [volume.v.id]\n}\nserver \"b\" {\n  image   = image.base.id\n  volumes = [volume.v.id]\n}\n", 19,
			"volume.v is attached to both server.a (at main.hcl:15,13) and server.b"},
		{"network id as a volume", validationBase + "server \"a\" {\n  image   = image.base.id\n  volumes = [network.n.id]\n}\n", 15,
			`Field "volumes" of server.a takes the ids of volumes, such as volume.NAME.id; network.n.id is the id of a network`},
		{"volume id as an image", validationBase + "server \"a\" {\n  image   = volume.v.id\n}\n", 14,
			`Field "image" of server.a takes the ids of images`},
		{"volume id as an address", validationBase + "server \"a\" {\n  image   = image.base.id\n  network \"n\" {\n    address = volume.v.id\n  }\n}\n", 16,
			`The address of server.a on network "n" takes an IP address`},
		{"literal volume id", validationBase + "server \"a\" {\n  image   = image.base.id\n  volumes = [\"p2-web-data\"]\n}\n", 15,
			`Entry 0 of the volumes of server.a is "p2-web-data", not a volume of this stack`},
		{"IPv6 cidr", "network \"v6\" {\n  cidr = \"fd00::/64\"\n}\n", 2, "IPv4 only for now"},
	}
	for _, tt := range tests {
		for _, route := range []string{"plan", "apply"} {
			var body any = api.PlanRequest{Template: *mainHCL(tt.src)}
			if route == "apply" {
				body = api.ApplyRequest{Template: mainHCL(tt.src)}
			}
			code, out := c.do("POST", "/v1/stacks/s1/"+route, body)
			if code != http.StatusBadRequest {
				t.Errorf("%s (%s): status %d, want 400: %s", tt.name, route, code, out)
				continue
			}
			var e api.Error
			if err := json.Unmarshal(out, &e); err != nil {
				t.Fatalf("%s: decode %s: %v", tt.name, out, err)
			}
			if e.Error == "" || len(e.Diagnostics) == 0 {
				t.Errorf("%s (%s): no error text or no diagnostics: %s", tt.name, route, out)
				continue
			}
			found := false
			for _, d := range e.Diagnostics {
				if d.Severity == "error" && d.File == "main.hcl" && d.Line == tt.line && d.Column > 0 &&
					strings.Contains(d.Summary+" "+d.Detail, tt.want) {
					found = true
				}
			}
			if !found {
				t.Errorf("%s (%s): no error diagnostic at main.hcl:%d mentioning %q: %s", tt.name, route, tt.line, tt.want, out)
			}
		}
	}
}

// TestPlanEvaluationLimit: a template that would make millions of values is
// refused with 400 and an "Evaluation limit exceeded" diagnostic at the call,
// on plan and apply, and nothing is stored.
func TestPlanEvaluationLimit(t *testing.T) {
	s, c := single(t, nil)
	src := "locals {\n  a = range(150)\n  p = setproduct(local.a, local.a, local.a)\n}\n\noutput \"n\" {\n  value = length(local.p)\n}\n"
	for _, route := range []string{"plan", "apply"} {
		var body any = api.PlanRequest{Template: *mainHCL(src)}
		if route == "apply" {
			body = api.ApplyRequest{Template: mainHCL(src)}
		}
		code, out := c.do("POST", "/v1/stacks/big/"+route, body)
		var e api.Error
		if code != http.StatusBadRequest || json.Unmarshal(out, &e) != nil || len(e.Diagnostics) == 0 {
			t.Fatalf("%s: status %d, want 400 with diagnostics: %s", route, code, out)
		}
		d := e.Diagnostics[0]
		if d.Summary != spec.LimitSummary || d.File != "main.hcl" || d.Line != 3 || !strings.Contains(d.Detail, "1,000,000 values") || !strings.Contains(d.Detail, "setproduct") {
			t.Errorf("%s: diagnostic %+v, want the values limit at main.hcl:3 naming setproduct", route, d)
		}
	}
	if _, ok := s.store.State().Stack("default", "big"); ok {
		t.Errorf("a refused template made a stack")
	}
}

// TestPlanEvaluationTimeout: the server's EvalTimeout stops a template that
// is slow but within the size limits.
func TestPlanEvaluationTimeout(t *testing.T) {
	_, c := single(t, func(cfg *Config) { cfg.EvalTimeout = time.Millisecond })
	src := "locals {\n  a = [for i in range(900) : [for j in range(900) : i * j]]\n}\n"
	code, out := c.do("POST", "/v1/stacks/slow/plan", api.PlanRequest{Template: *mainHCL(src)})
	var e api.Error
	if code != http.StatusBadRequest || json.Unmarshal(out, &e) != nil || len(e.Diagnostics) == 0 ||
		e.Diagnostics[0].Summary != spec.LimitSummary || !strings.Contains(e.Diagnostics[0].Detail, "time limit") || e.Diagnostics[0].Line != 2 {
		t.Fatalf("status %d, want 400 with the time limit at main.hcl:2: %s", code, out)
	}
}

// TestConcurrentPlansBounded: with every plan slot taken a plan waits
// PlanQueueWait, then answers 429 with Retry-After; once a slot frees, plans
// go through again.
func TestConcurrentPlansBounded(t *testing.T) {
	s, c := single(t, func(cfg *Config) {
		cfg.MaxConcurrentPlans = 1
		cfg.PlanQueueWait = time.Second
	})
	req := api.PlanRequest{Template: *mainHCL(smallTemplate)}
	plan := func() (*http.Response, error) {
		hreq, _ := http.NewRequest("POST", "http://"+c.addr+"/v1/stacks/s1/plan", strings.NewReader(mustJSON(t, req)))
		hreq.Header.Set("Authorization", "Bearer "+c.token)
		return http.DefaultClient.Do(hreq)
	}
	s.planSlots <- struct{}{} // a plan in progress
	resp, err := plan()
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("status %d Retry-After %q, want 429 with Retry-After 1", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// a slot freed while the plan waits: it goes through
	type answer struct {
		resp *http.Response
		err  error
	}
	answers := make(chan answer, 1)
	go func() {
		resp, err := plan()
		answers <- answer{resp, err}
	}()
	testwait.For(t, 10*time.Second, "the plan to wait for a slot", inCall((*Server).planSlot))
	<-s.planSlots
	a := <-answers
	if a.err != nil {
		t.Fatal(a.err)
	}
	out, _ := io.ReadAll(a.resp.Body)
	a.resp.Body.Close()
	if a.resp.StatusCode != http.StatusOK {
		t.Fatalf("plan once a slot freed: status %d, want 200: %s", a.resp.StatusCode, out)
	}
	if len(s.planSlots) != 0 {
		t.Errorf("the plan did not give its slot back")
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// rawConn opens a TCP connection to the server.
func rawConn(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// closedWithin reads from conn until it is closed (true) or the time is up.
func closedWithin(conn net.Conn, d time.Duration) (bool, []byte) {
	conn.SetReadDeadline(time.Now().Add(d))
	data, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false, data
	}
	return true, data
}

// TestHTTPDripFeedCutOff: a client that sends its body one byte at a time
// is cut off once HTTPBodyTimeout has passed.
func TestHTTPDripFeedCutOff(t *testing.T) {
	_, c := single(t, func(cfg *Config) { cfg.HTTPBodyTimeout = 500 * time.Millisecond })
	conn := rawConn(t, c.addr)
	fmt.Fprintf(conn, "POST /v1/stacks/s1/plan HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n", c.token)
	cut := false
	for i := 0; i < 50 && !cut; i++ { // 50 bytes over 10 s if never cut off
		if _, err := conn.Write([]byte(" ")); err != nil {
			cut = true
			break
		}
		if closed, _ := closedWithin(conn, 200*time.Millisecond); closed {
			cut = true
		}
	}
	if !cut {
		t.Fatalf("a client dripping its body stayed connected")
	}
}

// TestHTTPIdleConnectionClosed: a keep-alive connection with no request is
// closed after HTTPIdleTimeout.
func TestHTTPIdleConnectionClosed(t *testing.T) {
	_, c := single(t, func(cfg *Config) { cfg.HTTPIdleTimeout = 300 * time.Millisecond })
	conn := rawConn(t, c.addr)
	fmt.Fprintf(conn, "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("health: %v %v", resp, err)
	}
	resp.Body.Close()
	if closed, _ := closedWithin(conn, 10*time.Second); !closed {
		t.Fatalf("an idle connection was not closed")
	}
}

// TestHTTPBlockingQueryOutlivesTimeouts: a blocking query that waits 3 s
// answers although it outlives the body, write and idle timeouts; a request
// whose handler runs past the body timeout, once its body is read, answers.
func TestHTTPBlockingQueryOutlivesTimeouts(t *testing.T) {
	s, c := single(t, func(cfg *Config) {
		cfg.HTTPBodyTimeout = 300 * time.Millisecond
		cfg.HTTPWriteTimeout = 2 * time.Second
		cfg.HTTPIdleTimeout = 300 * time.Millisecond
		cfg.MaxConcurrentPlans = 1
		cfg.PlanQueueWait = time.Second
	})
	c.must("POST", "/v1/agents", api.AgentRegister{ID: "a1", Address: "test", Capacity: api.Capacity{CPUs: 1, MemoryBytes: 1 << 30, DiskBytes: 1 << 30}}, http.StatusOK, nil)
	start := time.Now()
	var wr api.WorkResponse
	c.must("GET", "/v1/agents/a1/work?index=1000000&wait=3s", nil, http.StatusOK, &wr)
	if waited := time.Since(start); waited < 3*time.Second {
		t.Errorf("the blocking query answered after %v, before its wait of 3s", waited)
	}
	// a request whose handler outlives the body timeout after reading its
	// body (a plan waiting a second for a slot) still answers
	s.planSlots <- struct{}{}
	defer func() { <-s.planSlots }()
	code, out := c.do("POST", "/v1/stacks/s1/plan", api.PlanRequest{Template: *mainHCL(smallTemplate)})
	if code != http.StatusTooManyRequests {
		t.Errorf("plan waiting for a slot: %d %s, want 429", code, out)
	}
}

// TestHTTPConnectionCap: with MaxConnections = 2 the third connection is not
// served until one of the first two closes.
func TestHTTPConnectionCap(t *testing.T) {
	_, c := single(t, func(cfg *Config) { cfg.MaxConnections = 2 })
	a, b := rawConn(t, c.addr), rawConn(t, c.addr)
	for _, conn := range []net.Conn{a, b} {
		fmt.Fprintf(conn, "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("health: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	third := rawConn(t, c.addr)
	fmt.Fprintf(third, "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
	third.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if n, _ := third.Read(make([]byte, 1)); n > 0 {
		t.Fatalf("the third connection was served while two were open")
	}
	a.Close()
	third.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(third), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the third connection after one closed: %v %v", resp, err)
	}
	resp.Body.Close()
}
