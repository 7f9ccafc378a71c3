package raftstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/kiln-dev/kiln/planner"
	"github.com/kiln-dev/kiln/spec"
)

var (
	t0         = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	bundle     = []byte(`server "web" {}`)
	bundleHash = HashBlob(bundle)
)

// harness applies commands to an FSM without raft, as raft would: one log
// entry after another with rising indexes.
type harness struct {
	t   testing.TB
	f   *FSM
	idx uint64
}

func newHarness(t testing.TB) *harness { return &harness{t: t, f: NewFSM()} }

func (h *harness) apply(c Command) error {
	h.t.Helper()
	data, err := Encode(c)
	if err != nil {
		h.t.Fatal(err)
	}
	return h.applyRaw(data)
}

// applyRaw applies a log entry's bytes as they are.
func (h *harness) applyRaw(data []byte) error {
	h.idx++
	resp := h.f.Apply(&raft.Log{Index: h.idx, Type: raft.LogCommand, Data: data})
	if err, ok := resp.(error); ok {
		return err
	}
	return nil
}

func (h *harness) must(cs ...Command) {
	h.t.Helper()
	for _, c := range cs {
		if err := h.apply(c); err != nil {
			h.t.Fatalf("%T: %v", c, err)
		}
	}
}

func (h *harness) state() *State { return h.f.State() }

// restored snapshots the harness's FSM and restores the snapshot into a new
// FSM, as a follower catching up from a snapshot would.
func (h *harness) restored() *FSM {
	h.t.Helper()
	snap, err := h.f.Snapshot()
	if err != nil {
		h.t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		h.t.Fatal(err)
	}
	snap.Release()
	f := NewFSM()
	if err := f.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		h.t.Fatal(err)
	}
	return f
}

func testPlan(serial uint64) planner.Result {
	return planner.Result{
		Stack:  "web",
		Serial: serial,
		Changes: []planner.Change{
			{Address: "image.base", Kind: "image", Action: planner.NoOp},
			{Address: "network.lan", Kind: "network", Action: planner.Create,
				After: map[string]any{"cidr": "10.20.0.0/24", "nat": true}},
			{Address: "server.web[0]", Kind: "server", Action: planner.Create,
				After:     map[string]any{"cpus": float64(1), "networks": []any{map[string]any{"name": "lan"}}},
				DependsOn: []string{"network.lan"}},
		},
		Outputs: map[string]spec.Output{"addr": {Name: "addr", Value: "10.20.0.10"}},
	}
}

func putStack() *PutStack {
	return &PutStack{Project: "p", Name: "web", BundleHash: bundleHash,
		Vars:    []spec.RawVar{{Name: "web_count", Value: "2"}},
		Expires: t0.Add(2 * time.Hour), Time: t0}
}

func startOp(id string, serial uint64) *StartOperation {
	return &StartOperation{ID: id, Project: "p", Stack: "web", Kind: OpApply,
		Plan: testPlan(serial), Serial: serial, Time: t0,
		Events: []Event{{Time: t0, Node: "n1", Message: "apply started"}}}
}

func resource(addr string) *Resource {
	return &Resource{Project: "p", Stack: "web", PhysicalName: "kiln-p-web-" + addr,
		Status: ResourceReady, Node: "agent-1",
		State: planner.ResourceState{Address: addr, Kind: "network",
			Attrs: map[string]any{"cidr": "10.20.0.0/24"}, Computed: map[string]any{"id": "br-1"}}}
}

func agent(id string) *RegisterAgent {
	return &RegisterAgent{ID: id, Address: "10.0.0.1:4647",
		Capacity: capacity(),
		Images:   []string{"sha256:aa"}, Time: t0}
}

func capacity() Capacity {
	return Capacity{CPUs: 8, MemoryBytes: 16 << 30, DiskBytes: 100 << 30, CPURatio: 32, MemoryRatio: 1.5,
		Accel: "kvm", AccelReason: "/dev/kvm opens and a probe guest ran under KVM.",
		HostPortsLo: 10000, HostPortsHi: 60000, ReservedPorts: []int{4646, 8775}}
}

// base is the setup most cases start from: a blob, a stack, an agent.
func base() []Command {
	return []Command{&PutBlob{Hash: bundleHash, Data: bundle}, putStack(), agent("agent-1")}
}

func withOpStarted() []Command { return append(base(), startOp("op1", 0)) }

// fsmCase applies cmd after setup: a refusal must match wantErr and change
// nothing; a success must bump the index, then pass check.
type fsmCase struct {
	name    string
	setup   []Command
	cmd     Command
	wantErr error
	check   func(t *testing.T, s *State)
}

