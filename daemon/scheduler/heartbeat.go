package scheduler

import (
	"sort"
	"time"
)

// Heartbeat is the policy that says when an agent is down.
type Heartbeat struct {
	// Interval is how often agents heartbeat.
	Interval time.Duration
	// Missed is how many intervals may pass without a heartbeat before the
	// agent is down.
	Missed int
}

// DefaultHeartbeat: agents heartbeat every 5 s and are down after 3 missed.
var DefaultHeartbeat = Heartbeat{Interval: 5 * time.Second, Missed: 3}

// Down reports whether an agent last heard from at last is down at now.
// An agent never heard from (zero last) is down.
func (h Heartbeat) Down(last, now time.Time) bool {
	if last.IsZero() {
		return true
	}
	return now.Sub(last) > time.Duration(h.Missed)*h.Interval
}

// Mark returns a copy of agents with Down set for every agent whose last
// heartbeat (by id in last) is too old. Agents already marked down stay down.
func (h Heartbeat) Mark(agents []Agent, last map[string]time.Time, now time.Time) []Agent {
	out := append([]Agent(nil), agents...)
	for i := range out {
		if h.Down(last[out[i].ID], now) {
			out[i].Down = true
		}
	}
	return out
}

// Work is a piece of work assigned to an agent.
type Work struct {
	ID    string
	Stack string
	Agent string
	// Started is true once the agent has taken the work (its start is
	// recorded); started work is never moved: it is resumed by reading the
	// agent back when it returns.
	Started bool
}

// Orphaned returns the work not yet started on an agent that is down or
// unknown, sorted by id: the work to place elsewhere.
func Orphaned(work []Work, agents []Agent) []Work {
	up := make(map[string]bool, len(agents))
	for _, a := range agents {
		up[a.ID] = !a.Down
	}
	var out []Work
	for _, w := range work {
		if !w.Started && !up[w.Agent] {
			out = append(out, w)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
