package raftstore

import (
	"context"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kiln-dev/kiln/planner"
)

// MaxEvents bounds the events kept per stack; older ones are dropped.
const MaxEvents = 1000

// MaxFinishedOperations bounds the finished operations kept per stack; the
// oldest finished ones are dropped when another one finishes.
const MaxFinishedOperations = 50

// State is the replicated state machine's data. Commands change it through
// the FSM only; everything else reads it through the methods below, which
// return deep copies. Every applied command raises Index and wakes waiters.
type State struct {
	mu      sync.RWMutex
	t       *tables
	changed chan struct{} // closed and replaced whenever Index rises
	// wakeups counts the waits (Wait) woken by a change: the cost of the
	// blocking queries and of the leader's waits for reports.
	wakeups atomic.Uint64
}

// tables is the content of the state. It is replaced as a whole on Restore.
type tables struct {
	index       uint64
	projects    map[string]*Project
	tokens      map[string]*Token
	tokenByHash map[string]string // secret hash -> token id
	blobs       map[string][]byte
	stacks      map[string]*Stack               // stackKey -> stack
	resources   map[string]map[string]*Resource // stackKey -> address -> resource
	events      map[string]*eventLog            // stackKey -> events
	operations  map[string]*Operation
	agents      map[string]*Agent
	servers     map[string]*ServerInfo // raft id -> addresses
	work        map[string]*Work       // work id -> work item
	plans       map[string]*PlanRecord // plan id -> plan (plans.go)
	blobTimes   map[string]time.Time   // blob hash -> when it was last put
}

type eventLog struct {
	NextSeq uint64
	Events  []Event
}

func newTables() *tables {
	return &tables{
		projects:    map[string]*Project{},
		tokens:      map[string]*Token{},
		tokenByHash: map[string]string{},
		blobs:       map[string][]byte{},
		stacks:      map[string]*Stack{},
		resources:   map[string]map[string]*Resource{},
		events:      map[string]*eventLog{},
		operations:  map[string]*Operation{},
		agents:      map[string]*Agent{},
		servers:     map[string]*ServerInfo{},
		work:        map[string]*Work{},
		plans:       map[string]*PlanRecord{},
		blobTimes:   map[string]time.Time{},
	}
}

// NewState returns an empty state.
func NewState() *State {
	return &State{t: newTables(), changed: make(chan struct{})}
}

func stackKey(project, name string) string { return project + "/" + name }

// Index returns the index of the last applied command.
func (s *State) Index() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.t.index
}

// WatchCh returns a channel that is closed at the next change of the state.
func (s *State) WatchCh() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.changed
}

// Wait blocks until the state index is above afterIndex or ctx is done, and
// returns the current index. It is the base of blocking queries (?index=N).
func (s *State) Wait(ctx context.Context, afterIndex uint64) (uint64, error) {
	for {
		s.mu.RLock()
		idx, ch := s.t.index, s.changed
		s.mu.RUnlock()
		if idx > afterIndex {
			return idx, nil
		}
		select {
		case <-ch:
			s.wakeups.Add(1)
		case <-ctx.Done():
			return idx, ctx.Err()
		}
	}
}

// Wakeups returns how many waits a change of the state has woken (those of
// Wait, and those built on WatchCh that count themselves with Woke).
func (s *State) Wakeups() uint64 { return s.wakeups.Load() }

// Woke counts a wait built on WatchCh that a change woke.
func (s *State) Woke() { s.wakeups.Add(1) }

// notifyLocked wakes the waiters; the caller holds the write lock.
func (s *State) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// getOne returns, under the read lock, a copy of the entry key of the table
// that table picks, made by cp (nil: a plain copy).
func getOne[V any](s *State, table func(*tables) map[string]*V, key string, cp func(V) V) (V, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := table(s.t)[key]
	if !ok {
		var zero V
		return zero, false
	}
	if cp == nil {
		return *v, true
	}
	return cp(*v), true
}

// getAll returns, under the read lock, copies (made by cp, nil: plain
// copies) of the entries of the table that table picks that keep accepts,
// sorted by less. With keep nil it takes every entry and the result is never
// nil; with a keep it is nil when nothing is kept.
func getAll[V any](s *State, table func(*tables) map[string]*V, keep func(*V) bool, cp func(V) V, less func(a, b *V) bool) []V {
	s.mu.RLock()
	defer s.mu.RUnlock()
	m := table(s.t)
	var out []V
	if keep == nil {
		out = make([]V, 0, len(m))
	}
	for _, v := range m {
		if keep != nil && !keep(v) {
			continue
		}
		if cp == nil {
			out = append(out, *v)
		} else {
			out = append(out, cp(*v))
		}
	}
	sort.Slice(out, func(i, j int) bool { return less(&out[i], &out[j]) })
	return out
}

