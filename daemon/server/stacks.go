package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/planner"
	"github.com/kiln-dev/kiln/raftstore"
	"github.com/kiln-dev/kiln/spec"
)

// stackOf returns the caller's stack named in the path; another project's
// stack does not exist for the caller (404).
func (s *Server) stackOf(r *http.Request) (raftstore.Stack, error) {
	c := callerOf(r)
	name := r.PathValue("stack")
	st, ok := s.store.State().Stack(c.project, name)
	if !ok {
		return st, errf(http.StatusNotFound, "stack %s not found", name)
	}
	return st, nil
}

func summary(st raftstore.Stack, resources int) api.StackSummary {
	return api.StackSummary{
		Name: st.Name, Project: st.Project, Status: string(st.Status), Resources: resources,
		Expires: st.Expires, Updated: st.Updated,
	}
}

func (s *Server) handleStacks(w http.ResponseWriter, r *http.Request) error {
	c := callerOf(r)
	out := []api.StackSummary{}
	for _, st := range s.store.State().Stacks(c.project) {
		out = append(out, summary(st, len(s.store.State().Resources(st.Project, st.Name))))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleStack(w http.ResponseWriter, r *http.Request) error {
	st, err := s.stackOf(r)
	if err != nil {
		return err
	}
	rs := s.store.State().Resources(st.Project, st.Name)
	d := api.StackDetail{
		StackSummary: summary(st, len(rs)), StatusReason: st.StatusReason, Serial: st.Serial,
		ActiveOperation: st.ActiveOperation, Resources: []api.ResourceInfo{},
		Outputs: outputs(st.Outputs, false),
	}
	for _, res := range rs {
		attrs := map[string]any{}
		for k, v := range res.State.Attrs {
			attrs[k] = wireValue(v, res.State.Sensitive[k])
		}
		for k, v := range res.State.Computed {
			attrs[k] = wireValue(v, res.State.Sensitive[k])
		}
		ri := api.ResourceInfo{
			Address: res.State.Address, Kind: res.State.Kind, Status: string(res.Status), Error: res.Error,
			Node: res.Node, PhysicalName: res.PhysicalName, Attrs: attrs, ReadySeconds: res.ReadySeconds,
		}
		if !res.ReadyAt.IsZero() {
			t := res.ReadyAt
			ri.ReadyAt = &t
		}
		d.Resources = append(d.Resources, ri)
	}
	w.Header().Set(api.IndexHeader, strconv.FormatUint(st.Index, 10))
	return writeJSON(w, http.StatusOK, d)
}

// wireValue shows a value to users: unknowns as "(known after apply)",
// sensitive ones hidden.
func wireValue(v any, sensitive bool) any {
	if sensitive {
		return "(sensitive)"
	}
	switch t := v.(type) {
	case spec.Unknown:
		return "(known after apply)"
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = wireValue(e, false)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = wireValue(e, false)
		}
		return out
	}
	return v
}

func outputs(outs map[string]spec.Output, showSensitive bool) map[string]api.OutputValue {
	res := map[string]api.OutputValue{}
	for k, o := range outs {
		res[k] = api.OutputValue{Value: wireValue(o.Value, o.Sensitive && !showSensitive), Sensitive: o.Sensitive}
	}
	return res
}

func (s *Server) handleOutputs(w http.ResponseWriter, r *http.Request) error {
	st, err := s.stackOf(r)
	if err != nil {
		return err
	}
	show := r.URL.Query().Get("sensitive") == "true"
	if show && !callerOf(r).member() {
		return errf(http.StatusForbidden, "a reader token cannot see sensitive outputs")
	}
	return writeJSON(w, http.StatusOK, outputs(st.Outputs, show))
}

func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) error {
	st, err := s.stackOf(r)
	if err != nil {
		return err
	}
	index, wait, err := waitParams(r)
	if err != nil {
		return err
	}
	state := s.store.State()
	var evs []raftstore.Event
	s.block(r.Context(), wait, func() bool {
		evs = state.Events(st.Project, st.Name, index, 0)
		return len(evs) > 0
	})
	resp := api.EventsResponse{Events: []api.Event{}, Index: max(state.Index(), index)}
	for _, e := range evs {
		resp.Events = append(resp.Events, api.Event{
			Index: e.Index, Time: e.Time, Stack: st.Name, Node: e.Node, Level: string(e.Level),
			Message: e.Message, Operation: e.Operation, Address: e.Address,
		})
		resp.Index = max(resp.Index, e.Index)
	}
	w.Header().Set(api.IndexHeader, strconv.FormatUint(resp.Index, 10))
	return writeJSON(w, http.StatusOK, resp)
}

