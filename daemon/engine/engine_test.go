package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/kiln-dev/kiln/executors/memdriver"
	"github.com/kiln-dev/kiln/planner"
	"github.com/kiln-dev/kiln/raftstore"
)

func newEngine(bound int) (*Engine, *recorder, *driver) {
	rec := newRecorder()
	drv := &driver{d: memdriver.New(), node: "n1"}
	return &Engine{Recorder: rec, Runner: drv, Reader: drv, Parallelism: bound}, rec, drv
}

// threeTier is a stack with a diamond and two independent branches.
func threeTier() *planner.Result {
	return plan(
		ch("image.base", planner.Create),
		ch("network.lan", planner.Create),
		ch("volume.data[0]", planner.Create),
		ch("volume.data[1]", planner.Create),
		ch("server.web[0]", planner.Create, "image.base", "network.lan", "volume.data[0]"),
		ch("server.web[1]", planner.Create, "image.base", "network.lan", "volume.data[1]"),
		ch("port_forward.http", planner.Create, "server.web[0]"),
	)
}

func TestDependencyOrder(t *testing.T) {
	for _, bound := range []int{1, 2, 16} {
		t.Run(fmt.Sprint("parallelism=", bound), func(t *testing.T) {
			e, rec, drv := newEngine(bound)
			p := threeTier()
			out, err := e.Run(context.Background(), Operation{ID: "op1", Stack: "s", Plan: p})
			if err != nil {
				t.Fatal(err)
			}
			if out.Status != OperationComplete {
				t.Fatalf("status = %s (%s), want COMPLETE", out.Status, out.Err)
			}
			for _, c := range p.Changes {
				if got := rec.actions[c.Address].Status; got != raftstore.ActionDone {
					t.Errorf("%s: %s, want done", c.Address, got)
				}
				if n := drv.d.Calls(c.Kind, c.Address, memdriver.OpCreate); n != 1 {
					t.Errorf("%s: created %d times, want 1", c.Address, n)
				}
				for _, d := range c.DependsOn {
					if rec.started[c.Address] < rec.ended[d] {
						t.Errorf("%s started (#%d) before its dependency %s finished (#%d)",
							c.Address, rec.started[c.Address], d, rec.ended[d])
					}
				}
			}
			if len(rec.opDone) != 1 || rec.opDone[0] != "COMPLETE: " {
				t.Errorf("operation records = %q", rec.opDone)
			}
		})
	}
}

func TestDepsCarryDependencyAttributes(t *testing.T) {
	e, _, drv := newEngine(4)
	var got map[string]map[string]any
	drv.hook = func(a Action) {
		if a.Address == "server.web" {
			got = a.Deps
		}
	}
	p := plan(ch("network.lan", planner.Create), ch("server.web", planner.Create, "network.lan"))
	p.Changes[0].After = map[string]any{"cidr": "10.0.0.0/24"}
	if _, err := e.Run(context.Background(), Operation{ID: "op", Stack: "s", Plan: p}); err != nil {
		t.Fatal(err)
	}
	if got["network.lan"]["gateway"] != "10.0.0.1" || got["network.lan"]["id"] == nil {
		t.Errorf("server saw deps %v, want the network's computed attributes", got)
	}
}

// TestKindParallelismBound: a kind with a bound of its own never has more
// actions running than that, and does not hold up the other kinds: with
// the servers held at their bound, every volume still runs.
func TestKindParallelismBound(t *testing.T) {
	const servers, volumes, serverBound = 6, 12, 2
	e, _, drv := newEngine(8)
	e.KindParallelism = map[string]int{"server": serverBound}
	var changes []planner.Change
	for i := 0; i < servers; i++ {
		changes = append(changes, ch(fmt.Sprintf("server.s[%d]", i), planner.Create))
	}
	for i := 0; i < volumes; i++ {
		changes = append(changes, ch(fmt.Sprintf("volume.v[%d]", i), planner.Create))
	}
	var mu sync.Mutex
	running, maxServers, volumesDone := 0, 0, 0
	release := make(chan struct{})
	allVolumes := make(chan struct{})
	started := make(chan struct{}, servers)
	drv.hook = func(a Action) {
		if a.Kind != "server" {
			mu.Lock()
			volumesDone++
			if volumesDone == volumes {
				close(allVolumes)
			}
			mu.Unlock()
			return
		}
		mu.Lock()
		running++
		maxServers = max(maxServers, running)
		mu.Unlock()
		started <- struct{}{}
		<-release
		mu.Lock()
		running--
		mu.Unlock()
	}
	done := make(chan Outcome)
	go func() {
		out, _ := e.Run(context.Background(), Operation{ID: "op", Stack: "s", Plan: plan(changes...)})
		done <- out
	}()
	// The servers come first in plan order and hold their slots: every
	// volume must still run.
	<-allVolumes
	for range serverBound {
		<-started
	}
	close(release)
	if out := <-done; out.Status != OperationComplete {
		t.Fatalf("status %s: %s", out.Status, out.Err)
	}
	if maxServers != serverBound {
		t.Errorf("at most %d servers ran at once, want %d", maxServers, serverBound)
	}
}

