package client

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/kiln-dev/kiln/api"
)

// Health answers GET /v1/health of the server that answers first.
func (c *Client) Health(ctx context.Context) (api.Health, error) {
	var h api.Health
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/health", out: &h})
	return h, err
}

// HealthOf asks one given server (base URL or host:port) for its health,
// without trying others.
func (c *Client) HealthOf(ctx context.Context, server string) (api.Health, error) {
	one := &Client{servers: []string{normalize(server)}, token: c.token, hc: c.hc, rounds: 1, pause: c.pause}
	return one.Health(ctx)
}

func normalize(s string) string {
	if len(s) > 0 && !containsScheme(s) {
		return "http://" + s
	}
	return s
}

func containsScheme(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Scheme != "" && u.Host != ""
}

// Metrics returns the Prometheus text of /metrics.
func (c *Client) Metrics(ctx context.Context) ([]byte, error) {
	var b []byte
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/metrics", out: &b})
	return b, err
}

// Stacks lists the stacks the token can see.
func (c *Client) Stacks(ctx context.Context) ([]api.StackSummary, error) {
	var out []api.StackSummary
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/stacks", out: &out})
	return out, err
}

// Stack returns one stack.
func (c *Client) Stack(ctx context.Context, stack string) (api.StackDetail, error) {
	var out api.StackDetail
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/stacks/" + esc(stack), out: &out})
	return out, err
}

// DeleteStack destroys a stack and then forgets it.
func (c *Client) DeleteStack(ctx context.Context, stack string) (api.OperationRef, error) {
	var out api.OperationRef
	_, err := c.do(ctx, request{method: http.MethodDelete, path: "/v1/stacks/" + esc(stack), out: &out})
	return out, err
}

// Plan plans a stack against its actual state. A template with errors
// answers a *Error with StatusCode 400; PlanWithDiagnostics returns the
// diagnostics too.
func (c *Client) Plan(ctx context.Context, stack string, req api.PlanRequest) (api.PlanResponse, error) {
	var out api.PlanResponse
	_, err := c.do(ctx, request{method: http.MethodPost, path: "/v1/stacks/" + esc(stack) + "/plan", body: req, out: &out})
	return out, err
}

// PlanDiagnostics is like Plan but on a 400 also decodes the diagnostics
// the server sent.
func (c *Client) PlanDiagnostics(ctx context.Context, stack string, req api.PlanRequest) (api.PlanResponse, []api.Diagnostic, error) {
	var raw []byte
	_, err := c.do(ctx, request{method: http.MethodPost, path: "/v1/stacks/" + esc(stack) + "/plan", body: req, out: &raw})
	if err != nil {
		if e, ok := err.(*Error); ok && e.StatusCode == http.StatusBadRequest {
			var pr api.PlanResponse
			_ = json.Unmarshal(e.Body, &pr)
			return api.PlanResponse{}, pr.Diagnostics, err
		}
		return api.PlanResponse{}, nil, err
	}
	var out api.PlanResponse
	if err := json.Unmarshal(raw, &out); err != nil {
		return out, nil, err
	}
	return out, out.Diagnostics, nil
}

// Apply applies a template or a plan made before; the answer comes at once
// with the operation id.
func (c *Client) Apply(ctx context.Context, stack string, req api.ApplyRequest) (api.OperationRef, error) {
	var out api.OperationRef
	_, err := c.do(ctx, request{method: http.MethodPost, path: "/v1/stacks/" + esc(stack) + "/apply", body: req, out: &out})
	return out, err
}

// Destroy destroys every resource of a stack.
func (c *Client) Destroy(ctx context.Context, stack string) (api.OperationRef, error) {
	var out api.OperationRef
	_, err := c.do(ctx, request{method: http.MethodPost, path: "/v1/stacks/" + esc(stack) + "/destroy", body: api.DestroyRequest{}, out: &out})
	return out, err
}

// Renew sets a stack's TTL to ttl from now.
func (c *Client) Renew(ctx context.Context, stack string, ttl time.Duration) (api.StackDetail, error) {
	var out api.StackDetail
	_, err := c.do(ctx, request{method: http.MethodPost, path: "/v1/stacks/" + esc(stack) + "/renew", body: api.RenewRequest{TTL: ttl.String()}, out: &out})
	return out, err
}

// Outputs returns a stack's outputs; sensitive asks for sensitive values in
// clear (member or admin).
func (c *Client) Outputs(ctx context.Context, stack string, sensitive bool) (map[string]api.OutputValue, error) {
	out := map[string]api.OutputValue{}
	p := "/v1/stacks/" + esc(stack) + "/outputs"
	if sensitive {
		p += "?sensitive=true"
	}
	_, err := c.do(ctx, request{method: http.MethodGet, path: p, out: &out})
	return out, err
}

// Events returns the events of a stack after index, waiting up to wait for
// one when there are none yet (a blocking query; wait 0 answers at once).
func (c *Client) Events(ctx context.Context, stack string, index uint64, wait time.Duration) (api.EventsResponse, error) {
	ctx, cancel := blockCtx(ctx, wait)
	defer cancel()
	var out api.EventsResponse
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/stacks/" + esc(stack) + "/events" + blockingQuery(index, wait), out: &out})
	return out, err
}

// Console copies the serial console log of a resource to w.
func (c *Client) Console(ctx context.Context, stack, address string, w io.Writer) error {
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/stacks/" + esc(stack) + "/resources/" + esc(address) + "/console", out: w})
	return err
}

