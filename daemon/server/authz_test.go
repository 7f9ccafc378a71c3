package server

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/daemon/agent"
	"github.com/kiln-dev/kiln/daemon/api"
)

// routeRules is who may call each route, written out independently of
// routes() (docs/authorization.md is the same table): "reader", "member" and
// "admin" are project roles in the caller's own project, "global" a global
// admin only, "agent" the credential of the agent {id} (or a global admin),
// "register" a global admin, a join token or an agent's own credential. A
// route that routes() serves and this table lacks fails
// TestAuthorizationMatrix.
var routeRules = map[string]string{
	"GET /v1/stacks":                                     "reader",
	"GET /v1/stacks/{stack}":                             "reader",
	"DELETE /v1/stacks/{stack}":                          "member",
	"POST /v1/stacks/{stack}/plan":                       "reader",
	"POST /v1/stacks/{stack}/apply":                      "member",
	"POST /v1/stacks/{stack}/destroy":                    "member",
	"POST /v1/stacks/{stack}/renew":                      "member",
	"GET /v1/stacks/{stack}/outputs":                     "reader",
	"GET /v1/stacks/{stack}/events":                      "reader",
	"GET /v1/stacks/{stack}/resources/{address}/console": "reader",
	"GET /v1/operations/{id}":                            "reader",
	"POST /v1/operations/{id}/cancel":                    "member",
	"GET /v1/tokens":                                     "admin",
	"POST /v1/tokens":                                    "admin",
	"DELETE /v1/tokens/{id}":                             "admin",
	"GET /v1/agents":                                     "reader",
	"POST /v1/agents":                                    "register",
	"POST /v1/agents/{id}/heartbeat":                     "agent",
	"GET /v1/agents/{id}/work":                           "agent",
	"POST /v1/agents/{id}/results":                       "agent",
	"GET /v1/agents/{id}/hostwork":                       "agent",
	"POST /v1/agents/{id}/hostresults":                   "agent",
	"POST /v1/agents/{id}/events":                        "agent",
	"POST /v1/agents/{id}/revoke":                        "global",
	"GET /v1/images":                                     "reader",
	"POST /v1/images/prune":                              "global",
	"GET /v1/gc":                                         "global",
	"GET /v1/operator/raft/peers":                        "global",
	"POST /v1/operator/raft/peers":                       "global",
	"DELETE /v1/operator/raft/peers/{id}":                "global",
	"GET /v1/operator/snapshot":                          "global",
	"PUT /v1/operator/snapshot":                          "global",
}

