package cli

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/api"
)

// opFinal reports whether an operation status is final.
func opFinal(status string) bool {
	switch strings.ToLower(status) {
	case "done", "complete", "failed", "cancelled":
		return true
	}
	return false
}

// opSucceeded reports whether a final operation succeeded.
func opSucceeded(status string) bool {
	s := strings.ToLower(status)
	return s == "done" || s == "complete"
}

// follow waits for an operation to finish with blocking queries, printing
// one line per action each time its state changes (unless quiet). It
// returns the last operation seen; err is ctx's error when ctx ended first.
func (e *Env) follow(ctx context.Context, r *remote, id string, quiet bool) (api.Operation, error) {
	seen := map[string]string{}
	var out sync.Mutex // action lines and progress lines share stdout
	if !quiet {
		pctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		defer func() { stop(); <-done }()
		go func() {
			defer close(done)
			e.followProgress(pctx, r, id, &out)
		}()
	}
	var (
		index uint64
		last  api.Operation
		fails int
		pace  pacer
		all   actionSet // every action, as the changes come in
	)
	for {
		if !pace.wait(ctx) {
			return last, ctx.Err()
		}
		var (
			op  api.Operation
			idx uint64
			err error
		)
		if index == 0 {
			op, idx, err = r.c.Operation(ctx, id, 0, 0)
		} else {
			// Only what changed since the last answer: a large operation
			// is not sent whole each time.
			op, idx, err = r.c.OperationChanges(ctx, id, index, index, 30*time.Second)
		}
		if err != nil {
			if ctx.Err() != nil {
				return last, ctx.Err()
			}
			fails++
			if fails > 5 {
				return last, err
			}
			select {
			case <-ctx.Done():
				return last, ctx.Err()
			case <-time.After(time.Duration(fails) * 200 * time.Millisecond):
			}
			continue
		}
		fails = 0
		all.merge(op.Actions)
		last = op
		last.Actions = all.list()
		if !quiet {
			for _, a := range op.Actions {
				if seen[a.Address] == a.Status {
					continue
				}
				seen[a.Address] = a.Status
				if a.Status == "pending" {
					continue
				}
				out.Lock()
				e.actionLine(a)
				out.Unlock()
			}
		}
		if opFinal(op.Status) {
			return last, nil
		}
		if idx > index {
			index = idx
		} else if index == 0 {
			index = 1
		}
	}
}

// actionSet is an operation's actions in the order first seen, kept up to
// date with the changed ones.
type actionSet struct {
	actions []api.ActionStatus
	pos     map[string]int
}

// merge takes in changed actions.
func (s *actionSet) merge(changed []api.ActionStatus) {
	if s.pos == nil {
		s.pos = map[string]int{}
	}
	for _, a := range changed {
		if i, ok := s.pos[a.Address]; ok {
			s.actions[i] = a
			continue
		}
		s.pos[a.Address] = len(s.actions)
		s.actions = append(s.actions, a)
	}
}

// list returns a copy of every action.
func (s *actionSet) list() []api.ActionStatus {
	return append([]api.ActionStatus{}, s.actions...)
}

// followProgress prints the agents' progress lines of operation id (an
// image download, a server booting and becoming ready) as they come, until
// ctx ends.
func (e *Env) followProgress(ctx context.Context, r *remote, id string, out *sync.Mutex) {
	op, _, err := r.c.Operation(ctx, id, 0, 0)
	if err != nil || op.Stack == "" {
		return
	}
	// Start after the events already there.
	first, err := r.c.Events(ctx, op.Stack, 0, 0)
	if err != nil {
		return
	}
	index := first.Index
	var pace pacer
	for pace.wait(ctx) {
		resp, err := r.c.Events(ctx, op.Stack, index, 30*time.Second)
		if err != nil {
			if !sleepCtx(ctx, time.Second) {
				return
			}
			continue
		}
		for _, ev := range resp.Events {
			if ev.Index <= index || ev.Operation != id || ev.Node == "" || ev.Address == "" || !strings.HasPrefix(ev.Message, ev.Address+": ") {
				continue
			}
			out.Lock()
			fmt.Fprintf(e.Stdout, "  %-28s %s\n", ev.Address, strings.TrimPrefix(ev.Message, ev.Address+": "))
			out.Unlock()
		}
		if resp.Index > index {
			index = resp.Index
		}
	}
}

// followInterval is the shortest time between two blocking queries of one
// follow: a large operation changes at every raft entry, and each answer
// carries every action, so following it query by query would cost the
// server (and the terminal) more than the operation. Lines still come in
// order, at most this late.
const followInterval = 200 * time.Millisecond

// pacer spaces the queries of a follow by followInterval.
type pacer struct{ last time.Time }

// wait waits until followInterval has passed since the last query, and
// reports whether ctx is still live.
func (p *pacer) wait(ctx context.Context) bool {
	if d := followInterval - time.Since(p.last); !p.last.IsZero() && d > 0 {
		if !sleepCtx(ctx, d) {
			return false
		}
	}
	p.last = time.Now()
	return ctx.Err() == nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (e *Env) actionLine(a api.ActionStatus) {
	elapsed := ""
	switch {
	case !a.Started.IsZero() && !a.Finished.IsZero():
		elapsed = " after " + roundDur(a.Finished.Sub(a.Started))
	case !a.Started.IsZero():
		elapsed = " (" + roundDur(time.Since(a.Started)) + " so far)"
	}
	where := ""
	if a.Agent != "" {
		where = " on " + a.Agent
	}
	line := fmt.Sprintf("  %-28s %-8s %s%s%s", a.Address, a.Action, a.Status, where, elapsed)
	if a.ReadySeconds > 0 {
		line += fmt.Sprintf(", ready after %.1fs", a.ReadySeconds)
	}
	if a.Error != "" {
		line += ": " + a.Error
	}
	fmt.Fprintln(e.Stdout, line)
}

func roundDur(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	if d < 10*time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// opCounts counts the actions of op by status.
func opCounts(op api.Operation) map[string]int {
	m := map[string]int{}
	for _, a := range op.Actions {
		m[a.Status]++
	}
	return m
}

// summary is the one line that closes a followed operation.
func summary(op api.Operation) string {
	c := opCounts(op)
	verb := "Apply"
	if op.Kind == "destroy" {
		verb = "Destroy"
	}
	state := "complete"
	switch {
	case opSucceeded(op.Status):
	case strings.EqualFold(op.Status, "cancelled"):
		state = "cancelled"
	default:
		state = "failed"
	}
	s := fmt.Sprintf("%s %s: %d done, %d failed, %d skipped", verb, state, c["done"], c["failed"], c["skipped"])
	if c["cancelled"] > 0 {
		s += fmt.Sprintf(", %d cancelled", c["cancelled"])
	}
	if !op.Started.IsZero() && !op.Finished.IsZero() {
		s += " in " + roundDur(op.Finished.Sub(op.Started))
	}
	s += "."
	if op.Error != "" {
		s += "\nError: " + op.Error
	}
	return s
}

// opJSON is the document `kiln apply -json` and `kiln destroy -json` print.
type opJSON struct {
	Stack       string                     `json:"stack"`
	OperationID string                     `json:"operation_id"`
	Kind        string                     `json:"kind"`
	Status      string                     `json:"status"` // done | failed | cancelled | running (detached) | no_changes
	Error       string                     `json:"error,omitempty"`
	Actions     []api.ActionStatus         `json:"actions"`
	Outputs     map[string]api.OutputValue `json:"outputs"`
	Detached    bool                       `json:"detached,omitempty"`
}