// stackName returns the stack named in the path of a plan or apply,
// refused unless it is a valid name (the stack need not exist yet).
func stackName(r *http.Request) (string, error) {
	stack := r.PathValue("stack")
	if !spec.ValidName(stack) {
		return "", errf(http.StatusBadRequest, "stack name %q is not valid", stack)
	}
	return stack, nil
}

func (s *Server) handlePlan(w http.ResponseWriter, r *http.Request, req api.PlanRequest) error {
	c := callerOf(r)
	stack, err := stackName(r)
	if err != nil {
		return err
	}
	p, err := s.makePlan(r.Context(), c.project, stack, &req.Template, req.Destroy)
	if err != nil {
		return err
	}
	id, err := s.putPlan(r, p)
	if err != nil {
		return err
	}
	resp, err := planResponse(id, p)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, resp)
}

// putBundle stores the template bundle blob of a plan, once.
func (s *Server) putBundle(r *http.Request, p *plannedOp) error {
	if p.bundle == nil {
		return nil
	}
	if len(p.bundle) > raftstore.MaxBlobSize {
		return &httpError{code: http.StatusRequestEntityTooLarge, field: "template.bundle",
			msg: fmt.Sprintf("template bundle is %d bytes stored, over the limit of %d bytes (bundle size)", len(p.bundle), raftstore.MaxBlobSize)}
	}
	hash := raftstore.HashBlob(p.bundle)
	if s.store.State().HasBlob(hash) {
		return nil
	}
	return s.apply(r.Context(), &raftstore.PutBlob{Hash: hash, Data: p.bundle, Time: time.Now().UTC()})
}

// putPlan stores the plan blob (so that any later leader can find it by id)
// and the bundle it refers to, so that an apply of the plan id can record the
// stack's template.
func (s *Server) putPlan(r *http.Request, p *plannedOp) (string, error) {
	if err := s.putBundle(r, p); err != nil {
		return "", err
	}
	data, err := json.Marshal(p.stored)
	if err != nil {
		return "", err
	}
	if len(data) > raftstore.MaxBlobSize {
		return "", errf(http.StatusRequestEntityTooLarge, "plan is %d bytes stored, over the limit of %d bytes (plan size)", len(data), raftstore.MaxBlobSize)
	}
	// A plan is kept PlanTTL (and the oldest go first beyond the per-stack
	// and per-project caps): planning again stores it again.
	id := raftstore.HashBlob(data)
	now := time.Now().UTC()
	put := &raftstore.PutPlan{ID: id, Project: p.stored.Project, Stack: p.stored.Stack, Data: data,
		Expires: now.Add(s.cfg.PlanTTL), Time: now}
	if p.stored.Desired != nil {
		put.BundleHash = p.stored.Desired.BundleHash
	}
	if err := s.apply(r.Context(), put); err != nil {
		return "", err
	}
	p.id = id
	return id, nil
}

func parseTTL(field, v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, &httpError{code: http.StatusBadRequest, field: field, msg: fmt.Sprintf("ttl %q is not a duration like 2h", v)}
	}
	return d, nil
}

func (s *Server) handleApply(w http.ResponseWriter, r *http.Request, req api.ApplyRequest) error {
	c := callerOf(r)
	stack, err := stackName(r)
	if err != nil {
		return err
	}
	ttl, err := parseTTL("ttl", req.TTL)
	if err != nil {
		return err
	}
	var p *plannedOp
	switch {
	case req.PlanID != "" && req.Template != nil:
		return &httpError{code: http.StatusBadRequest, field: "plan_id", msg: "give either template or plan_id, not both"}
	case req.PlanID != "":
		p, err = s.loadPlan(c.project, stack, req.PlanID)
		if err != nil {
			return err
		}
		if p.stored.Kind != raftstore.OpApply {
			return &httpError{code: http.StatusBadRequest, field: "plan_id", msg: "plan " + req.PlanID + " is a destroy plan: use destroy"}
		}
		cur, _ := s.store.State().Stack(c.project, stack)
		if cur.Serial != p.stored.Serial {
			return errf(http.StatusConflict, "stale plan: the stack state changed since it was planned (serial %d, now %d); plan again", p.stored.Serial, cur.Serial)
		}
	case req.Template != nil:
		p, err = s.makePlan(r.Context(), c.project, stack, req.Template, false)
		if err != nil {
			return err
		}
		if err := s.putBundle(r, p); err != nil {
			return err
		}
	default:
		return &httpError{code: http.StatusBadRequest, field: "template", msg: "template or plan_id is required"}
	}
	now := time.Now().UTC()
	desired := *p.stored.Desired
	desired.Time = now
	if cur, ok := s.store.State().Stack(c.project, stack); ok {
		desired.Expires = cur.Expires
	}
	if ttl > 0 {
		desired.Expires = now.Add(ttl)
	}
	if !p.result.HasChanges() {
		if err := s.apply(r.Context(), &desired); err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, api.OperationRef{Stack: stack, NoChanges: true})
	}
	opID := "op-" + randomHex(8)
	cmd := &raftstore.StartOperation{
		ID: opID, Project: c.project, Stack: stack, Kind: raftstore.OpApply, Plan: *p.result,
		Serial: p.stored.Serial, Desired: &desired, Time: now,
		Events: []raftstore.Event{{Time: now, Node: s.cfg.NodeID, Message: "apply started: " + summaryText(p.result)}},
	}
	if err := s.apply(r.Context(), cmd); err != nil {
		return startError(err)
	}
	return writeJSON(w, http.StatusAccepted, api.OperationRef{OperationID: opID, Stack: stack})
}

