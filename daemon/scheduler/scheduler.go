// Package scheduler places work on agents, the way nova-scheduler does:
// filter the agents that are up and have room, weigh the rest by load and by
// images already cached, and hand back an ordered list of candidates that the
// caller tries in turn (up to MaxAttempts), failing with a message that says
// why every agent was turned down.
//
// It is pure: no clock, no I/O, no goroutines. Time comes in as arguments.
//
// A stack is placed as a whole on one agent, not resource by resource: the
// bridges that connect a stack's servers are host-local, so every resource
// that shares a network must live on the same host. Until kiln has overlay
// networks this is the only sound placement; Request.Pinned keeps later
// applies of a stack on the agent it already lives on.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// MaxAttempts is how many candidates a create is tried on before it fails.
const MaxAttempts = 3

// DefaultCPURatio is how many guest vCPUs one host CPU counts for when the
// agent does not say (as nova's default cpu_allocation_ratio): vCPUs are
// time-shared, so a 2-core host can run more than two one-vCPU guests.
const DefaultCPURatio = 16.0

// DefaultMemoryRatio is how many bytes of guest memory one byte of host
// memory counts for when the agent does not say: memory is not
// overcommitted. Disk never is.
const DefaultMemoryRatio = 1.0

// Resources are amounts of capacity.
type Resources struct {
	CPUs   int64
	Memory int64 // bytes
	Disk   int64 // bytes
}

// Agent is what the scheduler knows of one agent.
type Agent struct {
	ID string
	// Down is set for an agent that missed its heartbeats (see
	// Heartbeat.Mark) or was marked down by an operator.
	Down bool
	// Capacity is what the host has (host CPUs, memory and disk); Used
	// what is already allocated to stacks placed on it, in guest units.
	Capacity Resources
	Used     Resources
	// CPURatio and MemoryRatio are the agent's allocation ratios: the host
	// offers Capacity.CPUs × CPURatio guest vCPUs and Capacity.Memory ×
	// MemoryRatio bytes of guest memory. 0 means DefaultCPURatio and
	// DefaultMemoryRatio.
	CPURatio    float64
	MemoryRatio float64
	// Images are the keys (sha256, or source when there is none) of the
	// images in the agent's cache.
	Images []string
	// HostPortsLo..HostPortsHi are the host ports the agent's port
	// forwards may use and ReservedPorts those they never do; 0..0 is
	// unknown (any port: the agent decides when the forward is made).
	HostPortsLo, HostPortsHi int
	ReservedPorts            []int
}

// Request is the placement of one stack.
type Request struct {
	Stack string
	// Resources the stack needs on top of what it already uses.
	Resources
	// Images the stack's servers boot from (keys as in Agent.Images).
	Images []string
	// Pinned is the agent the stack already lives on, if any: it must stay
	// there, because its networks are host-local.
	Pinned string
	// HostPorts are the host ports the stack's new port forwards take
	// (known at plan time), sorted.
	HostPorts []int
}

// Candidate is an agent that can take a request, with how it was weighed.
type Candidate struct {
	Agent string
	// Load is the agent's fullest dimension after placement, 0 to 1.
	Load float64
	// Cached is how many of the request's images the agent has.
	Cached int
	Weight float64
}

// Rejection says why an agent was not used.
type Rejection struct {
	Agent  string
	Reason string
}

// NoValidHostError is returned when no agent could take a request.
type NoValidHostError struct {
	Stack string
	// Rejections name every agent considered, in the order considered:
	// those filtered out, then those tried and failed.
	Rejections []Rejection
}

func (e *NoValidHostError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "no valid host was found for stack %q", e.Stack)
	if len(e.Rejections) == 0 {
		b.WriteString(": there are no agents")
		return b.String()
	}
	b.WriteString(": ")
	for i, r := range e.Rejections {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "agent %s: %s", r.Agent, r.Reason)
	}
	return b.String()
}

// Weights set how much load and image affinity count. Each weigher yields a
// value from 0 to 1 (1 - load; the fraction of the request's images cached)
// that is multiplied by its weight; candidates are sorted by the sum.
type Weights struct {
	Load  float64
	Image float64
}

// DefaultWeights make a cached image worth as much as half the host being
// free: an image already there beats a fetch unless the host is much busier.
var DefaultWeights = Weights{Load: 1, Image: 0.5}