func TestFSMCommands(t *testing.T) {
	runFSMCases(t, []fsmCase{
		{
			name: "put blob",
			cmd:  &PutBlob{Hash: bundleHash, Data: bundle},
			check: func(t *testing.T, s *State) {
				if b, ok := s.Blob(bundleHash); !ok || !bytes.Equal(b, bundle) {
					t.Errorf("blob = %q, %v", b, ok)
				}
			},
		},
		{
			name:    "put blob with a wrong hash",
			cmd:     &PutBlob{Hash: HashBlob([]byte("other")), Data: bundle},
			wantErr: ErrInvalid,
		},
		{
			name: "put a blob over the limit",
			cmd: func() Command {
				big := make([]byte, MaxBlobSize+1)
				return &PutBlob{Hash: HashBlob(big), Data: big}
			}(),
			wantErr: ErrTooLarge,
		},
		{
			name:    "delete a blob a stack uses",
			setup:   base(),
			cmd:     &DeleteBlob{Hash: bundleHash},
			wantErr: ErrConflict,
		},
		{
			name:  "delete an unused blob",
			setup: []Command{&PutBlob{Hash: bundleHash, Data: bundle}},
			cmd:   &DeleteBlob{Hash: bundleHash},
			check: func(t *testing.T, s *State) {
				if s.HasBlob(bundleHash) {
					t.Error("blob still there")
				}
			},
		},
		{
			name: "upsert project",
			cmd:  &UpsertProject{Name: "p", Time: t0},
			check: func(t *testing.T, s *State) {
				if p, ok := s.Project("p"); !ok || !p.Created.Equal(t0) {
					t.Errorf("project = %+v, %v", p, ok)
				}
			},
		},
		{
			name: "create token",
			cmd:  &CreateToken{ID: "t1", Project: "p", Role: RoleMember, SecretHash: HashSecret("s3cret"), Time: t0},
			check: func(t *testing.T, s *State) {
				tok, ok := s.TokenBySecret("s3cret")
				if !ok || tok.ID != "t1" || tok.Role != RoleMember {
					t.Errorf("token = %+v, %v", tok, ok)
				}
				if _, ok := s.TokenBySecret("wrong"); ok {
					t.Error("a wrong secret finds a token")
				}
				if _, ok := s.Project("p"); !ok {
					t.Error("project not created with the token")
				}
			},
		},
		{
			name:    "create token with an unknown role",
			cmd:     &CreateToken{ID: "t1", Project: "p", Role: "root", SecretHash: HashSecret("x"), Time: t0},
			wantErr: ErrInvalid,
		},
		{
			name:    "create token twice",
			setup:   []Command{&CreateToken{ID: "t1", Project: "p", Role: RoleReader, SecretHash: HashSecret("a")}},
			cmd:     &CreateToken{ID: "t1", Project: "p", Role: RoleReader, SecretHash: HashSecret("b")},
			wantErr: ErrConflict,
		},
		{
			name:  "revoke token",
			setup: []Command{&CreateToken{ID: "t1", Project: "p", Role: RoleReader, SecretHash: HashSecret("a")}},
			cmd:   &RevokeToken{ID: "t1"},
			check: func(t *testing.T, s *State) {
				if _, ok := s.TokenBySecret("a"); ok {
					t.Error("revoked token still valid")
				}
			},
		},
		{
			name:    "revoke unknown token",
			cmd:     &RevokeToken{ID: "nope"},
			wantErr: ErrNotFound,
		},
		{
			name:  "put stack",
			setup: []Command{&PutBlob{Hash: bundleHash, Data: bundle}},
			cmd:   putStack(),
			check: func(t *testing.T, s *State) {
				st, ok := s.Stack("p", "web")
				if !ok || st.Generation != 1 || st.Status != StackPending || st.BundleHash != bundleHash ||
					!st.Expires.Equal(t0.Add(2*time.Hour)) || len(st.Vars) != 1 {
					t.Errorf("stack = %+v, %v", st, ok)
				}
			},
		},
		{
			name:  "put stack again raises the generation",
			setup: base(),
			cmd:   putStack(),
			check: func(t *testing.T, s *State) {
				if st, _ := s.Stack("p", "web"); st.Generation != 2 {
					t.Errorf("generation = %d", st.Generation)
				}
			},
		},
		{
			name:    "put stack without its bundle",
			cmd:     putStack(),
			wantErr: ErrNotFound,
		},
		{
			name:    "delete stack with resources",
			setup:   append(base(), &UpsertResource{Resource: *resource("network.lan")}),
			cmd:     &DeleteStack{Project: "p", Name: "web"},
			wantErr: ErrConflict,
		},
		{
			name:    "delete stack during an operation",
			setup:   withOpStarted(),
			cmd:     &DeleteStack{Project: "p", Name: "web", Force: true},
			wantErr: ErrConflict,
		},
		{
			name:  "delete stack with force",
			setup: append(base(), &UpsertResource{Resource: *resource("network.lan")}),
			cmd:   &DeleteStack{Project: "p", Name: "web", Force: true},
			check: func(t *testing.T, s *State) {
				if _, ok := s.Stack("p", "web"); ok {
					t.Error("stack still there")
				}
				if len(s.Resources("p", "web")) != 0 || s.HasBlob(bundleHash) {
					t.Error("resources or bundle left behind")
				}
			},
		},
		{
			name:  "renew TTL",
			setup: base(),
			cmd:   &RenewTTL{Project: "p", Name: "web", Expires: t0.Add(5 * time.Hour), Time: t0},
			check: func(t *testing.T, s *State) {
				if n := len(s.ExpiredStacks(t0.Add(3 * time.Hour))); n != 0 {
					t.Errorf("%d expired stacks after renew", n)
				}
				if n := len(s.ExpiredStacks(t0.Add(5 * time.Hour))); n != 1 {
					t.Errorf("%d expired stacks at expiry", n)
				}
			},
		},
		{
			name:  "start operation",
			setup: base(),
			cmd:   startOp("op1", 0),
			check: func(t *testing.T, s *State) {
				o, ok := s.Operation("op1")
				if !ok || o.Status != OpPending || len(o.Actions) != 3 {
					t.Fatalf("operation = %+v, %v", o, ok)
				}
				want := []ActionStatus{ActionDone, ActionPending, ActionPending} // the no-op is done
				for i, a := range o.Actions {
					if a.Status != want[i] {
						t.Errorf("action %s = %s, want %s", a.Address, a.Status, want[i])
					}
				}
				st, _ := s.Stack("p", "web")
				if st.Status != StackInProgress || st.ActiveOperation != "op1" {
					t.Errorf("stack = %s %q", st.Status, st.ActiveOperation)
				}
				evs := s.Events("p", "web", 0, 0)
				if len(evs) != 1 || evs[0].Operation != "op1" || evs[0].Seq != 1 {
					t.Errorf("events = %+v", evs)
				}
				if len(s.UnfinishedOperations()) != 1 {
					t.Error("operation not listed as unfinished")
				}
			},
		},
		{
			name:    "start operation on a stale serial",
			setup:   append(base(), &UpsertResource{Resource: *resource("network.lan")}),
			cmd:     startOp("op1", 0),
			wantErr: ErrStaleSerial,
		},
		{
			name:    "start a second operation",
			setup:   withOpStarted(),
			cmd:     startOp("op2", 0),
			wantErr: ErrConflict,
		},
		{
			name:    "start operation of an unknown stack",
			cmd:     startOp("op1", 0),
			wantErr: ErrNotFound,
		},
		{
			name:  "start operation with its desired state",
			setup: []Command{&PutBlob{Hash: bundleHash, Data: bundle}},
			cmd: func() Command {
				c := startOp("op1", 0)
				c.Desired = putStack()
				return c
			}(),
			check: func(t *testing.T, s *State) {
				st, ok := s.Stack("p", "web")
				if !ok || st.Generation != 1 || st.ActiveOperation != "op1" {
					t.Errorf("stack = %+v, %v", st, ok)
				}
			},
		},
		{
			name:  "cancel operation",
			setup: withOpStarted(),
			cmd:   &CancelOperation{ID: "op1", Reason: "user asked", Time: t0},
			check: func(t *testing.T, s *State) {
				if o, _ := s.Operation("op1"); !o.CancelRequested || o.Status.Final() {
					t.Errorf("operation = %s cancel=%v", o.Status, o.CancelRequested)
				}
			},
		},
		{
			name:  "action started",
			setup: withOpStarted(),
			cmd:   &ActionStarted{Operation: "op1", Address: "network.lan", Agent: "agent-1", Time: t0},
			check: func(t *testing.T, s *State) {
				o, _ := s.Operation("op1")
				a := o.Action("network.lan")
				if o.Status != OpRunning || a.Status != ActionRunning || a.Attempts != 1 || a.Agent != "agent-1" {
					t.Errorf("op %s, action %+v", o.Status, a)
				}
			},
		},
		{
			name:    "action started in an unknown operation",
			cmd:     &ActionStarted{Operation: "nope", Address: "network.lan"},
			wantErr: ErrNotFound,
		},
		{
			name:  "action finished with its resource",
			setup: append(withOpStarted(), &ActionStarted{Operation: "op1", Address: "network.lan"}),
			cmd: &ActionFinished{Operation: "op1", Address: "network.lan", Status: ActionDone,
				Resource: resource("network.lan"), Time: t0,
				Events: []Event{{Time: t0, Node: "n1", Message: "created"}}},
			check: func(t *testing.T, s *State) {
				o, _ := s.Operation("op1")
				if a := o.Action("network.lan"); a.Status != ActionDone {
					t.Errorf("action = %s", a.Status)
				}
				r, ok := s.Resource("p", "web", "network.lan")
				if !ok || r.PhysicalName != "kiln-p-web-network.lan" || r.State.Computed["id"] != "br-1" {
					t.Errorf("resource = %+v, %v", r, ok)
				}
				if st, _ := s.Stack("p", "web"); st.Serial != 1 {
					t.Errorf("serial = %d, want 1", st.Serial)
				}
				if ps := s.PlannerState("p", "web"); ps.Serial != 1 || len(ps.Resources) != 1 {
					t.Errorf("planner state = %+v", ps)
				}
				evs := s.Events("p", "web", 0, 0)
				if last := evs[len(evs)-1]; last.Address != "network.lan" || last.Seq != 2 {
					t.Errorf("event = %+v", last)
				}
			},
		},
		{
			name:  "action failed skips its dependents",
			setup: append(withOpStarted(), &ActionStarted{Operation: "op1", Address: "network.lan"}),
			cmd: &ActionFinished{Operation: "op1", Address: "network.lan", Status: ActionFailed,
				Error: "bridge exists", Skip: []string{"server.web[0]"}, SkipReason: "network.lan failed", Time: t0},
			check: func(t *testing.T, s *State) {
				o, _ := s.Operation("op1")
				if a := o.Action("network.lan"); a.Status != ActionFailed || a.Error != "bridge exists" {
					t.Errorf("failed action = %+v", a)
				}
				if a := o.Action("server.web[0]"); a.Status != ActionSkipped || a.Error != "network.lan failed" {
					t.Errorf("dependent = %+v", a)
				}
				if st, _ := s.Stack("p", "web"); st.Serial != 0 {
					t.Errorf("serial moved to %d without a resource change", st.Serial)
				}
			},
		},
		{
			name:  "pending action cancelled",
			setup: withOpStarted(),
			cmd: &ActionFinished{Operation: "op1", Address: "server.web[0]", Status: ActionCancelled, Error: "cancelled", Time: t0,
				Events: []Event{{Time: t0, Node: "n1", Level: LevelWarn, Message: "server.web[0] cancelled: cancelled"}}},
			check: func(t *testing.T, s *State) {
				o, _ := s.Operation("op1")
				if a := o.Action("server.web[0]"); a.Status != ActionCancelled || !a.Status.Final() || a.Error != "cancelled" {
					t.Errorf("action = %s %q", a.Status, a.Error)
				}
			},
		},
		{
			name:    "running action cancelled",
			setup:   append(withOpStarted(), &ActionStarted{Operation: "op1", Address: "network.lan"}),
			cmd:     &ActionFinished{Operation: "op1", Address: "network.lan", Status: ActionCancelled},
			wantErr: ErrConflict,
		},
		{
			name: "operation cancelled after its actions were",
			setup: append(withOpStarted(),
				&ActionFinished{Operation: "op1", Address: "network.lan", Status: ActionCancelled, Error: "cancelled"},
				&ActionFinished{Operation: "op1", Address: "server.web[0]", Status: ActionCancelled, Error: "cancelled"}),
			cmd: &FinishOperation{ID: "op1", Status: OpCancelled, Error: "cancelled", Time: t0},
			check: func(t *testing.T, s *State) {
				o, _ := s.Operation("op1")
				for _, a := range o.Actions {
					if a.Action != planner.NoOp && a.Status != ActionCancelled {
						t.Errorf("%s = %s, want cancelled", a.Address, a.Status)
					}
				}
				if st, _ := s.Stack("p", "web"); st.Status != StackCancelled {
					t.Errorf("stack = %s", st.Status)
				}
			},
		},
		{
			name:    "action finished with a bad status",
			setup:   withOpStarted(),
			cmd:     &ActionFinished{Operation: "op1", Address: "network.lan", Status: "great"},
			wantErr: ErrInvalid,
		},
		{
			name:    "operation done with pending actions",
			setup:   withOpStarted(),
			cmd:     &FinishOperation{ID: "op1", Status: OpDone, Time: t0},
			wantErr: ErrConflict,
		},
		{
			name: "operation done",
			setup: append(withOpStarted(),
				&ActionFinished{Operation: "op1", Address: "network.lan", Status: ActionDone, Resource: resource("network.lan")},
				&ActionFinished{Operation: "op1", Address: "server.web[0]", Status: ActionDone}),
			cmd: &FinishOperation{ID: "op1", Status: OpDone, Time: t0.Add(time.Minute),
				Outputs: map[string]spec.Output{"addr": {Name: "addr", Value: "10.20.0.10"}}},
			check: func(t *testing.T, s *State) {
				st, _ := s.Stack("p", "web")
				if st.Status != StackComplete || st.ActiveOperation != "" || st.Outputs["addr"].Value != "10.20.0.10" {
					t.Errorf("stack = %+v", st)
				}
				if o, _ := s.Operation("op1"); o.Status != OpDone || !o.Finished.Equal(t0.Add(time.Minute)) {
					t.Errorf("operation = %s %v", o.Status, o.Finished)
				}
				if len(s.UnfinishedOperations()) != 0 {
					t.Error("finished operation listed as unfinished")
				}
			},
		},
		{
			name:  "operation failed",
			setup: append(withOpStarted(), &ActionStarted{Operation: "op1", Address: "network.lan"}),
			cmd:   &FinishOperation{ID: "op1", Status: OpFailed, Error: "agent lost", Time: t0},
			check: func(t *testing.T, s *State) {
				st, _ := s.Stack("p", "web")
				if st.Status != StackFailed || st.StatusReason != "agent lost" {
					t.Errorf("stack = %s %q", st.Status, st.StatusReason)
				}
				o, _ := s.Operation("op1")
				if a := o.Action("network.lan"); a.Status != ActionFailed {
					t.Errorf("running action = %s", a.Status)
				}
				if a := o.Action("server.web[0]"); a.Status != ActionSkipped {
					t.Errorf("pending action = %s", a.Status)
				}
			},
		},
		{
			name: "destroy done",
			setup: append(base(), &StartOperation{ID: "d1", Project: "p", Stack: "web", Kind: OpDestroy,
				Plan: planner.Result{Stack: "web"}, Time: t0}),
			cmd: &FinishOperation{ID: "d1", Status: OpDone, Time: t0},
			check: func(t *testing.T, s *State) {
				if st, _ := s.Stack("p", "web"); st.Status != StackDestroyed {
					t.Errorf("stack = %s", st.Status)
				}
			},
		},
		{
			name:    "finish an operation twice",
			setup:   append(withOpStarted(), &FinishOperation{ID: "op1", Status: OpCancelled}),
			cmd:     &FinishOperation{ID: "op1", Status: OpFailed},
			wantErr: ErrConflict,
		},
		{
			name:  "assign action",
			setup: withOpStarted(),
			cmd:   &AssignAction{Operation: "op1", Address: "server.web[0]", Agent: "agent-1", Time: t0},
			check: func(t *testing.T, s *State) {
				as := s.Assignments("agent-1")
				if len(as) != 1 || as[0].Action.Address != "server.web[0]" || as[0].Change.Kind != "server" {
					t.Errorf("assignments = %+v", as)
				}
			},
		},
		{
			name:    "assign action to an unknown agent",
			setup:   withOpStarted(),
			cmd:     &AssignAction{Operation: "op1", Address: "server.web[0]", Agent: "agent-9"},
			wantErr: ErrNotFound,
		},
		{
			name:    "assign action to a down agent",
			setup:   append(withOpStarted(), &MarkAgentDown{ID: "agent-1"}),
			cmd:     &AssignAction{Operation: "op1", Address: "server.web[0]", Agent: "agent-1"},
			wantErr: ErrConflict,
		},
		{
			name:  "upsert resource",
			setup: base(),
			cmd:   &UpsertResource{Resource: *resource("network.lan"), Time: t0},
			check: func(t *testing.T, s *State) {
				if st, _ := s.Stack("p", "web"); st.Serial != 1 {
					t.Errorf("serial = %d", st.Serial)
				}
			},
		},
		{
			name:    "upsert resource of an unknown stack",
			cmd:     &UpsertResource{Resource: *resource("network.lan")},
			wantErr: ErrNotFound,
		},
		{
			name:  "delete resource",
			setup: append(base(), &UpsertResource{Resource: *resource("network.lan")}),
			cmd:   &DeleteResource{Project: "p", Stack: "web", Address: "network.lan"},
			check: func(t *testing.T, s *State) {
				if _, ok := s.Resource("p", "web", "network.lan"); ok {
					t.Error("resource still there")
				}
				if st, _ := s.Stack("p", "web"); st.Serial != 2 {
					t.Errorf("serial = %d, want 2", st.Serial)
				}
			},
		},
		{
			name:  "append events",
			setup: base(),
			cmd:   &AppendEvents{Project: "p", Stack: "web", Events: []Event{{Message: "a"}, {Message: "b", Level: LevelError}}},
			check: func(t *testing.T, s *State) {
				evs := s.Events("p", "web", 0, 0)
				if len(evs) != 2 || evs[0].Level != LevelInfo || evs[1].Seq != 2 || evs[1].Index != s.Index() {
					t.Errorf("events = %+v", evs)
				}
				if len(s.Events("p", "web", s.Index(), 0)) != 0 {
					t.Error("events after the current index")
				}
			},
		},
		{
			name:    "append events to an unknown stack",
			cmd:     &AppendEvents{Project: "p", Stack: "web", Events: []Event{{Message: "a"}}},
			wantErr: ErrNotFound,
		},
		{
			name: "register agent",
			cmd:  agent("agent-1"),
			check: func(t *testing.T, s *State) {
				a, ok := s.Agent("agent-1")
				if !ok || a.Status != AgentUp || !reflect.DeepEqual(a.Capacity, capacity()) {
					t.Errorf("agent = %+v, %v", a, ok)
				}
			},
		},
		{
			name: "register an agent that reports no ratios nor accelerator",
			cmd:  &RegisterAgent{ID: "agent-1", Capacity: Capacity{CPUs: 2}, Time: t0},
			check: func(t *testing.T, s *State) {
				a, _ := s.Agent("agent-1")
				if !reflect.DeepEqual(a.Capacity, Capacity{CPUs: 2}) {
					t.Errorf("capacity = %+v", a.Capacity)
				}
			},
		},
		{
			name:  "register again replaces the ratios and the accelerator",
			setup: []Command{agent("agent-1")},
			cmd: &RegisterAgent{ID: "agent-1", Time: t0.Add(time.Minute),
				Capacity: Capacity{CPUs: 8, CPURatio: 4, MemoryRatio: 1, Accel: "tcg", AccelReason: "/dev/kvm is missing."}},
			check: func(t *testing.T, s *State) {
				a, _ := s.Agent("agent-1")
				want := Capacity{CPUs: 8, CPURatio: 4, MemoryRatio: 1, Accel: "tcg", AccelReason: "/dev/kvm is missing."}
				if !reflect.DeepEqual(a.Capacity, want) || !a.Registered.Equal(t0) {
					t.Errorf("agent = %+v", a)
				}
			},
		},
		{
			name:  "agent heartbeat",
			setup: []Command{agent("agent-1"), &MarkAgentDown{ID: "agent-1", Reason: "missed heartbeats"}},
			cmd:   &AgentHeartbeat{ID: "agent-1", Images: []string{"sha256:bb"}, Time: t0.Add(time.Minute)},
			check: func(t *testing.T, s *State) {
				a, _ := s.Agent("agent-1")
				if a.Status != AgentUp || !a.LastHeartbeat.Equal(t0.Add(time.Minute)) || a.Images[0] != "sha256:bb" || !reflect.DeepEqual(a.Capacity, capacity()) {
					t.Errorf("agent = %+v", a)
				}
			},
		},
		{
			name:  "heartbeat with a capacity replaces the ratios and the accelerator",
			setup: []Command{agent("agent-1")},
			cmd: &AgentHeartbeat{ID: "agent-1", Time: t0.Add(time.Minute),
				Capacity: &Capacity{CPUs: 8, MemoryBytes: 16 << 30, CPURatio: 2, MemoryRatio: 1.25, Accel: "tcg"}},
			check: func(t *testing.T, s *State) {
				a, _ := s.Agent("agent-1")
				want := Capacity{CPUs: 8, MemoryBytes: 16 << 30, CPURatio: 2, MemoryRatio: 1.25, Accel: "tcg"}
				if !reflect.DeepEqual(a.Capacity, want) {
					t.Errorf("capacity = %+v, want %+v", a.Capacity, want)
				}
			},
		},
		{
			name:    "heartbeat of an unknown agent",
			cmd:     &AgentHeartbeat{ID: "agent-1"},
			wantErr: ErrNotFound,
		},
		{
			name: "mark agent down unassigns its pending actions",
			setup: append(withOpStarted(),
				&AssignAction{Operation: "op1", Address: "network.lan", Agent: "agent-1"},
				&AssignAction{Operation: "op1", Address: "server.web[0]", Agent: "agent-1"},
				&ActionStarted{Operation: "op1", Address: "network.lan"}),
			cmd: &MarkAgentDown{ID: "agent-1", Reason: "missed heartbeats", Time: t0},
			check: func(t *testing.T, s *State) {
				a, _ := s.Agent("agent-1")
				if a.Status != AgentDown || a.StatusReason != "missed heartbeats" {
					t.Errorf("agent = %+v", a)
				}
				o, _ := s.Operation("op1")
				if o.Action("server.web[0]").Agent != "" {
					t.Error("pending action still assigned")
				}
				if o.Action("network.lan").Agent != "agent-1" {
					t.Error("running action lost its agent")
				}
			},
		},
	})
	runFSMCases(t, finalActionCases())
}

