package agent

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/daemon/api"
	"github.com/kiln-dev/kiln/daemon/client"
	"github.com/kiln-dev/kiln/executors"
)

// Host operations: requests about the host itself rather than about one
// resource of one stack (`kiln image list`, `kiln image prune`, `kiln gc`,
// `kiln console`). They travel as api.WorkItem with Kind HostKind and one
// of the Host* ops, but not through Raft: they are questions asked by the
// leader and answered once, with answers (a console log) too big for the
// log. The agent fetches them with a blocking query that the servers
// forward to the leader (GET /v1/agents/{id}/hostwork) and answers with
// POST /v1/agents/{id}/hostresults; the leader hands the answer to the
// HTTP request that waits for it. Parameters and answers are in
// WorkItem.Attrs and ActionReport.Attrs, in the planner's tagged encoding:
//
//	images   ->  {"images": [{"sha256", "format", "size"}]}
//	prune    {"in_use": [sha256...]}  ->  {"removed": [{"sha256", "format", "size"}]}
//	gc       {"owned": {stack: [address...]}, "busy": [stack...], "force": bool}
//	         ->  {"orphans": [{"kind", "name", "owner"}], "removed": bool}
//	console  {"stack", "name" (domain name), "offset", "max"}
//	         ->  {"text", "next", "size"}

// HostKind is the Kind of a host work item.
const HostKind = "host"

// Host ops.
const (
	HostImages  = "images"
	HostPrune   = "prune"
	HostGC      = "gc"
	HostConsole = "console"
)

// ConsoleMax caps the console text one answer carries (the tail of the
// log when it is longer).
const ConsoleMax = 256 << 10

// HostOps is what a driver set can do on its host besides actions. The
// real drivers (Real) and the memory set (Memory) implement it.
type HostOps interface {
	// Images lists the cached images (Agent left empty).
	Images(ctx context.Context) ([]api.ImageInfo, error)
	// PruneImages removes the cached images whose sha256 is not in inUse
	// and returns them.
	PruneImages(ctx context.Context, inUse map[string]bool) ([]api.ImageInfo, error)
	// Orphans lists the objects tagged by kiln that owned disowns.
	Orphans(ctx context.Context, owned func(stack, address string) bool) ([]api.Orphan, error)
	// RemoveOrphans removes what Orphans listed.
	RemoveOrphans(ctx context.Context, orphans []api.Orphan) error
	// Console reads the serial console log of the server whose domain is
	// name, from offset (the last max bytes when offset < 0).
	Console(ctx context.Context, stack, name string, offset, max int64) (ConsoleChunk, error)
}

// ConsoleChunk is a piece of a console log.
type ConsoleChunk struct {
	Text []byte
	// Next is the offset to read from next time; Size the log's size.
	Next, Size int64
}

// hostOpsOf finds the HostOps of a driver set.
func hostOpsOf(d Drivers) (HostOps, bool) {
	if r, err := realOf(d); err == nil {
		return r, true
	}
	for _, k := range d {
		if mk, ok := k.(memKind); ok {
			return mk.m, true
		}
	}
	return nil, false
}

// hostWork loops on the blocking query for host work.
func (a *Agent) hostWork(ctx context.Context) {
	var index uint64
	for ctx.Err() == nil {
		resp, err := a.c().HostWork(ctx, a.id, index, a.cfg.Wait)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if client.StatusCode(err) != http.StatusNotFound {
				a.log.Warn("host work query failed", "err", err)
			}
			index = 0
			if !sleep(ctx, time.Second) {
				return
			}
			continue
		}
		if resp.Index < index {
			index = 0 // another leader: its sequence is its own
		} else {
			index = resp.Index
		}
		for _, it := range resp.Items {
			a.takeHost(ctx, it)
		}
	}
}

// takeHost runs a host item once (the leader may hand it out again while
// it runs) and sends its answer.
func (a *Agent) takeHost(ctx context.Context, it api.WorkItem) {
	k := itemKey{work: it.WorkID, op: it.Op}
	a.once(k, func() (api.ActionReport, bool) { return a.runHost(ctx, it), true }, func(rep api.ActionReport) {
		for i := 0; i < 10 && ctx.Err() == nil; i++ {
			err := a.c().HostReport(ctx, a.id, rep)
			code := client.StatusCode(err)
			if err == nil || (code >= 400 && code < 500) {
				return // taken, or nobody waits for it any more
			}
			if !sleep(ctx, 300*time.Millisecond) {
				return
			}
		}
	})
}