func TestParallelismBound(t *testing.T) {
	const n, bound = 30, 4
	e, _, drv := newEngine(bound)
	var changes []planner.Change
	for i := 0; i < n; i++ {
		changes = append(changes, ch(fmt.Sprintf("volume.v[%d]", i), planner.Create))
	}
	started := make(chan struct{}, n)
	proceed := make(chan struct{})
	drv.hook = func(Action) {
		started <- struct{}{}
		<-proceed
	}
	done := make(chan Outcome)
	go func() {
		out, _ := e.Run(context.Background(), Operation{ID: "op", Stack: "s", Plan: plan(changes...)})
		done <- out
	}()
	// Let one action through only once the engine has filled every slot it
	// may, so the maximum observed is exactly the bound if the engine keeps
	// the slots full and never more.
	s, released := 0, 0
	for released < n {
		for s-released < min(bound, n-released) {
			<-started
			s++
		}
		proceed <- struct{}{}
		released++
	}
	out := <-done
	if out.Status != OperationComplete {
		t.Fatalf("status %s: %s", out.Status, out.Err)
	}
	if drv.maxInflight != bound {
		t.Errorf("max concurrent = %d, want %d", drv.maxInflight, bound)
	}
}

func TestFailureSkipsDependents(t *testing.T) {
	e, rec, drv := newEngine(1)
	drv.d.FailOn("server.web[0]", memdriver.OpCreate, errors.New("no space left"))
	p := plan(
		ch("network.lan", planner.Create),
		ch("server.web[0]", planner.Create, "network.lan"),
		ch("port_forward.http", planner.Create, "server.web[0]"),
		ch("port_forward.ssh", planner.Create, "port_forward.http"),
		ch("volume.logs", planner.Create),
		ch("server.db", planner.Create, "network.lan", "volume.logs"),
	)
	out, err := e.Run(context.Background(), Operation{ID: "op", Stack: "s", Plan: p})
	if err != nil {
		t.Fatal(err)
	}
	if out.Status != OperationFailed || !strings.Contains(out.Err, "server.web[0]") || !strings.Contains(out.Err, "no space left") {
		t.Errorf("outcome = %s %q, want FAILED naming server.web[0] and the cause", out.Status, out.Err)
	}
	want := map[string]raftstore.ActionStatus{
		"network.lan":       raftstore.ActionDone,
		"server.web[0]":     raftstore.ActionFailed,
		"port_forward.http": raftstore.ActionSkipped,
		"port_forward.ssh":  raftstore.ActionSkipped,
		"volume.logs":       raftstore.ActionDone,
		"server.db":         raftstore.ActionDone,
	}
	for addr, st := range want {
		if got := rec.actions[addr]; got.Status != st {
			t.Errorf("%s: %s, want %s", addr, got.Status, st)
		} else if st == raftstore.ActionSkipped && !strings.HasPrefix(got.Err, "skipped: server.web[0] failed: ") {
			t.Errorf("%s: reason %q does not name the failed action", addr, got.Err)
		}
	}
	for _, a := range []string{"port_forward.http", "port_forward.ssh"} {
		if n := drv.d.Calls("port_forward", a, memdriver.OpCreate); n != 0 {
			t.Errorf("%s ran %d times after its dependency failed", a, n)
		}
	}
	if rec.opDone[0] != "FAILED: "+out.Err {
		t.Errorf("recorded %q", rec.opDone[0])
	}
}

