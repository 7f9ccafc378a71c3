package raftstore

import (
	"context"
	"slices"
	"sort"
	"strings"
	"sync"
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
		case <-ctx.Done():
			return idx, ctx.Err()
		}
	}
}

// notifyLocked wakes the waiters; the caller holds the write lock.
func (s *State) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Project returns a project.
func (s *State) Project(name string) (Project, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p, ok := s.t.projects[name]
	if !ok {
		return Project{}, false
	}
	return *p, true
}

// Projects returns every project, sorted by name.
func (s *State) Projects() []Project {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Project, 0, len(s.t.projects))
	for _, p := range s.t.projects {
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Token returns a token by id.
func (s *State) Token(id string) (Token, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t, ok := s.t.tokens[id]
	if !ok {
		return Token{}, false
	}
	return *t, true
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
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Token
	for _, t := range s.t.tokens {
		if project == "" || t.Project == project {
			out = append(out, *t)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
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
	s.mu.RLock()
	defer s.mu.RUnlock()
	st, ok := s.t.stacks[stackKey(project, name)]
	if !ok {
		return Stack{}, false
	}
	return st.clone(), true
}

// Stacks returns the stacks of a project ("" for all), sorted by project and name.
func (s *State) Stacks(project string) []Stack {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Stack
	for _, st := range s.t.stacks {
		if project == "" || st.Project == project {
			out = append(out, st.clone())
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Project != out[j].Project {
			return out[i].Project < out[j].Project
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// ExpiredStacks returns the stacks whose TTL is over at now and that are
// neither destroyed nor busy, for the TTL reaper.
func (s *State) ExpiredStacks(now time.Time) []Stack {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Stack
	for _, st := range s.t.stacks {
		if !st.Expires.IsZero() && !st.Expires.After(now) &&
			st.Status != StackDestroyed && st.ActiveOperation == "" {
			out = append(out, st.clone())
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return stackKey(out[i].Project, out[i].Name) < stackKey(out[j].Project, out[j].Name)
	})
	return out
}

// Resource returns one resource of a stack.
func (s *State) Resource(project, stack, address string) (Resource, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.t.resources[stackKey(project, stack)][address]
	if !ok {
		return Resource{}, false
	}
	return r.clone(), true
}

// Resources returns the resources of a stack, sorted by address.
func (s *State) Resources(project, stack string) []Resource {
	s.mu.RLock()
	defer s.mu.RUnlock()
	rs := s.t.resources[stackKey(project, stack)]
	out := make([]Resource, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].State.Address < out[j].State.Address })
	return out
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
	s.mu.RLock()
	defer s.mu.RUnlock()
	o, ok := s.t.operations[id]
	if !ok {
		return Operation{}, false
	}
	return o.clone(), true
}

// Operations returns the operations of a stack, oldest first.
func (s *State) Operations(project, stack string) []Operation {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Operation
	for _, o := range s.t.operations {
		if o.Project == project && o.Stack == stack {
			out = append(out, o.clone())
		}
	}
	sortOps(out)
	return out
}

// UnfinishedOperations returns every operation that is not final, oldest
// first: what a new leader resumes.
func (s *State) UnfinishedOperations() []Operation {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Operation
	for _, o := range s.t.operations {
		if !o.Status.Final() {
			out = append(out, o.clone())
		}
	}
	sortOps(out)
	return out
}

func sortOps(ops []Operation) {
	sort.Slice(ops, func(i, j int) bool {
		if ops[i].CreateIndex != ops[j].CreateIndex {
			return ops[i].CreateIndex < ops[j].CreateIndex
		}
		return ops[i].ID < ops[j].ID
	})
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
	s.mu.RLock()
	defer s.mu.RUnlock()
	a, ok := s.t.agents[id]
	if !ok {
		return Agent{}, false
	}
	return a.clone(), true
}

// Agents returns every agent, sorted by id.
func (s *State) Agents() []Agent {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Agent, 0, len(s.t.agents))
	for _, a := range s.t.agents {
		out = append(out, a.clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
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