// finalActionCases: an action in any final status (done, failed, skipped,
// cancelled) is neither started nor finished again.
func finalActionCases() []fsmCase {
	var out []fsmCase
	for _, st := range ActionStatuses {
		if !st.Final() {
			continue
		}
		finished := func() []Command {
			return append(withOpStarted(), &ActionFinished{Operation: "op1", Address: "network.lan", Status: st})
		}
		out = append(out,
			fsmCase{name: "started when " + string(st), setup: finished(),
				cmd: &ActionStarted{Operation: "op1", Address: "network.lan", Time: t0}, wantErr: ErrConflict},
			fsmCase{name: "finished again when " + string(st), setup: finished(),
				cmd: &ActionFinished{Operation: "op1", Address: "network.lan", Status: st}, wantErr: ErrConflict})
	}
	return out
}

// TestAgentEntriesBeforeRatios applies agent entries as they were written
// before capacities carried allocation ratios and an accelerator: they
// decode to zero values (the defaults, an unknown accelerator, no host-port
// policy), and the new fields are written under fixed keys.
func TestAgentEntriesBeforeRatios(t *testing.T) {
	h := newHarness(t)
	for _, e := range []struct {
		typ  MessageType
		body string
	}{
		{CmdRegisterAgent, `{"ID":"agent-1","Address":"a","Capacity":{"CPUs":2,"MemoryBytes":1024,"DiskBytes":4096},"Images":null,"Time":"2025-03-01T12:00:00Z"}`},
		{CmdAgentHeartbeat, `{"ID":"agent-1","Capacity":{"CPUs":4,"MemoryBytes":2048,"DiskBytes":4096},"Time":"2025-03-01T12:01:00Z"}`},
	} {
		h.idx++
		if resp := h.f.Apply(&raft.Log{Index: h.idx, Type: raft.LogCommand, Data: append([]byte{byte(e.typ)}, e.body...)}); resp != nil {
			t.Fatalf("type %d: %v", e.typ, resp)
		}
	}
	a, _ := h.state().Agent("agent-1")
	if want := (Capacity{CPUs: 4, MemoryBytes: 2048, DiskBytes: 4096}); !reflect.DeepEqual(a.Capacity, want) {
		t.Errorf("capacity = %+v, want %+v", a.Capacity, want)
	}
	data, err := Encode(agent("agent-1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"CPURatio":32`, `"MemoryRatio":1.5`, `"Accel":"kvm"`, `"AccelReason":"/dev/kvm opens`,
		`"HostPortsLo":10000`, `"HostPortsHi":60000`, `"ReservedPorts":[4646,8775]`} {
		if !bytes.Contains(data, []byte(key)) {
			t.Errorf("entry %s lacks %s", data[1:], key)
		}
	}
}

func runFSMCases(t *testing.T, tests []fsmCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.must(tt.setup...)
			before := snapshotJSON(t, h.state())
			err := h.apply(tt.cmd)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				// A refused command changes nothing but the index.
				after := snapshotJSON(t, h.state())
				if !bytes.Equal(before, after) {
					t.Errorf("refused command changed the state:\nbefore %s\nafter  %s", before, after)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if got := h.state().Index(); got != h.idx {
				t.Errorf("index = %d, want %d", got, h.idx)
			}
			if tt.check != nil {
				tt.check(t, h.state())
			}
		})
	}
}

// snapshotJSON renders the state as a snapshot, with the index zeroed.
func snapshotJSON(t testing.TB, s *State) []byte {
	t.Helper()
	s.mu.RLock()
	d := s.t.export()
	s.mu.RUnlock()
	d.Index = 0
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFSMUndecodableEntryPanics(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"unknown type", []byte{99, '{', '}'}},
		{"bad body", append([]byte{byte(CmdPutStack)}, "{not json"...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			NewFSM().Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: tt.data})
		})
	}
}

func TestFSMIgnoresFlaggedUnknownType(t *testing.T) {
	f := NewFSM()
	resp := f.Apply(&raft.Log{Index: 7, Type: raft.LogCommand, Data: []byte{byte(IgnoreUnknownTypeFlag | 99), '{', '}'}})
	if resp != nil || f.State().Index() != 7 {
		t.Errorf("resp %v, index %d", resp, f.State().Index())
	}
}

func TestEventsAreBounded(t *testing.T) {
	h := newHarness(t)
	h.must(base()...)
	const total = 2*MaxEvents + 10 // past the compaction point
	for i := range total {
		h.must(&AppendEvents{Project: "p", Stack: "web", Events: []Event{{Message: fmt.Sprint(i)}}})
	}
	evs := h.state().Events("p", "web", 0, 0)
	if len(evs) != MaxEvents {
		t.Fatalf("%d events kept, want %d", len(evs), MaxEvents)
	}
	if evs[0].Message != fmt.Sprint(total-MaxEvents) || evs[0].Seq != total-MaxEvents+1 || evs[len(evs)-1].Seq != total {
		t.Errorf("first %+v last %+v", evs[0], evs[len(evs)-1])
	}
	if got := h.state().Events("p", "web", 0, 5); len(got) != 5 || got[4].Seq != total {
		t.Errorf("limit 5 gave %d events ending at %d", len(got), got[len(got)-1].Seq)
	}
}

func TestFinishedOperationsAreBounded(t *testing.T) {
	h := newHarness(t)
	h.must(base()...)
	for i := range MaxFinishedOperations + 5 {
		h.must(&StartOperation{ID: fmt.Sprintf("op%03d", i), Project: "p", Stack: "web", Kind: OpApply},
			&FinishOperation{ID: fmt.Sprintf("op%03d", i), Status: OpDone})
	}
	ops := h.state().Operations("p", "web")
	if len(ops) != MaxFinishedOperations || ops[0].ID != "op005" {
		t.Errorf("%d operations kept, first %s", len(ops), ops[0].ID)
	}
}

func TestReadsAreCopies(t *testing.T) {
	h := newHarness(t)
	h.must(withOpStarted()...)
	h.must(&UpsertResource{Resource: *resource("network.lan")})
	_ = h.apply(&StartOperation{}) // refused: changes nothing

	r, _ := h.state().Resource("p", "web", "network.lan")
	r.State.Computed["id"] = "mutated"
	o, _ := h.state().Operation("op1")
	o.Plan.Changes[1].After["cidr"] = "mutated"
	o.Actions[1].Status = ActionDone
	st, _ := h.state().Stack("p", "web")
	st.Vars[0].Value = "mutated"

	if r2, _ := h.state().Resource("p", "web", "network.lan"); r2.State.Computed["id"] != "br-1" {
		t.Error("a reader's change reached the resource")
	}
	o2, _ := h.state().Operation("op1")
	if o2.Plan.Changes[1].After["cidr"] != "10.20.0.0/24" || o2.Actions[1].Status != ActionPending {
		t.Error("a reader's change reached the operation")
	}
	if st2, _ := h.state().Stack("p", "web"); st2.Vars[0].Value != "2" {
		t.Error("a reader's change reached the stack")
	}

	// And a later write does not change what a reader holds.
	h.must(&ActionFinished{Operation: "op1", Address: "network.lan", Status: ActionDone})
	if o2.Actions[1].Status != ActionPending {
		t.Error("a later write reached a copy")
	}
}

func TestWait(t *testing.T) {
	h := newHarness(t)
	h.must(&UpsertProject{Name: "p"})
	s := h.state()

	// Already past: returns at once.
	if idx, err := s.Wait(context.Background(), 0); err != nil || idx != 1 {
		t.Fatalf("Wait(0) = %d, %v", idx, err)
	}
	// Woken by the next apply.
	got := make(chan uint64, 1)
	go func() {
		idx, _ := s.Wait(context.Background(), 1)
		got <- idx
	}()
	h.must(&UpsertProject{Name: "q"})
	select {
	case idx := <-got:
		if idx != 2 {
			t.Errorf("woken at %d", idx)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("not woken")
	}
	// Ends with its context.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := s.Wait(ctx, 2); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v", err)
	}
}

func TestApplyBatch(t *testing.T) {
	f := NewFSM()
	var logs []*raft.Log
	for i, c := range []Command{&UpsertProject{Name: "p"}, &RevokeToken{ID: "x"}, &UpsertProject{Name: "q"}} {
		data, _ := Encode(c)
		logs = append(logs, &raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: data})
	}
	logs = append(logs, &raft.Log{Index: 4, Type: raft.LogConfiguration})
	resp := f.ApplyBatch(logs)
	if len(resp) != 4 || resp[0] != nil || resp[2] != nil || resp[3] != nil {
		t.Errorf("responses = %v", resp)
	}
	if err, _ := resp[1].(error); !errors.Is(err, ErrNotFound) {
		t.Errorf("refusal = %v", resp[1])
	}
	if f.State().Index() != 4 || len(f.State().Projects()) != 2 {
		t.Errorf("index %d, projects %v", f.State().Index(), f.State().Projects())
	}
}

// fullState applies one of everything.
func fullState(t testing.TB) *harness {
	h := newHarness(t)
	h.must(withOpStarted()...)
	h.must(
		&CreateToken{ID: "t1", Project: "p", Role: RoleAdmin, SecretHash: HashSecret("a"), Time: t0},
		&AssignAction{Operation: "op1", Address: "network.lan", Agent: "agent-1", Time: t0},
		&ActionStarted{Operation: "op1", Address: "network.lan", Time: t0},
		&ActionFinished{Operation: "op1", Address: "network.lan", Status: ActionDone, Resource: resource("network.lan"), Time: t0},
		&AppendEvents{Project: "p", Stack: "web", Events: []Event{{Time: t0, Message: "x", Level: LevelWarn}}},
		agent("agent-2"),
	)
	return h
}

func TestSnapshotRoundTrip(t *testing.T) {
	h := fullState(t)
	f2 := h.restored()
	h.f.state.mu.RLock()
	want := h.f.state.t.export()
	h.f.state.mu.RUnlock()
	f2.state.mu.RLock()
	got := f2.state.t.export()
	f2.state.mu.RUnlock()
	if !reflect.DeepEqual(got, want) {
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		t.Errorf("restored state differs:\ngot  %s\nwant %s", g, w)
	}
	if tok, ok := f2.State().TokenBySecret("a"); !ok || tok.ID != "t1" {
		t.Error("token index not rebuilt")
	}
	// The restored state goes on accepting commands as the original would.
	h2 := &harness{t: t, f: f2, idx: h.idx}
	h2.must(&ActionFinished{Operation: "op1", Address: "server.web[0]", Status: ActionDone},
		&FinishOperation{ID: "op1", Status: OpDone})
}

func TestRestoreRefusesGarbage(t *testing.T) {
	tests := []struct{ name, data string }{
		{"not json", "garbage"},
		{"future version", `{"Version": 99}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := fullState(t)
			before := snapshotJSON(t, h.state())
			if err := h.f.Restore(io.NopCloser(bytes.NewReader([]byte(tt.data)))); err == nil {
				t.Fatal("no error")
			}
			if !bytes.Equal(before, snapshotJSON(t, h.state())) {
				t.Error("a failed restore changed the state")
			}
		})
	}
}

type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Close() error  { return nil }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
