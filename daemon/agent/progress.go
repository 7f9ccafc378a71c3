package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/executors/image"
	"github.com/kiln-dev/kiln/executors/server"
)

// Progress of long actions (an image download), reported as events of the
// action's stack: the agent posts them to POST /v1/agents/{id}/events and
// the leader appends them to the stack's events.

type progressKey struct{}

// Progress throttling: an event every progressStep of the total or every
// progressEvery, whichever comes first, and one at the end.
const (
	progressStep  = 10
	progressEvery = 2 * time.Second
)

// withEvents returns a context whose fetchProgress reports go to the stack
// of it as events, and a function that waits (briefly) for the events
// queued to be sent.
func (a *Agent) withEvents(ctx context.Context, it api.WorkItem) (context.Context, func()) {
	ch := make(chan string, 32)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for msg := range ch {
			ev := api.Event{Stack: it.Stack, Operation: it.OperationID, Address: it.Address, Level: "info", Message: msg}
			pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if err := a.c().AgentEvent(pctx, a.id, ev); err != nil {
				a.log.Warn("progress event", "address", it.Address, "err", err)
			}
			cancel()
		}
	}()
	emit := func(msg string) {
		select {
		case ch <- msg:
		default: // never hold the action up for an event
		}
	}
	return context.WithValue(ctx, progressKey{}, emit), func() {
		close(ch)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	}
}

// fetchProgress returns the image.Progress of an action: throttled events
// "image.base: fetched 40% (12.0 MiB of 30.0 MiB)", and at the end the size
// and duration. It is nil when ctx carries no event sink.
func fetchProgress(ctx context.Context, address string) image.Progress {
	emit, _ := ctx.Value(progressKey{}).(func(string))
	if emit == nil {
		return nil
	}
	start := time.Now()
	last := start
	nextPct := int64(progressStep)
	finished := false
	return func(done, total int64) {
		if finished {
			return
		}
		now := time.Now()
		switch {
		case total > 0 && done >= total:
			finished = true
			emit(fmt.Sprintf("%s: fetched %s in %s", address, mib(done), now.Sub(start).Round(10*time.Millisecond)))
		case total > 0:
			pct := done * 100 / total
			if pct < nextPct && now.Sub(last) < progressEvery {
				return
			}
			for nextPct <= pct {
				nextPct += progressStep
			}
			last = now
			emit(fmt.Sprintf("%s: fetched %d%% (%s of %s)", address, pct, mib(done), mib(total)))
		default: // size unknown
			if now.Sub(last) < progressEvery {
				return
			}
			last = now
			emit(fmt.Sprintf("%s: fetched %s", address, mib(done)))
		}
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// serverProgress sends the driver's "booting" and "ready after" lines as
// events of the action's stack.
func serverProgress(ctx context.Context, address string) server.Progress {
	emit, _ := ctx.Value(progressKey{}).(func(string))
	if emit == nil {
		return nil
	}
	return func(msg string) { emit(address + ": " + msg) }
}
