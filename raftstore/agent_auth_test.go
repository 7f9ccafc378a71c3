package raftstore

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func hash(s string) string { return HashSecret(s) }

// TestAgentCredentials: a registration with a credential records it and
// replaces the agent's earlier ones; a join registration cannot take over an
// agent with a credential or a revoked one; revoking (the agent or its
// credential) deletes the credentials, marks the agent down and revoked, and
// refuses its heartbeats until a global admin registers it again.
func TestAgentCredentials(t *testing.T) {
	h := newHarness(t)
	reg := func(cred string, byJoin bool) *RegisterAgent {
		r := agent("a1")
		if cred != "" {
			r.CredentialID, r.CredentialHash = "tok-"+cred, hash(cred)
		}
		r.ByJoin = byJoin
		return r
	}
	h.must(reg("c1", true))
	st := h.state()
	tok, ok := st.TokenBySecret("c1")
	if !ok || tok.Kind != TokenAgent || tok.Agent != "a1" || tok.Project != "" || tok.Role != "" {
		t.Fatalf("credential: %+v %v", tok, ok)
	}
	// A join token cannot take it over.
	if err := h.apply(reg("c2", true)); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "take it over") {
		t.Fatalf("join over a credential: %v", err)
	}
	if _, ok := h.state().TokenBySecret("c2"); ok {
		t.Fatal("refused registration left a credential")
	}
	// The agent re-registers with its own credential: no new one.
	h.must(reg("", false))
	if _, ok := h.state().TokenBySecret("c1"); !ok {
		t.Fatal("re-registration lost the credential")
	}
	// A global admin's registration replaces it.
	h.must(reg("c3", false))
	if _, ok := h.state().TokenBySecret("c1"); ok {
		t.Fatal("old credential still valid after a new one was issued")
	}
	// Revoking the credential revokes the agent.
	h.must(&RevokeToken{ID: "tok-c3"})
	ag, _ := h.state().Agent("a1")
	if !ag.Revoked || ag.Status != AgentDown {
		t.Fatalf("after credential revoke: %+v", ag)
	}
	if err := h.apply(&AgentHeartbeat{ID: "a1", Time: t0}); !errors.Is(err, ErrConflict) {
		t.Fatalf("heartbeat of a revoked agent: %v", err)
	}
	if err := h.apply(reg("c4", true)); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("join of a revoked agent: %v", err)
	}
	if err := h.apply(reg("", false)); !errors.Is(err, ErrConflict) {
		t.Fatalf("registration without credential of a revoked agent: %v", err)
	}
	h.must(reg("c5", false))
	ag, _ = h.state().Agent("a1")
	if ag.Revoked || ag.Status != AgentUp {
		t.Fatalf("after admin registration: %+v", ag)
	}
	h.must(&RevokeAgent{ID: "a1", Reason: "test", Time: t0}, &RevokeAgent{ID: "a1", Reason: "again", Time: t0})
	if _, ok := h.state().TokenBySecret("c5"); ok {
		t.Fatal("credential survives RevokeAgent")
	}
	if err := h.apply(&RevokeAgent{ID: "nope"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke of an unknown agent: %v", err)
	}
}

// TestTokenKinds: agent and join tokens have no project or role; expiry is
// kept and checked by Expired.
func TestTokenKinds(t *testing.T) {
	h := newHarness(t)
	exp := t0.Add(time.Hour)
	h.must(&CreateToken{ID: "j", Kind: TokenJoin, SecretHash: hash("j"), Time: t0, Expires: exp})
	tok, _ := h.state().Token("j")
	if tok.Expires != exp || tok.Expired(t0) || !tok.Expired(exp) {
		t.Fatalf("join token expiry: %+v", tok)
	}
	for _, bad := range []*CreateToken{
		{ID: "x1", Kind: TokenJoin, Project: "p1", SecretHash: hash("x1")},
		{ID: "x2", Kind: TokenJoin, Role: RoleAdmin, SecretHash: hash("x2")},
		{ID: "x3", Kind: TokenAgent, SecretHash: hash("x3")},
		{ID: "x4", Kind: "root", SecretHash: hash("x4")},
		{ID: "x5", Role: RoleAdmin, Agent: "a", SecretHash: hash("x5")},
	} {
		if err := h.apply(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v, want invalid", bad, err)
		}
	}
	if len(h.state().Projects()) != 0 {
		t.Errorf("a join token made a project: %v", h.state().Projects())
	}
}

// TestCredentialsSurviveSnapshot: token kinds, bindings, expiries and a
// revoked agent round-trip through a snapshot; the restored secret index
// finds the credential.
func TestCredentialsSurviveSnapshot(t *testing.T) {
	h := newHarness(t)
	r := agent("a1")
	r.CredentialID, r.CredentialHash = "tok-a1", hash("cred-a1")
	h.must(r, agent("a2"), &RevokeAgent{ID: "a2", Reason: "x", Time: t0},
		&CreateToken{ID: "j", Kind: TokenJoin, SecretHash: hash("j"), Time: t0, Expires: t0.Add(time.Hour)})
	f2 := h.restored()
	tok, ok := f2.State().TokenBySecret("cred-a1")
	if !ok || tok.Kind != TokenAgent || tok.Agent != "a1" {
		t.Errorf("credential after restore: %+v %v", tok, ok)
	}
	if j, _ := f2.State().Token("j"); j.Kind != TokenJoin || !j.Expires.Equal(t0.Add(time.Hour)) {
		t.Errorf("join token after restore: %+v", j)
	}
	if a2, _ := f2.State().Agent("a2"); !a2.Revoked || a2.Status != AgentDown {
		t.Errorf("revoked agent after restore: %+v", a2)
	}
}