// startCluster starts three servers on loopback with raft on disk and
// waits until all are voters that know the leader's HTTP address.
func startCluster(t *testing.T) (servers []*Server, mgmt string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := testConfig(t, t.TempDir())
	cfg.Bootstrap = true
	s1 := startServer(t, cfg)
	if err := s1.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	mgmt = s1.ManagementToken()
	servers = []*Server{s1}
	for range 2 {
		c := testConfig(t, t.TempDir())
		c.Join, c.JoinToken = s1.Addr(), mgmt
		servers = append(servers, startServer(t, c))
	}
	mc := client{t: t, addr: s1.Addr(), token: mgmt}
	for {
		var peers []api.Peer
		mc.must("GET", "/v1/operator/raft/peers", nil, http.StatusOK, &peers)
		ready := len(peers) == 3
		for _, s := range servers {
			ready = ready && s.leaderHTTP() != "" && s.store.Ready()
		}
		if ready {
			return servers, mgmt
		}
		select {
		case <-ctx.Done():
			t.Fatalf("cluster not formed: %+v", peers)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// runAgent runs a kiln agent on the memory drivers with its data in dir
// until the test ends or stop is called.
func runAgent(t *testing.T, id, dir, token string, servers ...string) (stop func(), done <-chan error) {
	t.Helper()
	mem := agent.NewMemory("", 0)
	ag, err := agent.New(agent.Config{
		ID: id, DataDir: dir, Servers: servers, Token: token,
		Drivers: mem.Drivers(), HeartbeatInterval: 100 * time.Millisecond, Wait: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	go func() { ch <- ag.Run(ctx) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-ch
		}
	}
	t.Cleanup(stop)
	return stop, ch
}

// waitCredential waits until the agent stored its credential and returns it.
func waitCredential(t *testing.T, dir string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(filepath.Join(dir, agent.CredentialFile)); err == nil && len(b) > 0 {
			fi, _ := os.Stat(filepath.Join(dir, agent.CredentialFile))
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("credential file mode %v, want 0600", fi.Mode().Perm())
			}
			return strings.TrimSpace(string(b))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no credential in %s", dir)
	return ""
}

func mkToken(t *testing.T, c client, req api.TokenRequest) api.TokenCreated {
	t.Helper()
	var tc api.TokenCreated
	c.must("POST", "/v1/tokens", req, http.StatusCreated, &tc)
	return tc
}

// TestAuthorizationMatrix calls every route of Routes() as every kind of
// caller, on objects of its own and of another project (or agent), on the
// three servers of a real cluster in turn, and checks the class of the
// answer: 401, 403, 404 (another project's object is not found) or allowed
// (anything else: the handler ran).
func TestAuthorizationMatrix(t *testing.T) {
	servers, mgmtTok := startCluster(t)
	var addrs []string
	for _, s := range servers {
		addrs = append(addrs, s.Addr())
	}
	mgmt := client{t: t, addr: addrs[0], token: mgmtTok}

	// Two agents with credentials of their own, issued at their first
	// registration with the management token.
	dirA, dirB := t.TempDir(), t.TempDir()
	runAgent(t, "agent-a", dirA, mgmtTok, addrs...)
	runAgent(t, "agent-b", dirB, mgmtTok, addrs...)
	credA := waitCredential(t, dirA)
	waitCredential(t, dirB)

	p1admin := mkToken(t, mgmt, api.TokenRequest{Project: "p1", Role: "admin"}).Secret
	p1member := mkToken(t, mgmt, api.TokenRequest{Project: "p1", Role: "member"}).Secret
	p1reader := mkToken(t, mgmt, api.TokenRequest{Project: "p1", Role: "reader"}).Secret
	p2admin := mkToken(t, mgmt, api.TokenRequest{Project: "p2", Role: "admin"}).Secret
	join := mkToken(t, mgmt, api.TokenRequest{Join: true, TTL: "1h"}).Secret
	expired := mkToken(t, mgmt, api.TokenRequest{Project: "p1", Role: "admin", TTL: "1ms"}).Secret
	time.Sleep(5 * time.Millisecond)

	// A stack and an operation in each project.
	ops := map[string]string{}
	for _, p := range []struct{ project, stack, token string }{{"p1", "s1", p1member}, {"p2", "s2", p2admin}} {
		c := client{t: t, addr: addrs[1], token: p.token}
		var ref api.OperationRef
		c.must("POST", "/v1/stacks/"+p.stack+"/apply", api.ApplyRequest{Template: bundle(map[string]string{"main.hcl": smallTemplate})}, http.StatusAccepted, &ref)
		if op := c.waitOp(ref.OperationID); op.Status != "complete" {
			t.Fatalf("apply %s/%s: %s %s", p.project, p.stack, op.Status, op.Error)
		}
		ops[p.project] = ref.OperationID
	}

	type callerCase struct {
		name    string
		token   string
		project string // own project of a project token
		role    string // reader, member, admin; "global" for the global admin
		kind    string // "", "agent", "join", "none" (401)
	}
	callers := []callerCase{
		{name: "no token", kind: "none"},
		{name: "unknown token", token: "kiln_unknown", kind: "none"},
		{name: "expired token", token: expired, kind: "none"},
		{name: "global admin", token: mgmtTok, role: "global"},
		{name: "p1 admin", token: p1admin, project: "p1", role: "admin"},
		{name: "p1 member", token: p1member, project: "p1", role: "member"},
		{name: "p1 reader", token: p1reader, project: "p1", role: "reader"},
		{name: "p2 admin", token: p2admin, project: "p2", role: "admin"},
		{name: "agent-a credential", token: credA, kind: "agent"},
		{name: "join token", token: join, kind: "join"},
	}
	rank := map[string]int{"reader": 1, "member": 2, "admin": 3}

	routes := Routes()
	for _, r := range routes {
		if _, ok := routeRules[r]; !ok {
			t.Errorf("route %s has no rule in routeRules (and docs/authorization.md): decide who may call it", r)
		}
	}
	if len(routeRules) != len(routes) {
		t.Errorf("routeRules has %d routes, Routes() %d", len(routeRules), len(routes))
	}

	// The routes that destroy the stacks run last, so that the others find
	// them; they may find a stack already gone.
	destructive := map[string]bool{"POST /v1/stacks/{stack}/destroy": true, "DELETE /v1/stacks/{stack}": true}
	var ordered []string
	for _, r := range routes {
		if !destructive[r] {
			ordered = append(ordered, r)
		}
	}
	ordered = append(ordered, "POST /v1/stacks/{stack}/destroy", "DELETE /v1/stacks/{stack}")

	n := 0
	for _, pattern := range ordered {
		rule := routeRules[pattern]
		method, path, _ := strings.Cut(pattern, " ")
		// Variants: the object of the caller's own project or agent, and
		// another's. Routes without such an object have one variant.
		type variant struct {
			other   bool
			project string // the project the object belongs to ("" none)
			agent   string
		}
		var variants []variant
		switch {
		case strings.Contains(path, "{stack}"), strings.HasPrefix(path, "/v1/operations/{id}"):
			variants = []variant{{project: "p1"}, {project: "p2"}}
		case rule == "agent":
			variants = []variant{{agent: "agent-a"}, {agent: "agent-b"}}
		default:
			variants = []variant{{}}
		}
		for _, cc := range callers {
			for _, v := range variants {
				p := path
				stacks := map[string]string{"p1": "s1", "p2": "s2"}
				p = strings.ReplaceAll(p, "{stack}", stacks[v.project])
				if strings.HasPrefix(p, "/v1/operations/") {
					p = strings.ReplaceAll(p, "{id}", ops[v.project])
				}
				if v.agent != "" {
					p = strings.ReplaceAll(p, "{id}", v.agent)
				}
				p = strings.NewReplacer("{id}", "nope", "{address}", "server.nope").Replace(p)
				if cc.role == "global" && v.project != "" {
					p += "?project=" + v.project
				}
				// other: the object is not the caller's. A plan or an apply
				// names a stack of the caller's own project (stack names
				// are per project): there is no other project's object.
				creates := strings.HasSuffix(pattern, "/plan") || strings.HasSuffix(pattern, "/apply")
				other := (v.project != "" && !creates && cc.role != "global" && cc.project != v.project) ||
					(v.agent != "" && cc.kind == "agent" && v.agent != "agent-a")
				var want string
				switch {
				case cc.kind == "none":
					want = "401"
				case cc.role == "global":
					want = "allowed"
				case cc.kind == "agent":
					switch {
					case rule == "register", rule == "agent" && !other:
						want = "allowed"
					default:
						want = "403"
					}
				case cc.kind == "join":
					want = map[bool]string{true: "allowed", false: "403"}[rule == "register"]
				default: // a project token
					switch {
					case rank[rule] == 0 || rank[cc.role] < rank[rule]:
						want = "403"
					case other:
						want = "404"
					default:
						want = "allowed"
					}
				}
				c := client{t: t, addr: addrs[n%len(addrs)], token: cc.token}
				n++
				var body any
				if method == "POST" || method == "PUT" {
					body = "{}"
				}
				code, out := c.do(method, p, body)
				var got string
				switch code {
				case 401, 403, 404:
					got = http.StatusText(code)
				}
				ok := false
				switch want {
				case "401":
					ok = code == 401
				case "403":
					ok = code == 403
				case "404":
					ok = code == 404
				case "allowed":
					ok = code != 401 && code != 403 && code < 500
					if !other && v.project != "" && code == 404 && !strings.Contains(pattern, "{address}") && !destructive[pattern] {
						ok = false // the caller's own object is found
					}
				}
				if !ok {
					t.Errorf("%s %s as %s: %d %s (%s), want %s", method, p, cc.name, code, strings.TrimSpace(string(out)), got, want)
				}
			}
		}
	}
	t.Logf("%d requests over %d routes", n, len(routes))
}
