package server

import (
	"net/http"

	"github.com/kiln-dev/kiln/raftstore"
)

// Who may call a route: each route of routes() names a rule, checked after
// the token is authenticated. docs/authorization.md is the table, and
// TestAuthorizationMatrix checks it route by route.

// globalAdmin: the token that administers the cluster.
func (c caller) globalAdmin() bool { return c.global() && c.admin() }

// access says which callers a route admits (docs/authorization.md).
type access int

const (
	// projectAccess: an API token whose role is at least the rule's, acting
	// in its own project (a global token in ?project=). The handler finds
	// every object in the caller's project only.
	projectAccess access = iota
	// globalAccess: a global admin token only (cluster operations).
	globalAccess
	// agentAccess: the credential of the agent named by {id}, or a global
	// admin token.
	agentAccess
	// registerAccess: a global admin token, a join token, or an agent's
	// credential re-registering its own agent (the handler checks the id).
	registerAccess
)

// rule is who may call a route.
type rule struct {
	access access
	role   raftstore.Role // for projectAccess
}

// check says whether the caller may call a route of rule ru: nil, or a 403.
func (c caller) check(ru rule, r *http.Request) error {
	switch c.token.Kind {
	case raftstore.TokenAgent:
		switch {
		case ru.access == agentAccess && r.PathValue("id") == c.token.Agent, ru.access == registerAccess:
			return nil
		case ru.access == agentAccess:
			return errf(http.StatusForbidden, "the credential of agent %s cannot act for agent %s", c.token.Agent, r.PathValue("id"))
		}
		return errf(http.StatusForbidden, "an agent credential may only call the agent routes of its own agent, not %s %s", r.Method, r.URL.Path)
	case raftstore.TokenJoin:
		if ru.access == registerAccess {
			return nil
		}
		return errf(http.StatusForbidden, "a join token may only register an agent (POST /v1/agents), not %s %s", r.Method, r.URL.Path)
	}
	if ru.access == projectAccess {
		if !allowed(c.token.Role, ru.role) {
			return errf(http.StatusForbidden, "a %s token cannot %s %s", c.token.Role, r.Method, r.URL.Path)
		}
		return nil
	}
	if !c.globalAdmin() {
		who := "a global " + string(c.token.Role) + " token"
		if !c.global() {
			who = "a token of project " + c.token.Project
		}
		return errf(http.StatusForbidden, "%s %s needs a global (project-less) admin token, not %s", r.Method, r.URL.Path, who)
	}
	return nil
}
