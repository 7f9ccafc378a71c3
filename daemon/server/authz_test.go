package server

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/daemon/agent"
	"github.com/kiln-dev/kiln/internal/testnet"
	"github.com/kiln-dev/kiln/internal/testwait"
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
	"GET /debug/pprof/{profile}":                         "global",
	"GET /v1/operator/raft/peers":                        "global",
	"POST /v1/operator/raft/peers":                       "global",
	"DELETE /v1/operator/raft/peers/{id}":                "global",
	"GET /v1/operator/snapshot":                          "global",
	"PUT /v1/operator/snapshot":                          "global",
}

// waitCredential waits until the agent stored its credential and returns it.
func waitCredential(t *testing.T, dir string) string {
	t.Helper()
	var cred string
	testwait.For(t, 30*time.Second, "a credential in "+dir, func() bool {
		b, err := os.ReadFile(filepath.Join(dir, agent.CredentialFile))
		if err != nil || len(b) == 0 {
			return false
		}
		fi, _ := os.Stat(filepath.Join(dir, agent.CredentialFile))
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("credential file mode %v, want 0600", fi.Mode().Perm())
		}
		cred = strings.TrimSpace(string(b))
		return true
	})
	return cred
}

// TestAuth: every route needs a token, a wrong token is 401, another
// project's stack is 404, roles are enforced, bodies are checked.
func TestAuth(t *testing.T) {
	s, mgmt := single(t, nil)
	reader, member, other := mgmt.as("p1", "reader"), mgmt.as("p1", "member"), mgmt.as("p2", "member")
	// A stack of p2 with nothing in it (no changes: recorded at once).
	empty := mainHCL("# nothing\n")
	other.must("POST", "/v1/stacks/s2/apply", api.ApplyRequest{Template: empty}, http.StatusOK, nil)
	other.must("GET", "/v1/stacks/s2", nil, http.StatusOK, nil)

	for _, pattern := range Routes() {
		method, path, _ := strings.Cut(pattern, " ")
		path = strings.NewReplacer("{stack}", "s2", "{id}", "x", "{address}", "a", "{profile}", "heap").Replace(path)
		t.Run(pattern, func(t *testing.T) {
			for _, c := range []client{{t: t, addr: s.Addr()}, {t: t, addr: s.Addr(), token: "kiln_wrong"}} {
				if code, out := c.do(method, path, "{}"); code != http.StatusUnauthorized {
					t.Errorf("token %q: %d %s, want 401", c.token, code, out)
				}
			}
		})
	}
	if code, _ := (client{t: t, addr: s.Addr()}).do("GET", "/v1/health", nil); code != http.StatusOK {
		t.Errorf("health without token: %d", code)
	}

	tests := []struct {
		name   string
		c      client
		method string
		path   string
		body   any
		want   int
		field  string
	}{
		{"other project's stack", member, "GET", "/v1/stacks/s2", nil, 404, ""},
		{"other project's outputs", reader, "GET", "/v1/stacks/s2/outputs", nil, 404, ""},
		{"other project's destroy", member, "POST", "/v1/stacks/s2/destroy", nil, 404, ""},
		{"reader cannot apply", reader, "POST", "/v1/stacks/s1/apply", api.ApplyRequest{Template: empty}, 403, ""},
		{"reader cannot destroy", reader, "POST", "/v1/stacks/s1/destroy", nil, 403, ""},
		{"reader can plan", reader, "POST", "/v1/stacks/s1/plan", api.PlanRequest{Template: *empty}, 200, ""},
		{"member cannot create tokens", member, "POST", "/v1/tokens", api.TokenRequest{Project: "p1", Role: "reader"}, 403, ""},
		{"member cannot register agents", member, "POST", "/v1/agents", api.AgentRegister{ID: "a"}, 403, ""},
		{"member cannot list peers", member, "GET", "/v1/operator/raft/peers", nil, 403, ""},
		{"bad JSON", member, "POST", "/v1/stacks/s1/apply", `{"template":`, 400, ""},
		{"unknown field", member, "POST", "/v1/stacks/s1/apply", `{"templat": {}}`, 400, "templat"},
		{"wrong type", member, "POST", "/v1/stacks/s1/apply", `{"ttl": 5}`, 400, "ttl"},
		{"bad ttl", member, "POST", "/v1/stacks/s1/apply", `{"ttl": "soon", "template": {"bundle": {}}}`, 400, "ttl"},
		{"empty body", member, "POST", "/v1/stacks/s1/apply", ``, 400, ""},
		{"oversized body", member, "POST", "/v1/stacks/s1/apply", `{"ttl": "` + strings.Repeat("x", api.MaxBodyBytes) + `"}`, 413, ""},
		{"bad role", mgmt, "POST", "/v1/tokens", api.TokenRequest{Project: "p1", Role: "root"}, 400, "role"},
		{"bad index", reader, "GET", "/v1/operations/x?index=abc", nil, 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := tt.c.do(tt.method, tt.path, tt.body)
			if code != tt.want {
				t.Fatalf("%d %s, want %d", code, out, tt.want)
			}
			if tt.field != "" && !strings.Contains(string(out), `"field": "`+tt.field+`"`) {
				t.Errorf("error does not name field %q: %s", tt.field, out)
			}
		})
	}
}