func TestReplace(t *testing.T) {
	tests := []struct {
		name string
		cbd  bool
		want []string
	}{
		{"delete then create", false, []string{"delete", "create"}},
		{"create before destroy", true, []string{"create", "delete"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, rec, drv := newEngine(4)
			ctx := context.Background()
			old, _ := drv.d.Create(ctx, "server", "server.web", "", nil)
			c := ch("server.web", planner.Replace)
			c.Before["id"] = old.ID
			c.CreateBeforeDestroy = tt.cbd
			out, err := e.Run(ctx, Operation{ID: "op2", Stack: "s", Plan: plan(c)})
			if err != nil || out.Status != OperationComplete {
				t.Fatalf("%v %s %s", err, out.Status, out.Err)
			}
			var ops []string
			for _, call := range drv.d.Log()[1:] {
				ops = append(ops, call.Op)
			}
			if strings.Join(ops, ",") != strings.Join(tt.want, ",") {
				t.Errorf("calls = %v, want %v", ops, tt.want)
			}
			objs := drv.d.Objects()
			if len(objs) != 1 || objs[0].ID == old.ID {
				t.Errorf("objects after replace = %+v, want one new instance", objs)
			}
			if rec.actions["server.web"].Attrs["id"] != objs[0].ID {
				t.Errorf("recorded id %v, want %s", rec.actions["server.web"].Attrs["id"], objs[0].ID)
			}
		})
	}
}

func TestUpdateAndDelete(t *testing.T) {
	e, _, drv := newEngine(4)
	ctx := context.Background()
	drv.d.Create(ctx, "volume", "volume.a", "", map[string]any{"size": int64(1)})
	b, _ := drv.d.Create(ctx, "volume", "volume.b", "", nil)
	up := ch("volume.a", planner.Update)
	up.After = map[string]any{"size": int64(2)}
	del := ch("volume.b", planner.Delete)
	del.Before["id"] = b.ID
	out, err := e.Run(ctx, Operation{ID: "op", Stack: "s", Plan: plan(up, del, ch("volume.c", planner.NoOp))})
	if err != nil || out.Status != OperationComplete {
		t.Fatalf("%v %s %s", err, out.Status, out.Err)
	}
	if o, _, _ := drv.d.Read(ctx, "volume", "volume.a"); o.Attrs["size"] != int64(2) {
		t.Errorf("volume.a size = %v, want 2", o.Attrs["size"])
	}
	if _, ok, _ := drv.d.Read(ctx, "volume", "volume.b"); ok {
		t.Error("volume.b not deleted")
	}
	if _, ok := out.Actions["volume.c"]; ok {
		t.Error("no-op change reported as an action")
	}
}