// Operation returns an operation; with index > 0 it waits up to wait for
// the operation to change past index. The returned index is the one to pass
// next time.
func (c *Client) Operation(ctx context.Context, id string, index uint64, wait time.Duration) (api.Operation, uint64, error) {
	ctx, cancel := blockCtx(ctx, wait)
	defer cancel()
	var out api.Operation
	r, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/operations/" + esc(id) + blockingQuery(index, wait), out: &out})
	return out, r.index, err
}

// CancelOperation cancels an operation: no new action starts.
func (c *Client) CancelOperation(ctx context.Context, id string) (api.Operation, error) {
	var out api.Operation
	_, err := c.do(ctx, request{method: http.MethodPost, path: "/v1/operations/" + esc(id) + "/cancel", out: &out})
	return out, err
}

// Tokens lists the tokens (admin).
func (c *Client) Tokens(ctx context.Context) ([]api.TokenInfo, error) {
	var out []api.TokenInfo
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/tokens", out: &out})
	return out, err
}

// CreateToken makes a token; its secret is in the answer only.
func (c *Client) CreateToken(ctx context.Context, req api.TokenRequest) (api.TokenCreated, error) {
	var out api.TokenCreated
	_, err := c.do(ctx, request{method: http.MethodPost, path: "/v1/tokens", body: req, out: &out})
	return out, err
}

// RevokeToken deletes a token.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	_, err := c.do(ctx, request{method: http.MethodDelete, path: "/v1/tokens/" + esc(id)})
	return err
}

// Agents lists the agents.
func (c *Client) Agents(ctx context.Context) ([]api.AgentInfo, error) {
	var out []api.AgentInfo
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/agents", out: &out})
	return out, err
}

// RevokeAgent revokes an agent's credentials (global admin): it gets 401
// and no work until a global admin registers it again.
func (c *Client) RevokeAgent(ctx context.Context, id string) (api.AgentInfo, error) {
	var out api.AgentInfo
	_, err := c.do(ctx, request{method: http.MethodPost, path: "/v1/agents/" + esc(id) + "/revoke", out: &out})
	return out, err
}

// RegisterAgent registers (or re-registers) an agent.
func (c *Client) RegisterAgent(ctx context.Context, req api.AgentRegister) (api.AgentInfo, error) {
	var out api.AgentInfo
	_, err := c.do(ctx, request{method: http.MethodPost, path: "/v1/agents", body: req, out: &out})
	return out, err
}

// Heartbeat keeps an agent up.
func (c *Client) Heartbeat(ctx context.Context, id string, hb api.AgentHeartbeat) error {
	_, err := c.do(ctx, request{method: http.MethodPost, path: "/v1/agents/" + esc(id) + "/heartbeat", body: hb})
	return err
}

// Work waits up to wait for work assigned to an agent past index. The
// items' attribute values decode exactly (planner.Values).
func (c *Client) Work(ctx context.Context, agentID string, index uint64, wait time.Duration) (api.WorkResponse, error) {
	var out api.WorkResponse
	err := c.agentQuery(ctx, agentID, "work", index, wait, &out)
	return out, err
}

// agentQuery is a blocking query of one of an agent's routes (work,
// hostwork) past index, decoded into out.
func (c *Client) agentQuery(ctx context.Context, agentID, route string, index uint64, wait time.Duration, out any) error {
	ctx, cancel := blockCtx(ctx, wait)
	defer cancel()
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/agents/" + esc(agentID) + "/" + route + blockingQuery(index, wait), out: out})
	return err
}

// Report sends an agent's result for one work item.
func (c *Client) Report(ctx context.Context, agentID string, rep api.ActionReport) error {
	_, err := c.do(ctx, request{method: http.MethodPost, path: "/v1/agents/" + esc(agentID) + "/results", body: rep})
	return err
}

// Images lists the cached images of every agent.
func (c *Client) Images(ctx context.Context) ([]api.ImageInfo, error) {
	var out []api.ImageInfo
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/images", out: &out})
	return out, err
}

// PruneImages asks the agents to remove images no stack uses.
func (c *Client) PruneImages(ctx context.Context) (json.RawMessage, error) {
	var out json.RawMessage
	_, err := c.do(ctx, request{method: http.MethodPost, path: "/v1/images/prune", out: &out})
	return out, err
}

// GC lists (and with force removes) kiln-tagged objects no stack owns.
func (c *Client) GC(ctx context.Context, force bool) (api.GCReport, error) {
	var out api.GCReport
	p := "/v1/gc?force=false"
	if force {
		p = "/v1/gc?force=true"
	}
	_, err := c.do(ctx, request{method: http.MethodGet, path: p, out: &out})
	return out, err
}

// Peers lists the raft servers.
func (c *Client) Peers(ctx context.Context) ([]api.Peer, error) {
	var out []api.Peer
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/operator/raft/peers", out: &out})
	return out, err
}

// Join adds a server to the raft configuration.
func (c *Client) Join(ctx context.Context, req api.JoinRequest) error {
	_, err := c.do(ctx, request{method: http.MethodPost, path: "/v1/operator/raft/peers", body: req})
	return err
}

// RemovePeer removes a server from the raft configuration.
func (c *Client) RemovePeer(ctx context.Context, id string) error {
	_, err := c.do(ctx, request{method: http.MethodDelete, path: "/v1/operator/raft/peers/" + esc(id)})
	return err
}

// SnapshotSave copies a snapshot of the state to w.
func (c *Client) SnapshotSave(ctx context.Context, w io.Writer) error {
	_, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/operator/snapshot", out: w})
	return err
}

// SnapshotRestore replaces the state with the snapshot read from r.
func (c *Client) SnapshotRestore(ctx context.Context, r io.Reader) error {
	_, err := c.do(ctx, request{method: http.MethodPut, path: "/v1/operator/snapshot", body: r, ctype: "application/octet-stream"})
	return err
}