// Place returns the agents that can take req, best first, with
// DefaultWeights. It fails with a *NoValidHostError when there are none.
func Place(req Request, agents []Agent) ([]Candidate, error) {
	return DefaultWeights.Place(req, agents)
}

// Place filters and weighs agents for req. Ties are broken by agent id.
func (w Weights) Place(req Request, agents []Agent) ([]Candidate, error) {
	sorted := append([]Agent(nil), agents...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].ID < sorted[j].ID })
	var cands []Candidate
	var rejected []Rejection
	for _, a := range sorted {
		if why := filter(req, a); why != "" {
			rejected = append(rejected, Rejection{a.ID, why})
			continue
		}
		c := Candidate{Agent: a.ID, Load: load(req.Resources, a), Cached: cached(req.Images, a.Images)}
		c.Weight = w.Load * (1 - c.Load)
		if len(req.Images) > 0 {
			c.Weight += w.Image * float64(c.Cached) / float64(len(req.Images))
		}
		cands = append(cands, c)
	}
	if len(cands) == 0 {
		return nil, &NoValidHostError{Stack: req.Stack, Rejections: rejected}
	}
	sort.SliceStable(cands, func(i, j int) bool {
		if cands[i].Weight != cands[j].Weight {
			return cands[i].Weight > cands[j].Weight
		}
		return cands[i].Agent < cands[j].Agent
	})
	return cands, nil
}

// filter returns why a cannot take req, or "".
func filter(req Request, a Agent) string {
	if req.Pinned != "" && a.ID != req.Pinned {
		return fmt.Sprintf("stack lives on agent %s", req.Pinned)
	}
	if a.Down {
		return "down"
	}
	if why := a.refusesPorts(req.HostPorts); why != "" {
		return why
	}
	offer := a.Offer()
	var short []string
	check := func(need, offer, used int64, wanted func(free int64) string) {
		if need <= 0 {
			return
		}
		if free := offer - used; need > free {
			short = append(short, wanted(max(free, 0)))
		}
	}
	check(req.CPUs, offer.CPUs, a.Used.CPUs, func(free int64) string {
		return fmt.Sprintf("cpus: %d wanted, %d free of %d host %s × ratio %s",
			req.CPUs, free, a.Capacity.CPUs, plural(a.Capacity.CPUs, "CPU"), FormatRatio(a.cpuRatio()))
	})
	check(req.Memory, offer.Memory, a.Used.Memory, func(free int64) string {
		return fmt.Sprintf("memory: %s wanted, %s free of %s host memory × ratio %s",
			bytes(req.Memory), bytes(free), bytes(a.Capacity.Memory), FormatRatio(a.memoryRatio()))
	})
	check(req.Disk, offer.Disk, a.Used.Disk, func(free int64) string {
		return fmt.Sprintf("disk: %s wanted, %s free of %s host disk", bytes(req.Disk), bytes(free), bytes(a.Capacity.Disk))
	})
	return strings.Join(short, ", ")
}

// refusesPorts says which of ports the agent's host-port policy does not
// allow; "" when it allows them all or does not say.
func (a Agent) refusesPorts(ports []int) string {
	if a.HostPortsLo == 0 && a.HostPortsHi == 0 {
		return ""
	}
	var out, reserved []string
	for _, p := range ports {
		switch {
		case slices.Contains(a.ReservedPorts, p):
			reserved = append(reserved, strconv.Itoa(p))
		case p < a.HostPortsLo || p > a.HostPortsHi:
			out = append(out, strconv.Itoa(p))
		}
	}
	list := func(ps []string) string {
		if len(ps) == 1 {
			return "host port " + ps[0] + " is"
		}
		return "host ports " + strings.Join(ps, ",") + " are"
	}
	var why []string
	if len(out) > 0 {
		why = append(why, fmt.Sprintf("%s outside its range %d-%d", list(out), a.HostPortsLo, a.HostPortsHi))
	}
	if len(reserved) > 0 {
		why = append(why, list(reserved)+" kiln's own there")
	}
	return strings.Join(why, ", ")
}

func (a Agent) cpuRatio() float64 {
	if a.CPURatio > 0 {
		return a.CPURatio
	}
	return DefaultCPURatio
}

