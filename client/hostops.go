package client

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/kiln-dev/kiln/api"
)

// Host operations between an agent and the leader (the protocol is in
// api's hostops.go): the blocking query for host work, the answers,
// and the progress events of long actions.

// HostWork waits up to wait for host work (refresh, image list, prune, gc,
// console) for an agent past index. The servers forward it to the leader,
// which alone holds these requests.
func (c *Client) HostWork(ctx context.Context, agentID string, index uint64, wait time.Duration) (api.HostWorkResponse, error) {
	out, _, err := watch[api.HostWorkResponse](ctx, c, "/v1/agents/"+esc(agentID)+"/hostwork", index, wait)
	return out, err
}

// HostReport sends an agent's answer to a host request.
func (c *Client) HostReport(ctx context.Context, agentID string, rep api.HostAnswer) error {
	return c.send(ctx, http.MethodPost, "/v1/agents/"+esc(agentID)+"/hostresults", rep)
}

// AgentEvent adds an event from an agent to the stack of an operation (the
// progress of an image download).
func (c *Client) AgentEvent(ctx context.Context, agentID string, ev api.Event) error {
	return c.send(ctx, http.MethodPost, "/v1/agents/"+esc(agentID)+"/events", ev)
}

// ConsoleChunk is a piece of a console log: GET .../console?offset=N
// answers it as JSON.
type ConsoleChunk = api.ConsoleChunk

// ConsoleFrom returns the serial console log of a server from offset (at
// most 256 KiB; the last 256 KiB when offset < 0), for following it.
func (c *Client) ConsoleFrom(ctx context.Context, stack, address string, offset int64) (ConsoleChunk, error) {
	p := "/v1/stacks/" + esc(stack) + "/resources/" + esc(address) + "/console?offset=" + strconv.FormatInt(offset, 10)
	return call[ConsoleChunk](ctx, c, http.MethodGet, p, nil)
}
