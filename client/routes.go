package client

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/kiln-dev/kiln/api"
)

// call sends one request and decodes its answer into a T (the raw body for
// a []byte).
func call[T any](ctx context.Context, c *Client, method, path string, body any) (T, error) {
	var out T
	_, err := c.do(ctx, request{method: method, path: path, body: body, out: &out})
	return out, err
}

// send sends one request whose answer has nothing to keep.
func (c *Client) send(ctx context.Context, method, path string, body any) error {
	_, err := c.do(ctx, request{method: method, path: path, body: body})
	return err
}

// watch is a blocking query: GET path past index, waiting up to wait for a
// change. It returns the index to pass next time.
func watch[T any](ctx context.Context, c *Client, path string, index uint64, wait time.Duration) (T, uint64, error) {
	ctx, cancel := blockCtx(ctx, wait)
	defer cancel()
	var out T
	r, err := c.do(ctx, request{method: http.MethodGet, path: path + blockingQuery(index, wait), out: &out})
	return out, r.index, err
}

// Health answers GET /v1/health of the server that answers first.
func (c *Client) Health(ctx context.Context) (api.Health, error) {
	return call[api.Health](ctx, c, http.MethodGet, "/v1/health", nil)
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
	return call[[]byte](ctx, c, http.MethodGet, "/metrics", nil)
}

// Stacks lists the stacks the token can see.
func (c *Client) Stacks(ctx context.Context) ([]api.StackSummary, error) {
	return call[[]api.StackSummary](ctx, c, http.MethodGet, "/v1/stacks", nil)
}

// Stack returns one stack.
func (c *Client) Stack(ctx context.Context, stack string) (api.StackDetail, error) {
	return call[api.StackDetail](ctx, c, http.MethodGet, "/v1/stacks/"+esc(stack), nil)
}

// DeleteStack destroys a stack and then forgets it.
func (c *Client) DeleteStack(ctx context.Context, stack string) (api.OperationRef, error) {
	return call[api.OperationRef](ctx, c, http.MethodDelete, "/v1/stacks/"+esc(stack), nil)
}

// Plan plans a stack against its actual state. A template with errors
// answers a *Error with StatusCode 400; PlanWithDiagnostics returns the
// diagnostics too.
func (c *Client) Plan(ctx context.Context, stack string, req api.PlanRequest) (api.PlanResponse, error) {
	return call[api.PlanResponse](ctx, c, http.MethodPost, "/v1/stacks/"+esc(stack)+"/plan", req)
}

// PlanDiagnostics is like Plan but on a 400 also decodes the diagnostics
// the server sent.
func (c *Client) PlanDiagnostics(ctx context.Context, stack string, req api.PlanRequest) (api.PlanResponse, []api.Diagnostic, error) {
	raw, err := call[[]byte](ctx, c, http.MethodPost, "/v1/stacks/"+esc(stack)+"/plan", req)
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
	return call[api.OperationRef](ctx, c, http.MethodPost, "/v1/stacks/"+esc(stack)+"/apply", req)
}

// Destroy destroys every resource of a stack.
func (c *Client) Destroy(ctx context.Context, stack string) (api.OperationRef, error) {
	return call[api.OperationRef](ctx, c, http.MethodPost, "/v1/stacks/"+esc(stack)+"/destroy", api.DestroyRequest{})
}

// Renew sets a stack's TTL to ttl from now.
func (c *Client) Renew(ctx context.Context, stack string, ttl time.Duration) (api.StackDetail, error) {
	return call[api.StackDetail](ctx, c, http.MethodPost, "/v1/stacks/"+esc(stack)+"/renew", api.RenewRequest{TTL: ttl.String()})
}

// Outputs returns a stack's outputs (never a nil map); sensitive asks for
// sensitive values in clear (member or admin).
func (c *Client) Outputs(ctx context.Context, stack string, sensitive bool) (map[string]api.OutputValue, error) {
	p := "/v1/stacks/" + esc(stack) + "/outputs"
	if sensitive {
		p += "?sensitive=true"
	}
	out, err := call[map[string]api.OutputValue](ctx, c, http.MethodGet, p, nil)
	if out == nil {
		out = map[string]api.OutputValue{}
	}
	return out, err
}

// Events returns the events of a stack after index, waiting up to wait for
// one when there are none yet (a blocking query; wait 0 answers at once).
func (c *Client) Events(ctx context.Context, stack string, index uint64, wait time.Duration) (api.EventsResponse, error) {
	out, _, err := watch[api.EventsResponse](ctx, c, "/v1/stacks/"+esc(stack)+"/events", index, wait)
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
	return watch[api.Operation](ctx, c, "/v1/operations/"+esc(id), index, wait)
}