// TestAuthorizationMatrix calls every route of Routes() as every kind of
// caller, on objects of its own and of another project (or agent), on the
// three servers of a real cluster in turn, and checks the class of the
// answer: 401, 403, 404 (another project's object is not found) or allowed
// (anything else: the handler ran).
func TestAuthorizationMatrix(t *testing.T) {
	servers, mgmtTok := startCluster(t)
	addrs := addrs(servers)
	mgmt := client{t: t, addr: addrs[0], token: mgmtTok}

	// Two agents with credentials of their own, issued at their first
	// registration with the management token.
	dirA, dirB := t.TempDir(), t.TempDir()
	startAgent(t, "agent-a", mgmtTok, addrs, inDir(dirA))
	startAgent(t, "agent-b", mgmtTok, addrs, inDir(dirB))
	credA := waitCredential(t, dirA)
	waitCredential(t, dirB)

	p1admin := mkToken(t, mgmt, api.TokenRequest{Project: "p1", Role: "admin"}).Secret
	p1member := mkToken(t, mgmt, api.TokenRequest{Project: "p1", Role: "member"}).Secret
	p1reader := mkToken(t, mgmt, api.TokenRequest{Project: "p1", Role: "reader"}).Secret
	p2admin := mkToken(t, mgmt, api.TokenRequest{Project: "p2", Role: "admin"}).Secret
	join := mkToken(t, mgmt, api.TokenRequest{Join: true, TTL: "1h"}).Secret
	expired := mkExpired(t, mgmt, api.TokenRequest{Project: "p1", Role: "admin"})

	// A stack and an operation in each project.
	ops := map[string]string{}
	for _, p := range []struct{ project, stack, token string }{{"p1", "s1", p1member}, {"p2", "s2", p2admin}} {
		c := client{t: t, addr: addrs[1], token: p.token}
		ops[p.project] = c.complete("apply", p.stack, api.ApplyRequest{Template: mainHCL(smallTemplate)}).ID
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
				p = strings.NewReplacer("{id}", "nope", "{address}", "server.nope", "{profile}", "heap").Replace(p)
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

// TestJoinTokenFlow: a global admin makes a join token; with it an agent
// registers and gets its credential once; the credential acts for its own
// agent only; the join token cannot take over an agent that has a
// credential, nor do anything but register; a project admin cannot make
// join or global tokens.
func TestJoinTokenFlow(t *testing.T) {
	s, mgmt := single(t, nil)
	p1admin := mgmt.as("p1", "admin")
	for _, req := range []api.TokenRequest{{Join: true}, {Global: true, Role: "admin"}} {
		if code, out := p1admin.do("POST", "/v1/tokens", req); code != http.StatusForbidden {
			t.Errorf("project admin makes %+v: %d %s, want 403", req, code, out)
		}
	}
	jt := mkToken(t, mgmt, api.TokenRequest{Join: true, TTL: "1h", Name: "rack 3"})
	if jt.Kind != "join" || jt.Project != "" || jt.Role != "" || jt.Expires.IsZero() {
		t.Fatalf("join token: %+v", jt)
	}
	join := client{t: t, addr: s.Addr(), token: jt.Secret}
	reg := api.AgentRegister{ID: "a1", Address: "rack3", Capacity: api.Capacity{CPUs: 4, MemoryBytes: 1 << 30, DiskBytes: 1 << 30}}
	var info api.AgentInfo
	join.must("POST", "/v1/agents", reg, http.StatusOK, &info)
	if !strings.HasPrefix(info.Credential, "kiln_agent_") {
		t.Fatalf("registration by join token returned no credential: %+v", info)
	}
	cred := client{t: t, addr: s.Addr(), token: info.Credential}

	// The join token cannot take a1 over, nor do anything else.
	if code, out := join.do("POST", "/v1/agents", reg); code != http.StatusConflict || !strings.Contains(string(out), "take it over") {
		t.Errorf("join over a1: %d %s, want 409", code, out)
	}
	for _, r := range [][2]string{{"GET", "/v1/agents"}, {"GET", "/v1/stacks"}, {"POST", "/v1/agents/a1/heartbeat"}, {"GET", "/v1/tokens"}} {
		if code, out := join.do(r[0], r[1], "{}"); code != http.StatusForbidden {
			t.Errorf("join token %s %s: %d %s, want 403", r[0], r[1], code, out)
		}
	}
	// The credential: its own routes yes, another agent's or anything else no.
	cred.must("POST", "/v1/agents/a1/heartbeat", api.AgentHeartbeat{}, http.StatusNoContent, nil)
	cred.must("GET", "/v1/agents/a1/work", nil, http.StatusOK, nil)
	join.must("POST", "/v1/agents", api.AgentRegister{ID: "a2"}, http.StatusOK, nil)
	for _, r := range [][2]string{{"POST", "/v1/agents/a2/heartbeat"}, {"GET", "/v1/agents/a2/work"}, {"GET", "/v1/agents"}, {"GET", "/v1/stacks"}, {"POST", "/v1/tokens"}, {"GET", "/v1/operator/snapshot"}} {
		if code, out := cred.do(r[0], r[1], "{}"); code != http.StatusForbidden {
			t.Errorf("a1's credential %s %s: %d %s, want 403", r[0], r[1], code, out)
		}
	}
	if code, out := cred.do("POST", "/v1/agents", api.AgentRegister{ID: "a2"}); code != http.StatusForbidden {
		t.Errorf("a1's credential registers a2: %d %s, want 403", code, out)
	}
	// It re-registers its own agent, without a new credential.
	var again api.AgentInfo
	cred.must("POST", "/v1/agents", reg, http.StatusOK, &again)
	if again.Credential != "" {
		t.Errorf("re-registration issued a credential")
	}
	var toks []api.TokenInfo
	mgmt.must("GET", "/v1/tokens", nil, http.StatusOK, &toks)
	agents := 0
	for _, tk := range toks {
		if tk.Kind == "agent" {
			agents++
		}
	}
	if agents != 2 {
		t.Errorf("agent credentials listed: %d, want 2 (a1, a2): %+v", agents, toks)
	}
	// A project admin sees none of them.
	p1admin.must("GET", "/v1/tokens", nil, http.StatusOK, &toks)
	for _, tk := range toks {
		if tk.Project != "p1" {
			t.Errorf("p1 admin lists %+v", tk)
		}
	}
}

// TestAgentCredentialRevoke: a kiln agent registers with the management
// token, keeps its credential (0600) and reuses it on restart even when
// started with a bad token; `agents revoke` makes its credential 401, the
// agent down and revoked, and its work goes elsewhere; restarted, it says
// its credential was refused; a global admin registers it again.
func TestAgentCredentialRevoke(t *testing.T) {
	s, mgmt := single(t, nil)
	dir := t.TempDir()
	a1 := agentOn(t, s, "a1", inDir(dir))
	cred := client{t: t, addr: s.Addr(), token: waitCredential(t, dir)}
	cred.must("POST", "/v1/agents/a1/heartbeat", api.AgentHeartbeat{}, http.StatusNoContent, nil)

	// Restart with a wrong configured token: the stored credential wins.
	a1.restart(withConfig(func(c *agent.Config) { c.Token = "kiln_wrong" }))
	c := mgmt.as("p1", "member")
	c.complete("apply", "web", api.ApplyRequest{Template: mainHCL(smallTemplate)})
	select {
	case <-a1.done:
		t.Fatalf("agent stopped: %v", a1.runErr())
	default:
	}

	// Only a global admin revokes.
	if code, out := c.do("POST", "/v1/agents/a1/revoke", nil); code != http.StatusForbidden {
		t.Errorf("member revokes: %d %s, want 403", code, out)
	}
	var info api.AgentInfo
	mgmt.must("POST", "/v1/agents/a1/revoke", nil, http.StatusOK, &info)
	if !info.Revoked || info.Status != "down" {
		t.Errorf("revoked agent: %+v", info)
	}
	if code, out := cred.do("POST", "/v1/agents/a1/heartbeat", api.AgentHeartbeat{}); code != http.StatusUnauthorized {
		t.Errorf("revoked credential: %d %s, want 401", code, out)
	}
	// The management token cannot bring it up with a heartbeat either.
	if code, out := mgmt.do("POST", "/v1/agents/a1/heartbeat", api.AgentHeartbeat{}); code != http.StatusConflict {
		t.Errorf("heartbeat of a revoked agent: %d %s, want 409", code, out)
	}
	// The running agent stops: its credential is refused.
	select {
	case <-a1.done:
		if err := a1.runErr(); err == nil || !strings.Contains(err.Error(), "refuse") {
			t.Errorf("revoked agent stopped with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the revoked agent is still running")
	}
	// It gets no work: the next apply runs on another agent.
	dir2 := t.TempDir()
	agentOn(t, s, "a2", inDir(dir2))
	waitCredential(t, dir2) // registered
	op := c.complete("apply", "web2", api.ApplyRequest{Template: mainHCL(smallTemplate)})
	for _, a := range op.Actions {
		if a.Agent != "a2" {
			t.Errorf("action %s ran on %q, want a2", a.Address, a.Agent)
		}
	}

	// Restarted, it fails with a clear message.
	ag, err := agent.New(agent.Config{ID: "a1", DataDir: dir, Servers: []string{s.Addr()}, Token: s.ManagementToken(), Drivers: agent.NewMemory("", 0).Drivers()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ag.Run(ctx); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("restart with a revoked credential: %v", err)
	}
	// A join token cannot take a revoked agent back; a global admin can.
	join := client{t: t, addr: s.Addr(), token: mkToken(t, mgmt, api.TokenRequest{Join: true}).Secret}
	if code, out := join.do("POST", "/v1/agents", api.AgentRegister{ID: "a1"}); code != http.StatusConflict {
		t.Errorf("join token re-registers a revoked agent: %d %s, want 409", code, out)
	}
	var back api.AgentInfo
	mgmt.must("POST", "/v1/agents", api.AgentRegister{ID: "a1"}, http.StatusOK, &back)
	if back.Revoked || back.Status != "up" || back.Credential == "" {
		t.Errorf("admin registration: %+v", back)
	}

	// Revoking the credential as a token revokes the agent too.
	var toks []api.TokenInfo
	mgmt.must("GET", "/v1/tokens", nil, http.StatusOK, &toks)
	for _, tk := range toks {
		if tk.Kind == "agent" && tk.Agent == "a1" {
			mgmt.must("DELETE", "/v1/tokens/"+tk.ID, nil, http.StatusNoContent, nil)
		}
	}
	var list []api.AgentInfo
	mgmt.must("GET", "/v1/agents", nil, http.StatusOK, &list)
	if len(list) != 2 || list[0].ID != "a1" || !list[0].Revoked || list[0].Status != "down" {
		t.Errorf("after the credential's revoke: %+v", list)
	}
}

// TestTokenScopeAndTTL: a project admin administers its own project's
// tokens only; a token with a TTL works until it expires, then gets 401
// "token expired"; the list shows the expiry.
func TestTokenScopeAndTTL(t *testing.T) {
	s, mgmt := single(t, nil)
	p1 := mgmt.as("p1", "admin")
	p2tok := mkToken(t, mgmt, api.TokenRequest{Project: "p2", Role: "reader"})
	if code, out := p1.do("POST", "/v1/tokens", api.TokenRequest{Project: "p2", Role: "admin"}); code != http.StatusForbidden {
		t.Errorf("p1 admin makes a p2 token: %d %s", code, out)
	}
	if code, out := p1.do("DELETE", "/v1/tokens/"+p2tok.ID, nil); code != http.StatusNotFound {
		t.Errorf("p1 admin revokes a p2 token: %d %s, want 404", code, out)
	}
	(client{t: t, addr: s.Addr(), token: p2tok.Secret}).must("GET", "/v1/stacks", nil, http.StatusOK, nil)
	for _, bad := range []string{"soon", "-1h", "0s"} {
		if code, out := p1.do("POST", "/v1/tokens", api.TokenRequest{Project: "p1", Role: "reader", TTL: bad}); code != http.StatusBadRequest || !strings.Contains(string(out), `"ttl"`) {
			t.Errorf("ttl %q: %d %s, want 400 naming ttl", bad, code, out)
		}
	}
	long := mkToken(t, p1, api.TokenRequest{Project: "p1", Role: "reader", TTL: "24h"})
	if d := time.Until(long.Expires); d < 23*time.Hour || d > 25*time.Hour {
		t.Errorf("expires %v, want in 24h", long.Expires)
	}
	(client{t: t, addr: s.Addr(), token: long.Secret}).must("GET", "/v1/stacks", nil, http.StatusOK, nil)
	short := mkExpired(t, p1, api.TokenRequest{Project: "p1", Role: "reader"})
	code, out := (client{t: t, addr: s.Addr(), token: short}).do("GET", "/v1/stacks", nil)
	if code != http.StatusUnauthorized || !strings.Contains(string(out), "token expired") {
		t.Errorf("expired token: %d %s, want 401 token expired", code, out)
	}
	var toks []api.TokenInfo
	p1.must("GET", "/v1/tokens", nil, http.StatusOK, &toks)
	found := false
	for _, tk := range toks {
		if tk.Project != "p1" {
			t.Errorf("p1 admin lists %+v", tk)
		}
		found = found || (tk.ID == long.ID && tk.Expires.Equal(long.Expires))
	}
	if !found {
		t.Errorf("token list lacks the expiry of %s: %+v", long.ID, toks)
	}
}

// TestJoinSafety: a join never rewrites a member's address nor takes
// another's; the same join again is a no-op; a peer that does not answer on
// its HTTP address (as the node it claims) and its raft address is refused
// with nothing changed, and the cluster keeps its quorum.
func TestJoinSafety(t *testing.T) {
	servers, mgmtTok := startCluster(t)
	// Sent to a follower: forwarded to the leader.
	var follower *Server
	for _, s := range servers {
		if !s.IsLeader() {
			follower = s
		}
	}
	c := client{t: t, addr: follower.Addr(), token: mgmtTok}
	peers := func() map[string]api.Peer {
		var l []api.Peer
		c.must("GET", "/v1/operator/raft/peers", nil, http.StatusOK, &l)
		m := map[string]api.Peer{}
		for _, p := range l {
			p.Leader = false
			m[p.ID] = p
		}
		return m
	}
	before := peers()
	s2 := servers[1]
	self := api.JoinRequest{ID: s2.NodeID(), RaftAddr: s2.store.Addr(), HTTPAddr: s2.Addr()}

	// A listener that would take s2's forwarded requests, and one that
	// answers health as a node whose raft address is dead.
	fake := func(nodeID string) string {
		mux := http.NewServeMux()
		mux.HandleFunc("/v1/health", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, api.Health{NodeID: nodeID})
		})
		srv := &http.Server{Handler: mux}
		ln := listen(t)
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		return ln.Addr().String()
	}
	rogueHTTP := fake(s2.NodeID())
	halfHTTP := fake("half")
	liveRaft := listen(t) // accepts TCP, is no raft
	tests := []struct {
		name string
		req  api.JoinRequest
		want int
		msg  string
	}{
		{"same id, same addresses", self, http.StatusNoContent, ""},
		{"same id, new HTTP address", api.JoinRequest{ID: self.ID, RaftAddr: self.RaftAddr, HTTPAddr: rogueHTTP}, http.StatusConflict, "node " + self.ID + " is already a member"},
		{"same id, new raft address", api.JoinRequest{ID: self.ID, RaftAddr: liveRaft.Addr().String(), HTTPAddr: self.HTTPAddr}, http.StatusConflict, "cannot change a member's address"},
		{"new id, a member's raft address", api.JoinRequest{ID: "rogue", RaftAddr: self.RaftAddr, HTTPAddr: rogueHTTP}, http.StatusConflict, "in use by node " + self.ID},
		{"new id, a member's HTTP address", api.JoinRequest{ID: "rogue", RaftAddr: liveRaft.Addr().String(), HTTPAddr: self.HTTPAddr}, http.StatusConflict, "in use by node " + self.ID},
		{"nothing answers", api.JoinRequest{ID: "ghost", RaftAddr: testnet.FreeAddr(t), HTTPAddr: testnet.FreeAddr(t)}, http.StatusServiceUnavailable, "does not answer"},
		{"HTTP answers as another node", api.JoinRequest{ID: "liar", RaftAddr: liveRaft.Addr().String(), HTTPAddr: rogueHTTP}, http.StatusConflict, "answers as node"},
		{"raft address dead", api.JoinRequest{ID: "half", RaftAddr: testnet.FreeAddr(t), HTTPAddr: halfHTTP}, http.StatusServiceUnavailable, "raft address"},
		{"no http_addr", api.JoinRequest{ID: "x", RaftAddr: testnet.FreeAddr(t)}, http.StatusBadRequest, "http_addr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := c.do("POST", "/v1/operator/raft/peers", tt.req)
			if code != tt.want || !strings.Contains(string(out), tt.msg) {
				t.Fatalf("%d %s, want %d with %q", code, out, tt.want, tt.msg)
			}
		})
	}
	after := peers()
	if len(after) != len(before) {
		t.Fatalf("peers changed: %+v, was %+v", after, before)
	}
	for id, p := range before {
		if after[id] != p {
			t.Errorf("peer %s changed: %+v, was %+v", id, after[id], p)
		}
	}
	if sv, _ := servers[0].store.State().Server(self.ID); sv.HTTPAddr != self.HTTPAddr {
		t.Errorf("HTTP address of %s is %s, want %s", self.ID, sv.HTTPAddr, self.HTTPAddr)
	}
	// The quorum is intact: writes go through.
	mkToken(t, c, api.TokenRequest{Project: "p1", Role: "reader"})
}

// listen opens a loopback listener that accepts and closes connections.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// A project name reaches owner tags and host object names: a token for a
// name they cannot carry, or a ?project= of one, is refused naming the field.
func TestProjectNameValidated(t *testing.T) {
	_, mgmt := single(t, nil)
	for _, name := range []string{"a/b", "P1", "1abc", "a b", strings.Repeat("p", MaxProjectName+1)} {
		code, out := mgmt.do("POST", "/v1/tokens", api.TokenRequest{Project: name, Role: "reader"})
		if code != http.StatusBadRequest || !strings.Contains(string(out), `"field": "project"`) {
			t.Errorf("token for project %q: %d %s, want 400 naming project", name, code, out)
		}
		code, out = mgmt.do("GET", "/v1/stacks?project="+url.QueryEscape(name), nil)
		if code != http.StatusBadRequest {
			t.Errorf("GET /v1/stacks?project=%q: %d %s, want 400", name, code, out)
		}
	}
	if code, out := mgmt.do("POST", "/v1/tokens", api.TokenRequest{Project: "team-1_ci", Role: "reader"}); code != http.StatusCreated {
		t.Errorf("token for a valid project: %d %s", code, out)
	}
}

// docs/authorization.md is the route table users read: every route the
// server serves has its row there.
func TestAuthorizationDocListsEveryRoute(t *testing.T) {
	single(t, nil) // fills the route list
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "authorization.md"))
	if err != nil {
		t.Fatal(err)
	}
	routes := append([]string{"GET /v1/health", "GET /metrics"}, Routes()...)
	for _, r := range routes {
		if !strings.Contains(string(doc), "| `"+r+"`") && !strings.Contains(string(doc), ", `"+r+"`") {
			t.Errorf("docs/authorization.md has no row for %s", r)
		}
	}
}