// runHost answers one host item.
func (a *Agent) runHost(ctx context.Context, it api.WorkItem) api.ActionReport {
	rep := api.ActionReport{Op: it.Op, Address: it.Address, WorkID: it.WorkID}
	if it.Op == HostRefresh {
		return a.answerRefresh(ctx, it, rep)
	}
	h, ok := hostOpsOf(a.cfg.Drivers)
	if !ok {
		rep.Refused = true
		rep.Error = fmt.Sprintf("agent %s cannot do host operations with its drivers", a.id)
		return rep
	}
	p, err := api.DecodeValues(it.Attrs)
	if err != nil {
		rep.Error = fmt.Sprintf("decode %s request: %v", it.Op, err)
		return rep
	}
	out, err := runHostOp(ctx, h, it.Op, p)
	if out != nil {
		enc, eerr := api.EncodeValues(out)
		if eerr != nil {
			rep.Error = fmt.Sprintf("encode %s answer: %v", it.Op, eerr)
			return rep
		}
		rep.Attrs = enc
	}
	if err != nil {
		a.log.Warn("host operation failed", "op", it.Op, "err", err)
		rep.Error = err.Error()
		return rep
	}
	rep.OK = true
	return rep
}

func runHostOp(ctx context.Context, h HostOps, op string, p map[string]any) (map[string]any, error) {
	switch op {
	case HostImages:
		imgs, err := h.Images(ctx)
		if err != nil {
			return nil, err
		}
		return map[string]any{"images": imagesValue(imgs)}, nil
	case HostPrune:
		inUse := map[string]bool{}
		for _, s := range stringList(p["in_use"]) {
			inUse[s] = true
		}
		removed, err := h.PruneImages(ctx, inUse)
		return map[string]any{"removed": imagesValue(removed)}, err
	case HostGC:
		owned := map[string]map[string]bool{}
		if m, ok := p["owned"].(map[string]any); ok {
			for stack, l := range m {
				owned[stack] = map[string]bool{}
				for _, addr := range stringList(l) {
					owned[stack][addr] = true
				}
			}
		}
		busy := map[string]bool{}
		for _, s := range stringList(p["busy"]) {
			busy[s] = true
		}
		orphans, err := h.Orphans(ctx, func(stack, address string) bool {
			return busy[stack] || owned[stack][address]
		})
		if err != nil {
			return nil, err
		}
		force, _ := p["force"].(bool)
		out := map[string]any{"orphans": orphansValue(orphans), "removed": false}
		if force && len(orphans) > 0 {
			if err := h.RemoveOrphans(ctx, orphans); err != nil {
				return out, err
			}
			out["removed"] = true
		}
		return out, nil
	case HostConsole:
		stack, _ := p["stack"].(string)
		project, _ := p["project"].(string)
		stack = executors.Scope(project, stack)
		name, _ := p["name"].(string)
		if name == "" || strings.ContainsAny(name, "/\\") || name == "." || name == ".." {
			return nil, fmt.Errorf("console: bad domain name %q", name)
		}
		offset, max := int64(-1), int64(ConsoleMax)
		if v, ok := p["offset"].(int64); ok {
			offset = v
		}
		if v, ok := p["max"].(int64); ok && v > 0 && v < max {
			max = v
		}
		c, err := h.Console(ctx, stack, name, offset, max)
		if err != nil {
			return nil, err
		}
		return map[string]any{"text": string(c.Text), "next": c.Next, "size": c.Size}, nil
	}
	return nil, fmt.Errorf("unknown host operation %q", op)
}

func stringList(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, e := range l {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func imagesValue(imgs []api.ImageInfo) []any {
	out := make([]any, 0, len(imgs))
	for _, i := range imgs {
		out = append(out, map[string]any{"sha256": i.SHA256, "format": i.Format, "size": i.Size})
	}
	return out
}

func orphansValue(os []api.Orphan) []any {
	out := make([]any, 0, len(os))
	for _, o := range os {
		out = append(out, map[string]any{"kind": o.Kind, "name": o.Name, "owner": o.Owner})
	}
	return out
}

// answerRefresh answers a refresh item (see refresh).
func (a *Agent) answerRefresh(ctx context.Context, it api.WorkItem, rep api.ActionReport) api.ActionReport {
	p, err := api.DecodeValues(it.Attrs)
	if err != nil {
		rep.Error = fmt.Sprintf("decode refresh request: %v", err)
		return rep
	}
	out, err := a.refresh(ctx, p)
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	if rep.Attrs, err = api.EncodeValues(out); err != nil {
		rep.Error = fmt.Sprintf("encode refresh answer: %v", err)
		return rep
	}
	rep.OK = true
	return rep
}