func TestResume(t *testing.T) {
	// Each case: what the earlier leader recorded and what the hosts hold;
	// the new leader must finish without doing anything twice.
	tests := []struct {
		name    string
		changes []planner.Change
		// setup prepares the driver and returns the recorded state.
		setup func(ctx context.Context, d *memdriver.Driver) map[string]ActionState
		// calls wanted after setup, by "address op".
		want map[string]int
	}{
		{
			name:    "running create whose effect exists is not run again",
			changes: []planner.Change{ch("network.lan", planner.Create), ch("server.web", planner.Create, "network.lan")},
			setup: func(ctx context.Context, d *memdriver.Driver) map[string]ActionState {
				d.Create(ctx, "network", "network.lan", "", nil)
				return map[string]ActionState{"network.lan": {Status: raftstore.ActionRunning, Node: "n1"}}
			},
			want: map[string]int{"network.lan create": 0, "server.web create": 1},
		},
		{
			name:    "running create whose effect is missing runs once",
			changes: []planner.Change{ch("network.lan", planner.Create), ch("server.web", planner.Create, "network.lan")},
			setup: func(ctx context.Context, d *memdriver.Driver) map[string]ActionState {
				return map[string]ActionState{"network.lan": {Status: raftstore.ActionRunning, Node: "n1"}}
			},
			want: map[string]int{"network.lan create": 1, "server.web create": 1},
		},
		{
			name:    "done actions are skipped",
			changes: []planner.Change{ch("network.lan", planner.Create), ch("server.web", planner.Create, "network.lan")},
			setup: func(ctx context.Context, d *memdriver.Driver) map[string]ActionState {
				o, _ := d.Create(ctx, "network", "network.lan", "", nil)
				return map[string]ActionState{"network.lan": {Status: raftstore.ActionDone, Attrs: o.Values()}}
			},
			want: map[string]int{"network.lan create": 0, "network.lan read": 0, "server.web create": 1},
		},
		{
			name:    "running delete already gone",
			changes: []planner.Change{ch("volume.v", planner.Delete)},
			setup: func(ctx context.Context, d *memdriver.Driver) map[string]ActionState {
				return map[string]ActionState{"volume.v": {Status: raftstore.ActionRunning}}
			},
			want: map[string]int{"volume.v delete": 0},
		},
		{
			name:    "replace whose delete is done runs only the create",
			changes: []planner.Change{ch("server.web", planner.Replace)},
			setup: func(ctx context.Context, d *memdriver.Driver) map[string]ActionState {
				return map[string]ActionState{"server.web": {Status: raftstore.ActionRunning}}
			},
			want: map[string]int{"server.web delete": 0, "server.web create": 1},
		},
		{
			name:    "create_before_destroy replace whose create is done runs only the delete",
			changes: []planner.Change{func() planner.Change { c := ch("server.web", planner.Replace); c.CreateBeforeDestroy = true; return c }()},
			setup: func(ctx context.Context, d *memdriver.Driver) map[string]ActionState {
				old, _ := d.Create(ctx, "server", "server.web", "", nil)
				d.Create(ctx, "server", "server.web", "op", nil)
				_ = old
				return map[string]ActionState{"server.web": {Status: raftstore.ActionRunning}}
			},
			want: map[string]int{"server.web create": 0, "server.web delete": 1},
		},
		{
			name:    "replace fully done is read and recorded",
			changes: []planner.Change{ch("server.web", planner.Replace)},
			setup: func(ctx context.Context, d *memdriver.Driver) map[string]ActionState {
				d.Create(ctx, "server", "server.web", "op", nil)
				return map[string]ActionState{"server.web": {Status: raftstore.ActionRunning}}
			},
			want: map[string]int{"server.web create": 0, "server.web delete": 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			e, rec, drv := newEngine(4)
			changes := tt.changes
			if changes[0].Action == planner.Replace {
				// the old instance's id, as the state knows it
				old, _ := memdriver.New().Create(ctx, "server", "server.web", "", nil)
				changes[0].Before["id"] = old.ID
			}
			state := tt.setup(ctx, drv.d)
			base := map[string]int{}
			for _, c := range drv.d.Log() {
				base[c.Address+" "+c.Op]++
			}
			out, err := e.Run(ctx, Operation{ID: "op", Stack: "s", Plan: plan(changes...), Actions: state})
			if err != nil || out.Status != OperationComplete {
				t.Fatalf("%v %s %s", err, out.Status, out.Err)
			}
			for k, n := range tt.want {
				addr, op, _ := strings.Cut(k, " ")
				kind, _, _ := strings.Cut(addr, ".")
				if got := drv.d.Calls(kind, addr, op) - base[k]; got != n {
					t.Errorf("%s: %d calls, want %d", k, got, n)
				}
			}
			for _, c := range changes {
				if state[c.Address].Status == raftstore.ActionDone {
					continue // recorded by the earlier leader
				}
				if rec.actions[c.Address].Status != raftstore.ActionDone {
					t.Errorf("%s recorded %s", c.Address, rec.actions[c.Address].Status)
				}
				if state[c.Address].Status == raftstore.ActionRunning && rec.starts[c.Address] != 0 {
					t.Errorf("%s: start recorded again on resume", c.Address)
				}
			}
		})
	}
}