// OperationChanges is Operation with only the actions changed after state
// index since (the index an earlier answer returned); the operation's other
// fields are whole. It blocks like Operation while index is not passed.
func (c *Client) OperationChanges(ctx context.Context, id string, since, index uint64, wait time.Duration) (api.Operation, uint64, error) {
	ctx, cancel := blockCtx(ctx, wait)
	defer cancel()
	q := blockingQuery(index, wait)
	if q == "" {
		q = "?"
	} else {
		q += "&"
	}
	var out api.Operation
	r, err := c.do(ctx, request{method: http.MethodGet, path: "/v1/operations/" + esc(id) + q + "since=" + strconv.FormatUint(since, 10), out: &out})
	return out, r.index, err
}

// CancelOperation cancels an operation: no new action starts.
func (c *Client) CancelOperation(ctx context.Context, id string) (api.Operation, error) {
	return call[api.Operation](ctx, c, http.MethodPost, "/v1/operations/"+esc(id)+"/cancel", nil)
}

// Tokens lists the tokens (admin).
func (c *Client) Tokens(ctx context.Context) ([]api.TokenInfo, error) {
	return call[[]api.TokenInfo](ctx, c, http.MethodGet, "/v1/tokens", nil)
}

// CreateToken makes a token; its secret is in the answer only.
func (c *Client) CreateToken(ctx context.Context, req api.TokenRequest) (api.TokenCreated, error) {
	return call[api.TokenCreated](ctx, c, http.MethodPost, "/v1/tokens", req)
}

// RevokeToken deletes a token.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	return c.send(ctx, http.MethodDelete, "/v1/tokens/"+esc(id), nil)
}

// Agents lists the agents.
func (c *Client) Agents(ctx context.Context) ([]api.AgentInfo, error) {
	return call[[]api.AgentInfo](ctx, c, http.MethodGet, "/v1/agents", nil)
}

// RevokeAgent revokes an agent's credentials (global admin): it gets 401
// and no work until a global admin registers it again.
func (c *Client) RevokeAgent(ctx context.Context, id string) (api.AgentInfo, error) {
	return call[api.AgentInfo](ctx, c, http.MethodPost, "/v1/agents/"+esc(id)+"/revoke", nil)
}

// RegisterAgent registers (or re-registers) an agent.
func (c *Client) RegisterAgent(ctx context.Context, req api.AgentRegister) (api.AgentInfo, error) {
	return call[api.AgentInfo](ctx, c, http.MethodPost, "/v1/agents", req)
}

// Heartbeat keeps an agent up.
func (c *Client) Heartbeat(ctx context.Context, id string, hb api.AgentHeartbeat) error {
	return c.send(ctx, http.MethodPost, "/v1/agents/"+esc(id)+"/heartbeat", hb)
}

// Work waits up to wait for work assigned to an agent past index. The
// items' attribute values decode exactly (planner.Values).
func (c *Client) Work(ctx context.Context, agentID string, index uint64, wait time.Duration) (api.WorkResponse, error) {
	out, _, err := watch[api.WorkResponse](ctx, c, "/v1/agents/"+esc(agentID)+"/work", index, wait)
	return out, err
}

// Report sends an agent's result for one work item. It returns the state
// index at which the servers took it (0 when the server does not say).
func (c *Client) Report(ctx context.Context, agentID string, rep api.ActionReport) (uint64, error) {
	r, err := c.do(ctx, request{method: http.MethodPost, path: "/v1/agents/" + esc(agentID) + "/results", body: rep})
	return r.index, err
}

// Images lists the cached images of every agent.
func (c *Client) Images(ctx context.Context) ([]api.ImageInfo, error) {
	return call[[]api.ImageInfo](ctx, c, http.MethodGet, "/v1/images", nil)
}

// PruneImages asks the agents to remove images no stack uses.
func (c *Client) PruneImages(ctx context.Context) (json.RawMessage, error) {
	return call[json.RawMessage](ctx, c, http.MethodPost, "/v1/images/prune", nil)
}

// GC lists (and with force removes) kiln-tagged objects no stack owns.
func (c *Client) GC(ctx context.Context, force bool) (api.GCReport, error) {
	p := "/v1/gc?force=false"
	if force {
		p = "/v1/gc?force=true"
	}
	return call[api.GCReport](ctx, c, http.MethodGet, p, nil)
}

// Peers lists the raft servers.
func (c *Client) Peers(ctx context.Context) ([]api.Peer, error) {
	return call[[]api.Peer](ctx, c, http.MethodGet, "/v1/operator/raft/peers", nil)
}

// Join adds a server to the raft configuration.
func (c *Client) Join(ctx context.Context, req api.JoinRequest) error {
	return c.send(ctx, http.MethodPost, "/v1/operator/raft/peers", req)
}

// RemovePeer removes a server from the raft configuration.
func (c *Client) RemovePeer(ctx context.Context, id string) error {
	return c.send(ctx, http.MethodDelete, "/v1/operator/raft/peers/"+esc(id), nil)
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
