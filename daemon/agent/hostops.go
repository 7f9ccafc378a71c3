package agent

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/client"
	"github.com/kiln-dev/kiln/executors"
)

// Host operations: questions about the host itself rather than about one
// resource of one stack (the refresh of a plan, `kiln image list`, `kiln
// image prune`, `kiln gc`, `kiln console`). The protocol, the op names and
// their typed requests and answers are in api's hostops.go.

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
	poll(ctx, time.Second, func(index uint64) ([]api.HostRequest, uint64, error) {
		resp, err := a.c().HostWork(ctx, a.id, index, a.cfg.Wait)
		return resp.Items, resp.Index, err
	}, func(err error) {
		if client.StatusCode(err) != http.StatusNotFound {
			a.log.Warn("host work query failed", "err", err)
		}
	}, func(it api.HostRequest, _ uint64) { a.takeHost(ctx, it) })
}

type hostKey struct {
	work string
	op   api.HostOp
}

// takeHost runs a host request once (the leader may hand it out again
// while it runs) and sends its answer.
func (a *Agent) takeHost(ctx context.Context, it api.HostRequest) {
	k := hostKey{work: it.WorkID, op: it.Op}
	a.hosts.once(&a.wg, k, 0, func() (api.HostAnswer, bool) { return a.runHost(ctx, it), true }, func(rep api.HostAnswer) {
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

// runHost answers one host request. A request that is not well formed
// (an unknown op, or its fields do not match its op) is refused, naming
// what is wrong.
func (a *Agent) runHost(ctx context.Context, it api.HostRequest) api.HostAnswer {
	ans := api.HostAnswer{WorkID: it.WorkID, Op: it.Op}
	if err := it.Check(); err != nil {
		ans.Refused = true
		ans.Error = fmt.Sprintf("agent %s: %v", a.id, err)
		return ans
	}
	var err error
	if it.Op == api.HostRefresh {
		ans.Refresh, err = a.refresh(ctx, *it.Refresh)
	} else {
		h, ok := hostOpsOf(a.cfg.Drivers)
		if !ok {
			ans.Refused = true
			ans.Error = fmt.Sprintf("agent %s cannot do host operations with its drivers", a.id)
			return ans
		}
		err = runHostOp(ctx, h, it, &ans)
		if err != nil {
			a.log.Warn("host operation failed", "op", it.Op, "err", err)
		}
	}
	if err != nil {
		ans.Error = err.Error()
		return ans
	}
	ans.OK = true
	return ans
}

// runHostOp runs a checked request of one of the HostOps and sets its
// answer in ans (also, when there is one, the part done before an error).
func runHostOp(ctx context.Context, h HostOps, it api.HostRequest, ans *api.HostAnswer) error {
	switch it.Op {
	case api.HostImages:
		imgs, err := h.Images(ctx)
		if err != nil {
			return err
		}
		ans.Images = &api.ImagesAnswer{Images: nonNil(imgs)}
		return nil
	case api.HostPrune:
		inUse := map[string]bool{}
		for _, s := range it.Prune.InUse {
			inUse[s] = true
		}
		removed, err := h.PruneImages(ctx, inUse)
		ans.Prune = &api.PruneAnswer{Removed: nonNil(removed)}
		return err
	case api.HostGC:
		return gc(ctx, h, *it.GC, ans)
	case api.HostConsole:
		return console(ctx, h, *it.Console, ans)
	}
	return fmt.Errorf("unknown host operation %q", it.Op)
}

func gc(ctx context.Context, h HostOps, req api.GCRequest, ans *api.HostAnswer) error {
	owned := map[string]map[string]bool{}
	for stack, l := range req.Owned {
		owned[stack] = map[string]bool{}
		for _, addr := range l {
			owned[stack][addr] = true
		}
	}
	busy := map[string]bool{}
	for _, s := range req.Busy {
		busy[s] = true
	}
	orphans, err := h.Orphans(ctx, func(stack, address string) bool {
		return busy[stack] || owned[stack][address]
	})
	if err != nil {
		return err
	}
	ans.GC = &api.GCAnswer{Orphans: nonNil(orphans)}
	if req.Force && len(orphans) > 0 {
		if err := h.RemoveOrphans(ctx, orphans); err != nil {
			return err
		}
		ans.GC.Removed = true
	}
	return nil
}

func console(ctx context.Context, h HostOps, req api.ConsoleRequest, ans *api.HostAnswer) error {
	stack := executors.Scope(req.Project, req.Stack)
	name := req.Name
	if name == "" || strings.ContainsAny(name, "/\\") || name == "." || name == ".." {
		return fmt.Errorf("console: bad domain name %q", name)
	}
	max := int64(api.ConsoleMax)
	if req.Max > 0 && req.Max < max {
		max = req.Max
	}
	c, err := h.Console(ctx, stack, name, req.Offset, max)
	if err != nil {
		return err
	}
	ans.Console = &api.ConsoleChunk{Text: string(c.Text), Next: c.Next, Size: c.Size}
	return nil
}

// nonNil answers an empty list for none (the answers' lists are never
// null on the wire).
func nonNil[T any](l []T) []T {
	if l == nil {
		return []T{}
	}
	return l
}