// TestLeaderLossMidApply kills the "leader" while an action's effect exists
// but its result was not recorded, then lets a second engine resume from the
// recorded state: every action runs exactly once.
func TestLeaderLossMidApply(t *testing.T) {
	for _, when := range []memdriver.When{memdriver.BeforeEffect, memdriver.AfterEffect} {
		t.Run(fmt.Sprint("when=", when), func(t *testing.T) {
			ctx := context.Background()
			p := threeTier()
			e1, rec, drv := newEngine(2)
			gate := drv.d.Block("server.web[0]", memdriver.OpCreate, when)
			type res struct {
				out Outcome
				err error
			}
			ran := make(chan res)
			go func() {
				out, err := e1.Run(ctx, Operation{ID: "op", Stack: "s", Plan: p})
				ran <- res{out, err}
			}()
			<-gate.Reached()
			// Leadership is lost: nothing more can be recorded.
			rec.mu.Lock()
			rec.failAfter = rec.seq
			rec.mu.Unlock()
			if when == memdriver.AfterEffect {
				gate.Release()
			}
			// A BeforeEffect gate is released only after the first engine
			// has given up, so its create has not happened when the new
			// leader reads.
			var r res
			if when == memdriver.BeforeEffect {
				// The first engine waits for its running action; its hand-off
				// would fail on a real follower. Fail the call here.
				drv.d.FailOn("server.web[0]", memdriver.OpCreate, errNotLeader)
				gate.Release()
				r = <-ran
				drv.d.FailOn("server.web[0]", memdriver.OpCreate, nil)
			} else {
				r = <-ran
			}
			if !errors.Is(r.err, errNotLeader) {
				t.Fatalf("first engine: %v, want not-leader error", r.err)
			}

			rec2 := newRecorder()
			state := rec.state()
			e2 := &Engine{Recorder: rec2, Runner: drv, Reader: drv, Parallelism: 2}
			out, err := e2.Run(ctx, Operation{ID: "op", Stack: "s", Plan: p, Actions: state})
			if err != nil || out.Status != OperationComplete {
				t.Fatalf("second engine: %v %s %s", err, out.Status, out.Err)
			}
			for _, c := range p.Changes {
				want := 1
				if when == memdriver.BeforeEffect && c.Address == "server.web[0]" {
					want = 2 // the failed hand-off plus the real create
				}
				if n := drv.d.Calls(c.Kind, c.Address, memdriver.OpCreate); n != want {
					t.Errorf("%s: %d create calls, want %d", c.Address, n, want)
				}
			}
			if n := len(drv.d.Objects()); n != len(p.Changes) {
				t.Errorf("%d objects, want %d", n, len(p.Changes))
			}
		})
	}
}

// TestCancel: cancelled while network.lan runs, the operation lets it finish
// and records the actions not started cancelled; a new leader resuming from
// that record runs none of them.
func TestCancel(t *testing.T) {
	e, rec, drv := newEngine(1)
	gate := drv.d.Block("network.lan", memdriver.OpCreate, memdriver.BeforeEffect)
	ctx, cancel := context.WithCancel(context.Background())
	p := plan(
		ch("network.lan", planner.Create),
		ch("server.web", planner.Create, "network.lan"),
		ch("volume.v", planner.Create),
	)
	done := make(chan Outcome)
	go func() {
		out, _ := e.Run(ctx, Operation{ID: "op", Stack: "s", Plan: p})
		done <- out
	}()
	<-gate.Reached()
	cancel()
	gate.Release()
	out := <-done
	if out.Status != OperationCancelled {
		t.Fatalf("status %s, want CANCELLED", out.Status)
	}
	want := map[string]raftstore.ActionStatus{"network.lan": raftstore.ActionDone, "server.web": raftstore.ActionCancelled, "volume.v": raftstore.ActionCancelled}
	for addr, st := range want {
		if got := rec.actions[addr].Status; got != st {
			t.Errorf("%s: %s, want %s", addr, got, st)
		}
	}
	if n := drv.d.Calls("volume", "volume.v", memdriver.OpCreate); n != 0 {
		t.Errorf("volume.v started after cancel")
	}

	// A new leader resuming from that record (as if the operation's end had
	// not been recorded) runs none of the cancelled actions.
	calls := len(drv.d.Log())
	rec2 := newRecorder()
	e2 := &Engine{Recorder: rec2, Runner: drv, Reader: drv, Parallelism: 4}
	out, err := e2.Run(context.Background(), Operation{ID: "op", Stack: "s", Plan: p, Actions: rec.state()})
	if err != nil {
		t.Fatal(err)
	}
	if out.Status != OperationCancelled {
		t.Errorf("resumed outcome %s %q, want CANCELLED", out.Status, out.Err)
	}
	if n := len(drv.d.Log()); n != calls {
		t.Errorf("the resume ran %v", drv.d.Log()[calls:])
	}
	if len(rec2.actions) != 0 || len(rec2.starts) != 0 {
		t.Errorf("the resume recorded %v, starts %v", rec2.actions, rec2.starts)
	}
}