func summaryText(p *planner.Result) string {
	sm := p.Summary()
	return fmt.Sprintf("%d to create, %d to update, %d to replace, %d to delete", sm.Create, sm.Update, sm.Replace, sm.Delete)
}

func startError(err error) error {
	switch {
	case errors.Is(err, raftstore.ErrStaleSerial):
		return errf(http.StatusConflict, "stale plan: %v; plan again", err)
	case errors.Is(err, raftstore.ErrConflict):
		return errf(http.StatusConflict, "%v", err)
	}
	return err
}

// loadPlan reads a stored plan of the caller's stack.
func (s *Server) loadPlan(project, stack, id string) (*plannedOp, error) {
	data, ok := s.store.State().Blob(id)
	if !ok {
		return nil, &httpError{code: http.StatusNotFound, field: "plan_id", msg: "plan " + id + " not found"}
	}
	var sp storedPlan
	if err := json.Unmarshal(data, &sp); err != nil || sp.Plan == nil {
		return nil, &httpError{code: http.StatusNotFound, field: "plan_id", msg: "plan " + id + " not found"}
	}
	if sp.Project != project || sp.Stack != stack {
		return nil, &httpError{code: http.StatusNotFound, field: "plan_id", msg: "plan " + id + " not found for stack " + stack}
	}
	var res planner.Result
	if err := json.Unmarshal(sp.Plan, &res); err != nil {
		return nil, fmt.Errorf("plan %s: %w", id, err)
	}
	return &plannedOp{stored: sp, result: &res, id: id}, nil
}

// startDestroy plans and starts the destroy of a stack.
func (s *Server) startDestroy(r *http.Request, project, stack string, forget bool, reason string) (api.OperationRef, int, error) {
	st, ok := s.store.State().Stack(project, stack)
	if !ok {
		return api.OperationRef{}, 0, errf(http.StatusNotFound, "stack %s not found", stack)
	}
	if st.ActiveOperation != "" {
		return api.OperationRef{}, 0, errf(http.StatusConflict, "stack %s has an unfinished operation %s; wait for it or cancel it", stack, st.ActiveOperation)
	}
	p, err := s.makePlan(r.Context(), project, stack, nil, true)
	if err != nil {
		return api.OperationRef{}, 0, err
	}
	id, err := s.startDestroyOp(r, p, forget, reason)
	if err != nil {
		return api.OperationRef{}, 0, err
	}
	return api.OperationRef{OperationID: id, Stack: stack}, http.StatusAccepted, nil
}

func (s *Server) startDestroyOp(r *http.Request, p *plannedOp, forget bool, reason string) (string, error) {
	now := time.Now().UTC()
	opID := "op-" + randomHex(8)
	cmd := &raftstore.StartOperation{
		ID: opID, Project: p.stored.Project, Stack: p.stored.Stack, Kind: raftstore.OpDestroy, Plan: *p.result,
		Serial: p.stored.Serial, Forget: forget, Time: now,
		Events: []raftstore.Event{{Time: now, Node: s.cfg.NodeID, Message: reason}},
	}
	if err := s.apply(r.Context(), cmd); err != nil {
		return "", startError(err)
	}
	return opID, nil
}

// handleDestroy starts the destroy of a stack; its body (DestroyRequest)
// holds nothing, but a wrong one is refused.
func (s *Server) handleDestroy(w http.ResponseWriter, r *http.Request, _ api.DestroyRequest) error {
	c := callerOf(r)
	ref, code, err := s.startDestroy(r, c.project, r.PathValue("stack"), false, "destroy started")
	if err != nil {
		return err
	}
	return writeJSON(w, code, ref)
}

