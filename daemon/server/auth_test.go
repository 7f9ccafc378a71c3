package server

import (
	"net/http"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/api"
)

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
		path = strings.NewReplacer("{stack}", "s2", "{id}", "x", "{address}", "a").Replace(path)
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