func TestRefusedPlans(t *testing.T) {
	tests := []struct {
		name    string
		changes []planner.Change
		want    string
	}{
		{"cycle", []planner.Change{ch("server.a", planner.Create, "server.b"), ch("server.b", planner.Create, "server.a")}, "cycle"},
		{"self", []planner.Change{ch("server.a", planner.Create, "server.a")}, "itself"},
		{"duplicate", []planner.Change{ch("server.a", planner.Create), ch("server.a", planner.Create)}, "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, rec, drv := newEngine(4)
			out, err := e.Run(context.Background(), Operation{ID: "op", Stack: "s", Plan: plan(tt.changes...)})
			if err != nil {
				t.Fatal(err)
			}
			if out.Status != OperationFailed || !strings.Contains(out.Err, tt.want) {
				t.Errorf("outcome %s %q, want FAILED with %q", out.Status, out.Err, tt.want)
			}
			if len(drv.d.Log()) != 0 || len(rec.opDone) != 1 {
				t.Errorf("ran %v, recorded %v", drv.d.Log(), rec.opDone)
			}
		})
	}
}

func TestAssignerFailureFailsAction(t *testing.T) {
	e, rec, _ := newEngine(4)
	e.Assigner = assignFunc(func(a Action) (string, error) {
		if a.Kind == "server" {
			return "", errors.New("no valid host was found")
		}
		return "agent-1", nil
	})
	out, err := e.Run(context.Background(), Operation{ID: "op", Stack: "s", Plan: plan(ch("volume.v", planner.Create), ch("server.web", planner.Create, "volume.v"))})
	if err != nil {
		t.Fatal(err)
	}
	if out.Status != OperationFailed || !strings.Contains(out.Err, "no valid host") {
		t.Errorf("outcome %s %q", out.Status, out.Err)
	}
	if rec.actions["volume.v"].Node != "n1" || rec.started["volume.v"] == 0 {
		t.Errorf("volume.v recorded %+v", rec.actions["volume.v"])
	}
}

type assignFunc func(Action) (string, error)

func (f assignFunc) Assign(_ context.Context, a Action) (string, error) { return f(a) }

func BenchmarkRunWide(b *testing.B) {
	var changes []planner.Change
	changes = append(changes, ch("network.lan", planner.Create))
	for i := 0; i < 200; i++ {
		changes = append(changes, ch(fmt.Sprintf("server.s[%d]", i), planner.Create, "network.lan"))
	}
	p := plan(changes...)
	for b.Loop() {
		e, _, _ := newEngine(16)
		if _, err := e.Run(context.Background(), Operation{ID: "op", Stack: "s", Plan: p}); err != nil {
			b.Fatal(err)
		}
	}
}

func TestResumeAfterRecordedFailure(t *testing.T) {
	e, rec, drv := newEngine(4)
	p := plan(
		ch("network.lan", planner.Create),
		ch("server.a", planner.Create, "network.lan"),
		ch("port_forward.a", planner.Create, "server.a"),
		ch("volume.v", planner.Create),
	)
	// The earlier leader recorded the failure and skipped server.a, then
	// died before it could skip port_forward.a.
	state := map[string]ActionState{
		"network.lan": {Status: raftstore.ActionFailed, Err: "bridge: exists"},
		"server.a":    {Status: raftstore.ActionSkipped, Err: "skipped: network.lan failed: bridge: exists"},
	}
	out, err := e.Run(context.Background(), Operation{ID: "op", Stack: "s", Plan: p, Actions: state})
	if err != nil {
		t.Fatal(err)
	}
	if out.Status != OperationFailed || out.Err != "network.lan: bridge: exists" {
		t.Errorf("outcome %s %q", out.Status, out.Err)
	}
	if got := rec.actions["port_forward.a"]; got.Status != raftstore.ActionSkipped || !strings.Contains(got.Err, "network.lan failed") {
		t.Errorf("port_forward.a recorded %+v", got)
	}
	if rec.actions["volume.v"].Status != raftstore.ActionDone {
		t.Errorf("independent volume.v: %+v", rec.actions["volume.v"])
	}
	for _, c := range drv.d.Log() {
		if c.Address != "volume.v" {
			t.Errorf("ran %+v", c)
		}
	}
}