func (a Agent) memoryRatio() float64 {
	if a.MemoryRatio > 0 {
		return a.MemoryRatio
	}
	return DefaultMemoryRatio
}

// Offer is what a can hold in guest units: its host CPUs and memory times
// its allocation ratios (rounded down), its disk as it is.
func (a Agent) Offer() Resources {
	return Resources{
		CPUs:   scale(a.Capacity.CPUs, a.cpuRatio()),
		Memory: scale(a.Capacity.Memory, a.memoryRatio()),
		Disk:   a.Capacity.Disk,
	}
}

// scale is n × r rounded down, exact for r = 1 and capped at MaxInt64.
func scale(n int64, r float64) int64 {
	if r == 1 {
		return n
	}
	v := math.Floor(float64(n) * r)
	if v >= math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(v)
}

func plural(n int64, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// FormatRatio renders an allocation ratio without trailing zeros: 16, 1.5.
func FormatRatio(r float64) string {
	return strconv.FormatFloat(r, 'f', -1, 64)
}

// load is the fullest dimension of a after placing r, from 0 to 1, against
// what a offers (so a host with a higher ratio is less loaded).
func load(r Resources, a Agent) float64 {
	offer := a.Offer()
	l := 0.0
	for _, d := range [][3]int64{
		{r.CPUs, a.Used.CPUs, offer.CPUs},
		{r.Memory, a.Used.Memory, offer.Memory},
		{r.Disk, a.Used.Disk, offer.Disk},
	} {
		if d[2] <= 0 {
			continue
		}
		l = max(l, float64(d[0]+d[1])/float64(d[2]))
	}
	return min(l, 1)
}

func cached(want, have []string) int {
	set := make(map[string]bool, len(have))
	for _, h := range have {
		set[h] = true
	}
	n := 0
	for _, w := range want {
		if set[w] {
			n++
		}
	}
	return n
}

// bytes renders a size the way the CLI does (binary units).
func bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB"}
	v, i := float64(n)/unit, 0
	for v >= unit && i < len(units)-1 {
		v /= unit
		i++
	}
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d %s", int64(v), units[i])
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}

// Try runs try on the candidates in order until one succeeds, at most
// MaxAttempts times, and returns the one that took the work. When all fail
// it returns a *NoValidHostError with each attempt's error.
func Try(ctx context.Context, stack string, cands []Candidate, try func(context.Context, Candidate) error) (Candidate, error) {
	nv := &NoValidHostError{Stack: stack}
	for i, c := range cands {
		if i == MaxAttempts {
			break
		}
		if err := ctx.Err(); err != nil {
			return Candidate{}, err
		}
		err := try(ctx, c)
		if err == nil {
			return c, nil
		}
		nv.Rejections = append(nv.Rejections, Rejection{c.Agent, err.Error()})
	}
	if len(cands) > MaxAttempts {
		nv.Rejections = append(nv.Rejections, Rejection{
			Agent:  strings.Join(agentIDs(cands[MaxAttempts:]), ", "),
			Reason: fmt.Sprintf("not tried: gave up after %d attempts", MaxAttempts),
		})
	}
	return Candidate{}, nv
}

// Schedule places req and tries the candidates; a failure lists both the
// agents filtered out and those that failed the work.
func (w Weights) Schedule(ctx context.Context, req Request, agents []Agent, try func(context.Context, Candidate) error) (Candidate, error) {
	cands, err := w.Place(req, agents)
	if err != nil {
		return Candidate{}, err
	}
	c, err := Try(ctx, req.Stack, cands, try)
	var nv *NoValidHostError
	if errors.As(err, &nv) {
		all := &NoValidHostError{Stack: req.Stack}
		all.Rejections = append(all.Rejections, filtered(req, agents)...)
		all.Rejections = append(all.Rejections, nv.Rejections...)
		return Candidate{}, all
	}
	return c, err
}

// filtered lists the agents Place turns down, sorted by id.
func filtered(req Request, agents []Agent) []Rejection {
	var out []Rejection
	for _, a := range agents {
		if why := filter(req, a); why != "" {
			out = append(out, Rejection{a.ID, why})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Agent < out[j].Agent })
	return out
}

func agentIDs(cs []Candidate) []string {
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.Agent
	}
	return ids
}
