package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/executors"
	"github.com/kiln-dev/kiln/executors/kinds"
	"github.com/kiln-dev/kiln/planner"
	"github.com/kiln-dev/kiln/raftstore"
	"github.com/kiln-dev/kiln/spec"
)

// Host operations: `kiln image list`, `kiln image prune`, `kiln gc` and
// `kiln console` ask the agents about their hosts. These are questions
// answered once, some with answers too big for the Raft log (a console
// log), so they do not go through it: the leader keeps them in memory
// (hostBroker), an agent fetches them with a blocking query that any server
// forwards to the leader (GET /v1/agents/{id}/hostwork) and answers with
// POST /v1/agents/{id}/hostresults, and the HTTP request that waits for
// the answer replies to its client. The protocol (ops, their typed
// requests and answers) is in api's hostops.go. A lost leadership
// loses the questions in flight; the client asks again.

// How long the leader waits for an agent's answer.
const (
	hostWaitRead   = 30 * time.Second // images, gc listing, console
	hostWaitChange = 5 * time.Minute  // prune, gc -force
)

// hostBroker holds the host questions of this leader until their agents
// answer. Its zero value is ready.
type hostBroker struct {
	mu      sync.Mutex
	seq     uint64
	pending map[string][]hostItem // agent -> items not answered
	waiters map[string]chan api.HostAnswer
	changed chan struct{} // closed and replaced when an item is added
}

type hostItem struct {
	seq  uint64
	item api.HostRequest
}

func (b *hostBroker) initLocked() {
	if b.pending == nil {
		b.pending = map[string][]hostItem{}
		b.waiters = map[string]chan api.HostAnswer{}
		b.changed = make(chan struct{})
	}
}

// put queues an item for an agent and returns the channel its answer
// comes on. Sequence numbers start from the clock so that they go on
// growing across leaders (an agent's index from the last leader is then
// behind; the agent also starts over when the index goes back).
func (b *hostBroker) put(agent string, it api.HostRequest) chan api.HostAnswer {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.initLocked()
	b.seq = max(b.seq+1, uint64(time.Now().UnixNano()))
	b.pending[agent] = append(b.pending[agent], hostItem{seq: b.seq, item: it})
	ch := make(chan api.HostAnswer, 1)
	b.waiters[it.WorkID] = ch
	close(b.changed)
	b.changed = make(chan struct{})
	return ch
}

// drop forgets an item (answered or given up on).
func (b *hostBroker) drop(agent, workID string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.initLocked()
	delete(b.waiters, workID)
	l := b.pending[agent]
	for i, h := range l {
		if h.item.WorkID == workID {
			b.pending[agent] = append(l[:i:i], l[i+1:]...)
			break
		}
	}
	if len(b.pending[agent]) == 0 {
		delete(b.pending, agent)
	}
}

// after returns an agent's items newer than index, the current sequence
// and a channel closed when something is added.
func (b *hostBroker) after(agent string, index uint64) ([]api.HostRequest, uint64, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.initLocked()
	var out []api.HostRequest
	for _, h := range b.pending[agent] {
		if h.seq > index {
			out = append(out, h.item)
		}
	}
	return out, b.seq, b.changed
}

// answer hands an agent's answer to the request waiting for it.
func (b *hostBroker) answer(agent string, rep api.HostAnswer) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.initLocked()
	ch, ok := b.waiters[rep.WorkID]
	if !ok {
		return false
	}
	owned := false
	for _, h := range b.pending[agent] {
		owned = owned || h.item.WorkID == rep.WorkID
	}
	if !owned {
		return false
	}
	select {
	case ch <- rep:
	default:
	}
	return true
}

// askHost asks one agent a host question (req without its WorkID, which
// askHost sets) and waits (at most wait) for the answer. An answer that is
// not OK is an error with the agent's message, returned with the answer
// (what was done before the error); so is an agent that goes down.
func (s *Server) askHost(ctx context.Context, agent string, req api.HostRequest, wait time.Duration) (api.HostAnswer, error) {
	op := req.Op
	if err := req.Check(); err != nil {
		return api.HostAnswer{}, err
	}
	req.WorkID = "h-" + randomHex(8)
	ch := s.host.put(agent, req)
	defer s.host.drop(agent, req.WorkID)
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case rep := <-ch:
			if rep.Op != op {
				return api.HostAnswer{}, fmt.Errorf("agent %s: answer to %s is about %q", agent, op, rep.Op)
			}
			if !rep.OK {
				return rep, fmt.Errorf("agent %s: %s", agent, rep.Error)
			}
			return rep, nil
		case <-tick.C:
			if ag, ok := s.store.State().Agent(agent); !ok || ag.Status != raftstore.AgentUp {
				return api.HostAnswer{}, fmt.Errorf("agent %s went down before answering %s", agent, op)
			}
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return api.HostAnswer{}, errf(http.StatusGatewayTimeout, "agent %s did not answer %s within %s", agent, op, wait)
			}
			return api.HostAnswer{}, ctx.Err()
		}
	}
}