// Project returns a project.
func (s *State) Project(name string) (Project, bool) {
	return getOne(s, func(t *tables) map[string]*Project { return t.projects }, name, nil)
}

// Projects returns every project, sorted by name.
func (s *State) Projects() []Project {
	return getAll(s, func(t *tables) map[string]*Project { return t.projects }, nil, nil,
		func(a, b *Project) bool { return a.Name < b.Name })
}

// Token returns a token by id.
func (s *State) Token(id string) (Token, bool) {
	return getOne(s, func(t *tables) map[string]*Token { return t.tokens }, id, nil)
}

// TokenBySecret returns the token whose secret is given (it is hashed first).
func (s *State) TokenBySecret(secret string) (Token, bool) {
	h := HashSecret(secret)
	s.mu.RLock()
	defer s.mu.RUnlock()
	id, ok := s.t.tokenByHash[h]
	if !ok {
		return Token{}, false
	}
	return *s.t.tokens[id], true
}

// Tokens returns the tokens of a project ("" for all), sorted by id.
func (s *State) Tokens(project string) []Token {
	return getAll(s, func(t *tables) map[string]*Token { return t.tokens },
		func(t *Token) bool { return project == "" || t.Project == project }, nil,
		func(a, b *Token) bool { return a.ID < b.ID })
}

// Blob returns a copy of a blob by its hash.
func (s *State) Blob(hash string) ([]byte, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	b, ok := s.t.blobs[hash]
	return slices.Clone(b), ok
}

// HasBlob reports whether a blob is stored.
func (s *State) HasBlob(hash string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.t.blobs[hash]
	return ok
}

// Stack returns a stack.
func (s *State) Stack(project, name string) (Stack, bool) {
	return getOne(s, func(t *tables) map[string]*Stack { return t.stacks }, stackKey(project, name), Stack.clone)
}

// Stacks returns the stacks of a project ("" for all), sorted by project and name.
func (s *State) Stacks(project string) []Stack {
	return getAll(s, func(t *tables) map[string]*Stack { return t.stacks },
		func(st *Stack) bool { return project == "" || st.Project == project }, Stack.clone,
		func(a, b *Stack) bool {
			if a.Project != b.Project {
				return a.Project < b.Project
			}
			return a.Name < b.Name
		})
}

// ExpiredStacks returns the stacks whose TTL is over at now and that are
// neither destroyed nor busy, for the TTL reaper.
func (s *State) ExpiredStacks(now time.Time) []Stack {
	return getAll(s, func(t *tables) map[string]*Stack { return t.stacks },
		func(st *Stack) bool {
			return !st.Expires.IsZero() && !st.Expires.After(now) &&
				st.Status != StackDestroyed && st.ActiveOperation == ""
		}, Stack.clone,
		func(a, b *Stack) bool { return stackKey(a.Project, a.Name) < stackKey(b.Project, b.Name) })
}

// Resource returns one resource of a stack.
func (s *State) Resource(project, stack, address string) (Resource, bool) {
	return getOne(s, stackResources(project, stack), address, Resource.clone)
}

// Resources returns the resources of a stack, sorted by address.
func (s *State) Resources(project, stack string) []Resource {
	return getAll(s, stackResources(project, stack), nil, Resource.clone,
		func(a, b *Resource) bool { return a.State.Address < b.State.Address })
}

func stackResources(project, stack string) func(*tables) map[string]*Resource {
	return func(t *tables) map[string]*Resource { return t.resources[stackKey(project, stack)] }
}

// PlannerState returns the actual state of a stack in the form the planner
// takes, with the stack's serial.
func (s *State) PlannerState(project, stack string) *planner.State {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ps := &planner.State{Stack: stack}
	key := stackKey(project, stack)
	if st, ok := s.t.stacks[key]; ok {
		ps.Serial = st.Serial
	}
	for _, r := range s.t.resources[key] {
		ps.Resources = append(ps.Resources, cloneResourceState(r.State))
	}
	sort.Slice(ps.Resources, func(i, j int) bool { return ps.Resources[i].Address < ps.Resources[j].Address })
	return ps
}

// Operation returns an operation by id.
func (s *State) Operation(id string) (Operation, bool) {
	return getOne(s, operationsTable, id, Operation.clone)
}