// TestResumeCancelled: an earlier leader cancelled the operation and
// recorded some of its unstarted actions cancelled, then died before it
// recorded the rest and the operation's end. The new leader runs none of
// them: a recorded cancelled action stays cancelled (nothing of it is
// recorded again, which the state would refuse), the rest are recorded
// cancelled and the operation CANCELLED.
func TestResumeCancelled(t *testing.T) {
	e, rec, drv := newEngine(4)
	p := plan(
		ch("network.lan", planner.Create),
		ch("server.web", planner.Create, "network.lan"),
		ch("volume.v", planner.Create),
		ch("volume.w", planner.Create),
	)
	state := map[string]ActionState{
		"network.lan": {Status: raftstore.ActionDone, Node: "n1"},
		"server.web":  {Status: raftstore.ActionCancelled, Err: "cancelled"},
		"volume.v":    {Status: raftstore.ActionCancelled, Err: "cancelled"},
	}
	out, err := e.Run(context.Background(), Operation{ID: "op", Stack: "s", Plan: p, Actions: state})
	if err != nil {
		t.Fatal(err)
	}
	if out.Status != OperationCancelled {
		t.Errorf("outcome %s %q, want CANCELLED", out.Status, out.Err)
	}
	if n := len(drv.d.Log()); n != 0 {
		t.Errorf("ran %v", drv.d.Log())
	}
	if len(rec.starts) != 0 {
		t.Errorf("starts recorded: %v", rec.starts)
	}
	for _, addr := range []string{"network.lan", "server.web", "volume.v"} {
		if _, again := rec.actions[addr]; again {
			t.Errorf("%s recorded again: %+v", addr, rec.actions[addr])
		}
	}
	if got := rec.actions["volume.w"]; got.Status != raftstore.ActionCancelled {
		t.Errorf("volume.w recorded %+v, want cancelled", got)
	}
	for addr, want := range map[string]raftstore.ActionStatus{"server.web": raftstore.ActionCancelled, "volume.v": raftstore.ActionCancelled, "volume.w": raftstore.ActionCancelled} {
		if got := out.Actions[addr].Status; got != want {
			t.Errorf("outcome of %s: %s, want %s", addr, got, want)
		}
	}
	if len(rec.opDone) != 1 || !strings.HasPrefix(rec.opDone[0], OperationCancelled) {
		t.Errorf("operation recorded %v", rec.opDone)
	}
}

// TestResumeRunningWhenCancelled: an operation whose cancel was requested
// is resumed by a new leader with an action an earlier leader recorded
// running. That action is running, not started anew, so the cancel lets it
// finish: it is resumed (read, not run again) and recorded, the actions not
// started are recorded cancelled, and the operation ends CANCELLED.
func TestResumeRunningWhenCancelled(t *testing.T) {
	e, rec, drv := newEngine(4)
	p := plan(
		ch("network.lan", planner.Create),
		ch("server.web", planner.Create, "network.lan"),
	)
	// The earlier leader's create of network.lan happened.
	if _, err := drv.Run(context.Background(), Action{OpID: "op", Stack: "s", Address: "network.lan", Kind: "network", Op: OpCreate, Attrs: p.Changes[0].After}); err != nil {
		t.Fatal(err)
	}
	calls := len(drv.d.Log())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	state := map[string]ActionState{"network.lan": {Status: raftstore.ActionRunning, Node: "n1"}}
	out, err := e.Run(ctx, Operation{ID: "op", Stack: "s", Plan: p, Actions: state})
	if err != nil {
		t.Fatal(err)
	}
	if out.Status != OperationCancelled {
		t.Errorf("outcome %s %q, want CANCELLED", out.Status, out.Err)
	}
	if got := rec.actions["network.lan"]; got.Status != raftstore.ActionDone {
		t.Errorf("network.lan recorded %+v, want done (resumed)", got)
	}
	if got := rec.actions["server.web"]; got.Status != raftstore.ActionCancelled {
		t.Errorf("server.web recorded %+v, want cancelled", got)
	}
	for _, c := range drv.d.Log()[calls:] {
		if c.Op != memdriver.OpRead {
			t.Errorf("the resume ran %+v", c)
		}
	}
}