// askAll asks every agent that is up, in parallel, and returns the answers
// by agent. Any failure fails the whole (the message names the agents).
func (s *Server) askAll(ctx context.Context, req api.HostRequest, wait time.Duration) (map[string]api.HostAnswer, error) {
	var agents []string
	for _, a := range s.store.State().Agents() {
		if a.Status == raftstore.AgentUp {
			agents = append(agents, a.ID)
		}
	}
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		out  = map[string]api.HostAnswer{}
		errs []error
	)
	for _, a := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ans, err := s.askHost(ctx, a, req, wait)
			mu.Lock()
			defer mu.Unlock()
			out[a] = ans
			if err != nil {
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
		if len(errs) == 1 {
			var he *httpError
			if errors.As(errs[0], &he) {
				return out, he
			}
		}
		return out, errf(http.StatusBadGateway, "%v", errors.Join(errs...))
	}
	return out, nil
}

// leaderOnly forwards a request to the leader when this server is not it:
// only the leader holds the host questions.
func (s *Server) leaderOnly(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if !s.store.IsLeader() {
			return s.forward(w, r)
		}
		return h(w, r)
	}
}

// handleHostWork answers an agent's blocking query for host work.
func (s *Server) handleHostWork(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	index, wait, err := waitParams(r)
	if err != nil {
		return err
	}
	if _, ok := s.store.State().Agent(id); !ok {
		return errf(http.StatusNotFound, "agent %s is not registered", id)
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	for {
		items, seq, changed := s.host.after(id, index)
		if len(items) > 0 || wait <= 0 {
			return writeJSON(w, http.StatusOK, api.HostWorkResponse{Items: append([]api.HostRequest{}, items...), Index: seq})
		}
		if seq < index {
			// The agent's index comes from another leader: start it over.
			return writeJSON(w, http.StatusOK, api.HostWorkResponse{Items: []api.HostRequest{}, Index: seq})
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return writeJSON(w, http.StatusOK, api.HostWorkResponse{Items: []api.HostRequest{}, Index: seq})
		}
	}
}

// handleHostResults takes an agent's answer to a host question.
func (s *Server) handleHostResults(w http.ResponseWriter, r *http.Request, rep api.HostAnswer) error {
	if rep.WorkID == "" {
		return required("work_id")
	}
	if !s.host.answer(r.PathValue("id"), rep) {
		return errf(http.StatusNotFound, "host work %s of agent %s is not awaited (answered already, or given up on)", rep.WorkID, r.PathValue("id"))
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// handleAgentEvents appends an agent's event (the progress of an image
// download) to the stack of the operation it names.
func (s *Server) handleAgentEvents(w http.ResponseWriter, r *http.Request, ev api.Event) error {
	switch {
	case ev.Operation == "":
		return required("operation")
	case strings.TrimSpace(ev.Message) == "":
		return required("message")
	}
	op, ok := s.store.State().Operation(ev.Operation)
	if !ok || !hasActionOf(op, r.PathValue("id")) {
		return errf(http.StatusNotFound, "operation %s not found (or has no action of agent %s)", ev.Operation, r.PathValue("id"))
	}
	if ev.Stack != "" && ev.Stack != op.Stack {
		return &httpError{code: http.StatusBadRequest, field: "stack", msg: fmt.Sprintf("operation %s is of stack %s, not %s", op.ID, op.Stack, ev.Stack)}
	}
	lvl := raftstore.Level(ev.Level)
	switch lvl {
	case raftstore.LevelInfo, raftstore.LevelWarn, raftstore.LevelError:
	case "":
		lvl = raftstore.LevelInfo
	default:
		return &httpError{code: http.StatusBadRequest, field: "level", msg: fmt.Sprintf("level %q is not info, warn or error", ev.Level)}
	}
	err := s.apply(r.Context(), &raftstore.AppendEvents{Project: op.Project, Stack: op.Stack, Events: []raftstore.Event{{
		Time: time.Now().UTC(), Node: r.PathValue("id"), Level: lvl, Message: ev.Message, Operation: op.ID, Address: ev.Address,
	}}})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// imagesInUse returns the images every stack uses (image resources' ids and
// sha256, servers' image attribute), by image with the stacks
// ("project/stack") using it. It fails when an unfinished operation is
// about to fetch an image whose sha256 is not known yet: a prune then could
// remove what that operation has just fetched.
func (s *Server) imagesInUse() (map[string][]string, error) {
	st := s.store.State()
	use := map[string][]string{}
	add := func(sum any, who string) {
		v, ok := sum.(string)
		if !ok || v == "" || spec.IsUnknown(sum) {
			return
		}
		for _, x := range use[v] {
			if x == who {
				return
			}
		}
		use[v] = append(use[v], who)
	}
	for _, stk := range st.Stacks("") {
		who := stk.Project + "/" + stk.Name
		for _, r := range st.Resources(stk.Project, stk.Name) {
			imageRefs(r.State.Kind, mergeAttrs(r.State.Attrs, r.State.Computed), func(v any) { add(v, who) })
		}
	}
	for _, op := range st.UnfinishedOperations() {
		who := op.Project + "/" + op.Stack
		for _, ch := range op.Plan.Changes {
			if ch.Action == planner.Delete || ch.Action == planner.NoOp {
				continue
			}
			if ch.Kind == "image" {
				if sum, ok := ch.After["sha256"].(string); !ok || sum == "" {
					return nil, errf(http.StatusConflict, "%s of stack %s is being applied and its image %s has no sha256: prune when the operation %s is finished", op.Kind, op.Stack, ch.Address, op.ID)
				}
			}
			imageRefs(ch.Kind, ch.After, func(v any) { add(v, who) })
		}
	}
	for _, l := range use {
		sort.Strings(l)
	}
	return use, nil
}

// imageRefs adds the values of the attributes that name the images a
// resource of kind uses (kinds.Kind.ImageRefs).
func imageRefs(kind string, attrs map[string]any, add func(any)) {
	k, _ := kinds.Get(kind)
	for _, name := range k.ImageRefs {
		add(attrs[name])
	}
}

// imageInfos names the agent of the images of its answer and, with use,
// the stacks using each.
func imageInfos(agent string, l []api.ImageInfo, use map[string][]string, project string) []api.ImageInfo {
	out := []api.ImageInfo{}
	for _, e := range l {
		i := api.ImageInfo{Agent: agent, SHA256: e.SHA256, Format: e.Format, Size: e.Size}
		for _, who := range use[i.SHA256] {
			// A project's token sees its own stacks' names only.
			p, name, _ := strings.Cut(who, "/")
			if project == "" {
				i.Stacks = append(i.Stacks, who)
			} else if p == project {
				i.Stacks = append(i.Stacks, name)
			}
		}
		out = append(out, i)
	}
	return out
}

func sortImages(l []api.ImageInfo) {
	sort.Slice(l, func(i, j int) bool {
		if l[i].Agent != l[j].Agent {
			return l[i].Agent < l[j].Agent
		}
		return l[i].SHA256 < l[j].SHA256
	})
}

// handleImages answers `kiln image list`: every up agent's cache.
func (s *Server) handleImages(w http.ResponseWriter, r *http.Request) error {
	use, err := s.imagesInUse()
	if err != nil {
		use = map[string][]string{} // listing does not need certainty
	}
	answers, err := s.askAll(r.Context(), api.HostRequest{Op: api.HostImages, Images: &api.ImagesRequest{}}, hostWaitRead)
	if err != nil {
		return err
	}
	c := callerOf(r)
	out := []api.ImageInfo{}
	for agent, a := range answers {
		if a.Images != nil {
			out = append(out, imageInfos(agent, a.Images.Images, use, c.token.Project)...)
		}
	}
	sortImages(out)
	return writeJSON(w, http.StatusOK, out)
}

// handlePruneImages answers `kiln image prune`: every up agent removes the
// cached images no stack uses; the answer lists what was removed.
func (s *Server) handlePruneImages(w http.ResponseWriter, r *http.Request) error {
	use, err := s.imagesInUse()
	if err != nil {
		return err
	}
	inUse := make([]string, 0, len(use))
	for sum := range use {
		inUse = append(inUse, sum)
	}
	sort.Strings(inUse)
	answers, err := s.askAll(r.Context(), api.HostRequest{Op: api.HostPrune, Prune: &api.PruneRequest{InUse: inUse}}, hostWaitChange)
	out := []api.ImageInfo{}
	for agent, a := range answers {
		if a.Prune != nil {
			out = append(out, imageInfos(agent, a.Prune.Removed, nil, "")...)
		}
	}
	sortImages(out)
	if err != nil {
		if len(out) > 0 {
			return fmt.Errorf("%w (removed before the error: %d images)", err, len(out))
		}
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

// handleGC answers `kiln gc`: every up agent lists the objects tagged by
// kiln that no stack owns and, with ?force=true, removes them. A stack
// with an unfinished operation owns everything of its name (what it is
// making is not recorded yet).
func (s *Server) handleGC(w http.ResponseWriter, r *http.Request) error {
	force := false
	if v := r.URL.Query().Get("force"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return &httpError{code: http.StatusBadRequest, field: "force", msg: fmt.Sprintf("force %q is not true or false", v)}
		}
		force = b
	}
	// The agents know a stack by its scope (project and stack, see
	// executors.Scope), as its objects' owner tags carry it: stacks of one
	// name in two projects own different objects.
	st := s.store.State()
	req := &api.GCRequest{Owned: map[string][]string{}, Busy: []string{}, Force: force}
	for _, stk := range st.Stacks("") {
		scope := executors.Scope(stk.Project, stk.Name)
		l := req.Owned[scope]
		if l == nil {
			l = []string{}
		}
		for _, res := range st.Resources(stk.Project, stk.Name) {
			l = append(l, res.State.Address)
		}
		req.Owned[scope] = l
	}
	for _, op := range st.UnfinishedOperations() {
		req.Busy = append(req.Busy, executors.Scope(op.Project, op.Stack))
	}
	wait := hostWaitRead
	if force {
		wait = hostWaitChange
	}
	answers, err := s.askAll(r.Context(), api.HostRequest{Op: api.HostGC, GC: req}, wait)
	rep := api.GCReport{Orphans: []api.Orphan{}, Removed: force}
	for agent, a := range answers {
		if a.GC == nil {
			continue
		}
		for _, o := range a.GC.Orphans {
			o.Agent = agent
			rep.Orphans = append(rep.Orphans, o)
		}
	}
	if err != nil {
		return err
	}
	sort.SliceStable(rep.Orphans, func(i, j int) bool {
		a, b := rep.Orphans[i], rep.Orphans[j]
		if a.Agent != b.Agent {
			return a.Agent < b.Agent
		}
		if a.Owner != b.Owner {
			return a.Owner < b.Owner
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.Name < b.Name
	})
	return writeJSON(w, http.StatusOK, rep)
}

// handleConsole answers `kiln console STACK ADDRESS`: the serial console
// log of a server, asked of the agent that owns it. Without ?offset it is
// the log's last 256 KiB as text; with ?offset=N it is JSON
// {"text", "next", "size"} from byte N, for following.
func (s *Server) handleConsole(w http.ResponseWriter, r *http.Request) error {
	stk, err := s.stackOf(r)
	if err != nil {
		return err
	}
	address := r.PathValue("address")
	res, ok := s.store.State().Resource(stk.Project, stk.Name, address)
	if !ok {
		return errf(http.StatusNotFound, "stack %s has no resource %s", stk.Name, address)
	}
	if res.State.Kind != "server" {
		return errf(http.StatusBadRequest, "%s is a %s: only a server has a console", address, res.State.Kind)
	}
	if res.Node == "" || res.PhysicalName == "" {
		return errf(http.StatusNotFound, "%s has no domain on any agent yet", address)
	}
	if ag, ok := s.store.State().Agent(res.Node); !ok || ag.Status != raftstore.AgentUp {
		return errf(http.StatusServiceUnavailable, "%s lives on agent %s, which is down", address, res.Node)
	}
	req := &api.ConsoleRequest{Project: stk.Project, Stack: stk.Name, Name: res.PhysicalName, Offset: -1}
	asJSON := false
	if v := r.URL.Query().Get("offset"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return &httpError{code: http.StatusBadRequest, field: "offset", msg: fmt.Sprintf("offset %q is not a number", v)}
		}
		req.Offset, asJSON = n, true
	}
	a, err := s.askHost(r.Context(), res.Node, api.HostRequest{Op: api.HostConsole, Console: req}, hostWaitRead)
	if err != nil {
		var he *httpError
		if errors.As(err, &he) {
			return he
		}
		return errf(http.StatusBadGateway, "%v", err)
	}
	chunk := api.ConsoleChunk{}
	if a.Console != nil {
		chunk = *a.Console
	}
	if asJSON {
		return writeJSON(w, http.StatusOK, chunk)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, err = w.Write([]byte(chunk.Text))
	return err
}

// hasActionOf reports whether an operation has an action assigned to the
// agent: an agent reports events on its own work only.
func hasActionOf(op raftstore.Operation, agent string) bool {
	for _, a := range op.Actions {
		if a.Agent == agent {
			return true
		}
	}
	return false
}