// handleDeleteStack destroys the stack and forgets it once destroyed; a
// stack with nothing left is forgotten at once.
func (s *Server) handleDeleteStack(w http.ResponseWriter, r *http.Request) error {
	c := callerOf(r)
	st, err := s.stackOf(r)
	if err != nil {
		return err
	}
	if st.ActiveOperation == "" && len(s.store.State().Resources(st.Project, st.Name)) == 0 {
		if err := s.apply(r.Context(), &raftstore.DeleteStack{Project: st.Project, Name: st.Name}); err != nil {
			return err
		}
		return writeJSON(w, http.StatusAccepted, api.OperationRef{Stack: st.Name, NoChanges: true})
	}
	ref, code, err := s.startDestroy(r, c.project, st.Name, true, "delete started: destroy, then forget the stack")
	if err != nil {
		return err
	}
	return writeJSON(w, code, ref)
}

func (s *Server) handleRenew(w http.ResponseWriter, r *http.Request) error {
	st, err := s.stackOf(r)
	if err != nil {
		return err
	}
	var req api.RenewRequest
	if err := decode(r, &req, false); err != nil {
		return err
	}
	if req.TTL == "" {
		return &httpError{code: http.StatusBadRequest, field: "ttl", msg: "ttl is required (0 clears it)"}
	}
	ttl, err := parseTTL("ttl", req.TTL)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	var exp time.Time
	if ttl > 0 {
		exp = now.Add(ttl)
	}
	if err := s.apply(r.Context(), &raftstore.RenewTTL{Project: st.Project, Name: st.Name, Expires: exp, Time: now}); err != nil {
		return err
	}
	return s.handleStack(w, r)
}

func opView(o raftstore.Operation) api.Operation {
	out := api.Operation{
		ID: o.ID, Stack: o.Stack, Kind: string(o.Kind), Status: string(o.Status), Error: o.Error,
		Serial: o.Serial, Created: o.Created, Started: o.Started, Finished: o.Finished,
		Actions: []api.ActionStatus{},
	}
	if o.Status == raftstore.OpDone {
		out.Status = "complete"
	}
	for _, a := range o.Actions {
		if a.Action == planner.NoOp {
			continue
		}
		as := api.ActionStatus{
			Address: a.Address, Action: a.Action.String(), Status: string(a.Status), Error: a.Error,
			Agent: a.Agent, Started: a.Started, Finished: a.Finished, ReadySeconds: a.ReadySeconds,
		}
		if a.ReadySeconds > 0 && !a.Finished.IsZero() {
			t := a.Finished
			as.ReadyAt = &t
		}
		out.Actions = append(out.Actions, as)
	}
	return out
}

func (s *Server) opOf(r *http.Request) (raftstore.Operation, error) {
	c := callerOf(r)
	id := r.PathValue("id")
	o, ok := s.store.State().OperationSummary(id)
	if !ok || o.Project != c.project {
		return o, errf(http.StatusNotFound, "operation %s not found", id)
	}
	return o, nil
}

func (s *Server) handleOperation(w http.ResponseWriter, r *http.Request) error {
	o, err := s.opOf(r)
	if err != nil {
		return err
	}
	index, wait, err := waitParams(r)
	if err != nil {
		return err
	}
	var since uint64
	if v := r.URL.Query().Get("since"); v != "" {
		if since, err = strconv.ParseUint(v, 10, 64); err != nil {
			return &httpError{code: http.StatusBadRequest, field: "since", msg: fmt.Sprintf("since %q is not a state index", v)}
		}
	}
	st := s.store.State()
	s.block(r.Context(), wait, func() bool {
		idx, ok := st.OperationIndex(o.ID)
		return !ok || idx > index
	})
	if cur, ok := st.OperationSummary(o.ID); ok {
		o = cur
	}
	if since > 0 {
		// Only the actions changed since: a follower of a large operation
		// gets what is new, not every action again.
		changed := o.Actions[:0]
		for _, a := range o.Actions {
			if a.Index > since {
				changed = append(changed, a)
			}
		}
		o.Actions = changed
	}
	w.Header().Set(api.IndexHeader, strconv.FormatUint(o.Index, 10))
	return writeJSON(w, http.StatusOK, opView(o))
}

func (s *Server) handleCancel(w http.ResponseWriter, r *http.Request) error {
	o, err := s.opOf(r)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	err = s.apply(r.Context(), &raftstore.CancelOperation{
		ID: o.ID, Reason: "cancelled by " + callerOf(r).token.ID, Time: now,
		Events: []raftstore.Event{{Time: now, Node: s.cfg.NodeID, Level: raftstore.LevelWarn, Message: "cancel requested"}},
	})
	if err != nil {
		return err
	}
	o, _ = s.store.State().OperationSummary(o.ID)
	return writeJSON(w, http.StatusOK, opView(o))
}