// OperationSummary returns an operation by id with its actions but
// without its plan (left zero): what a caller that follows its progress
// needs, without copying the plan each time.
func (s *State) OperationSummary(id string) (Operation, bool) {
	return getOne(s, operationsTable, id, func(o Operation) Operation {
		o.Plan = planner.Result{}
		o.Actions = slices.Clone(o.Actions)
		return o
	})
}

// OperationIndex returns the state index of an operation's last change,
// without copying it: the cheap check of a blocking query.
func (s *State) OperationIndex(id string) (uint64, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	o, ok := s.t.operations[id]
	if !ok {
		return 0, false
	}
	return o.Index, true
}

// OperationRef names an unfinished operation and whether its cancel was
// asked for.
type OperationRef struct {
	ID              string
	CancelRequested bool
}

// UnfinishedOperationRefs names every operation that is not final, oldest
// first, without copying them: what the leader's loop looks at on every
// change.
func (s *State) UnfinishedOperationRefs() []OperationRef {
	ops := getAll(s, operationsTable, func(o *Operation) bool { return !o.Status.Final() },
		func(o Operation) Operation {
			return Operation{ID: o.ID, CancelRequested: o.CancelRequested, CreateIndex: o.CreateIndex}
		}, opOlder)
	out := make([]OperationRef, len(ops))
	for i, o := range ops {
		out[i] = OperationRef{ID: o.ID, CancelRequested: o.CancelRequested}
	}
	return out
}

// Operations returns the operations of a stack, oldest first.
func (s *State) Operations(project, stack string) []Operation {
	return getAll(s, operationsTable,
		func(o *Operation) bool { return o.Project == project && o.Stack == stack }, Operation.clone, opOlder)
}

// UnfinishedOperations returns every operation that is not final, oldest
// first: what a new leader resumes.
func (s *State) UnfinishedOperations() []Operation {
	return getAll(s, operationsTable, func(o *Operation) bool { return !o.Status.Final() }, Operation.clone, opOlder)
}

func operationsTable(t *tables) map[string]*Operation { return t.operations }

// opOlder orders operations oldest first.
func opOlder(a, b *Operation) bool {
	if a.CreateIndex != b.CreateIndex {
		return a.CreateIndex < b.CreateIndex
	}
	return a.ID < b.ID
}

// Events returns the events of a stack recorded at a state index above
// afterIndex, oldest first, at most limit of them (the newest; 0: all kept).
func (s *State) Events(project, stack string, afterIndex uint64, limit int) []Event {
	s.mu.RLock()
	defer s.mu.RUnlock()
	el := s.t.events[stackKey(project, stack)]
	if el == nil {
		return nil
	}
	kept := el.kept()
	i := sort.Search(len(kept), func(i int) bool { return kept[i].Index > afterIndex })
	evs := kept[i:]
	if limit > 0 && len(evs) > limit {
		evs = evs[len(evs)-limit:]
	}
	return slices.Clone(evs)
}

// Agent returns an agent.
func (s *State) Agent(id string) (Agent, bool) {
	return getOne(s, func(t *tables) map[string]*Agent { return t.agents }, id, Agent.clone)
}

// AgentStatus returns an agent's status without copying the agent.
func (s *State) AgentStatus(id string) (AgentStatus, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	a, ok := s.t.agents[id]
	if !ok {
		return "", false
	}
	return a.Status, true
}

// Agents returns every agent, sorted by id.
func (s *State) Agents() []Agent {
	return getAll(s, func(t *tables) map[string]*Agent { return t.agents }, nil, Agent.clone,
		func(a, b *Agent) bool { return a.ID < b.ID })
}

// Assignments returns the unfinished actions of unfinished operations that
// are assigned to an agent, ordered by operation then plan order. An agent
// waits for them with Wait.
func (s *State) Assignments(agentID string) []Assignment {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var ops []*Operation
	for _, o := range s.t.operations {
		if !o.Status.Final() {
			ops = append(ops, o)
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].CreateIndex < ops[j].CreateIndex })
	var out []Assignment
	for _, o := range ops {
		for i, a := range o.Actions {
			if a.Agent != agentID || a.Status.Final() {
				continue
			}
			out = append(out, Assignment{
				Operation: o.ID, Project: o.Project, Stack: o.Stack, Kind: o.Kind,
				Action: a, Change: cloneChange(o.Plan.Changes[i]),
			})
		}
	}
	return out
}

// splitKey is the inverse of stackKey.
func splitKey(k string) (project, name string) {
	project, name, _ = strings.Cut(k, "/")
	return project, name
}
