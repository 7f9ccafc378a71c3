package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/daemon/scheduler"
	"github.com/kiln-dev/kiln/executors/memdriver"
	"github.com/kiln-dev/kiln/internal/testwait"
)

// TestMemoryEndToEnd applies a template through one server and the kiln
// agent on the in-memory driver (nothing real is made: the real end-to-end
// test is e2e's TestEndToEnd), follows the operation, reads the outputs,
// plans again (no changes) and destroys everything.
func TestMemoryEndToEnd(t *testing.T) {
	var dir string
	s, c := single(t, func(cfg *Config) { dir = cfg.DataDir })
	info, err := filepathInfo(filepath.Join(dir, ManagementTokenFile))
	if err != nil || info != 0o600 {
		t.Fatalf("management.token mode %v, %v; want 0600", info, err)
	}
	d := agentOn(t, s, "agent-1").D

	op := c.complete("apply", "web", api.ApplyRequest{Template: mainHCL(smallTemplate)})
	if len(op.Actions) != 3 {
		t.Errorf("actions = %d, want 3", len(op.Actions))
	}

	var detail api.StackDetail
	c.must("GET", "/v1/stacks/web", nil, http.StatusOK, &detail)
	if detail.Status != "COMPLETE" || len(detail.Resources) != 3 {
		t.Fatalf("stack: %s with %d resources", detail.Status, len(detail.Resources))
	}
	for _, r := range detail.Resources {
		if r.Node != "agent-1" || r.PhysicalName == "" {
			t.Errorf("%s: node %q physical %q", r.Address, r.Node, r.PhysicalName)
		}
	}
	var outs map[string]api.OutputValue
	c.must("GET", "/v1/stacks/web/outputs", nil, http.StatusOK, &outs)
	if outs["gateway"].Value != "10.40.0.1" {
		t.Errorf("gateway output = %v, want 10.40.0.1", outs["gateway"].Value)
	}
	if ids, ok := outs["volume_ids"].Value.([]any); !ok || len(ids) != 2 || ids[0] == "(known after apply)" {
		t.Errorf("volume_ids output = %v", outs["volume_ids"].Value)
	}

	var plan api.PlanResponse
	c.must("POST", "/v1/stacks/web/plan", api.PlanRequest{Template: *mainHCL(smallTemplate)}, http.StatusOK, &plan)
	if plan.HasChanges {
		t.Errorf("plan after apply has changes:\n%s", plan.Text)
	}
	var ref api.OperationRef
	c.must("POST", "/v1/stacks/web/apply", api.ApplyRequest{Template: mainHCL(smallTemplate)}, http.StatusOK, &ref)
	if !ref.NoChanges {
		t.Errorf("second apply: %+v, want no_changes", ref)
	}

	var evs api.EventsResponse
	c.must("GET", "/v1/stacks/web/events", nil, http.StatusOK, &evs)
	if len(evs.Events) == 0 {
		t.Error("no events")
	}

	c.complete("destroy", "web", nil)
	c.must("GET", "/v1/stacks/web", nil, http.StatusOK, &detail)
	if detail.Status != "DESTROYED" || len(detail.Resources) != 0 {
		t.Errorf("after destroy: %s with %d resources", detail.Status, len(detail.Resources))
	}
	if objs := d.Objects(); len(objs) != 0 {
		t.Errorf("driver still holds %d objects", len(objs))
	}
	for _, addr := range []string{"network.lan", "volume.data[0]", "volume.data[1]"} {
		kind := "volume"
		if addr == "network.lan" {
			kind = "network"
		}
		if n := d.Calls(kind, addr, memdriver.OpCreate); n != 1 {
			t.Errorf("%s created %d times, want 1", addr, n)
		}
	}
	c.must("DELETE", "/v1/stacks/web", nil, http.StatusAccepted, &ref)
	c.must("GET", "/v1/stacks/web", nil, http.StatusNotFound, nil)
}

// TestStalePlan: a plan made before the stack changed is refused.
func TestStalePlan(t *testing.T) {
	s, c := single(t, nil)
	agentOn(t, s, "agent-1")

	var plan api.PlanResponse
	c.must("POST", "/v1/stacks/app/plan", api.PlanRequest{Template: *mainHCL(smallTemplate)}, http.StatusOK, &plan)
	if plan.PlanID == "" || !plan.HasChanges {
		t.Fatalf("plan: %+v", plan)
	}
	c.run("apply", "app", api.ApplyRequest{Template: mainHCL(`network "lan" { cidr = "10.50.0.0/24" }`)})
	code, out := c.do("POST", "/v1/stacks/app/apply", api.ApplyRequest{PlanID: plan.PlanID})
	if code != http.StatusConflict {
		t.Fatalf("stale plan: %d %s, want 409", code, out)
	}
}

// TestApplyPlanID: a plan made first can be applied by its id alone; the
// stack then records the planned template, so planning it again shows no
// changes.
func TestApplyPlanID(t *testing.T) {
	s, c := single(t, nil)
	agentOn(t, s, "agent-1")
	tpl := mainHCL(smallTemplate)

	var plan api.PlanResponse
	c.must("POST", "/v1/stacks/app/plan", api.PlanRequest{Template: *tpl}, http.StatusOK, &plan)
	c.complete("apply", "app", api.ApplyRequest{PlanID: plan.PlanID})
	var again api.PlanResponse
	c.must("POST", "/v1/stacks/app/plan", api.PlanRequest{Template: *tpl}, http.StatusOK, &again)
	if again.HasChanges {
		t.Fatalf("plan after apply by id has changes:\n%s", again.Text)
	}
}

// TestTTL: the leader destroys a stack whose TTL is over; a renewed one stays.
func TestTTL(t *testing.T) {
	s, c := single(t, nil)
	agentOn(t, s, "agent-1")
	tpl := mainHCL(`volume "v" { size = "1GiB" }`)
	c.run("apply", "short", api.ApplyRequest{Template: tpl, TTL: "1s"})
	c.run("apply", "kept", api.ApplyRequest{Template: tpl, TTL: "1s"})
	c.must("POST", "/v1/stacks/kept/renew", api.RenewRequest{TTL: "1h"}, http.StatusOK, nil)

	// Follow the events of "short" until it is destroyed.
	var index uint64
	testwait.For(t, 60*time.Second, "stack short to be destroyed at the end of its TTL", func() bool {
		var detail api.StackDetail
		c.must("GET", "/v1/stacks/short", nil, http.StatusOK, &detail)
		if detail.Status == "DESTROYED" {
			return true
		}
		var evs api.EventsResponse
		c.must("GET", "/v1/stacks/short/events?wait=5s&index="+itoa(index), nil, http.StatusOK, &evs)
		index = evs.Index
		return false
	})
	var kept api.StackDetail
	c.must("GET", "/v1/stacks/kept", nil, http.StatusOK, &kept)
	if kept.Status != "COMPLETE" || len(kept.Resources) != 1 {
		t.Errorf("renewed stack: %s with %d resources", kept.Status, len(kept.Resources))
	}
}

// TestCreateMovesOffDownAgent: the scheduler places a new stack on an agent
// that then misses its heartbeats before doing anything; the leader marks it
// down, withdraws its work and places the create on another agent.
func TestCreateMovesOffDownAgent(t *testing.T) {
	s, c := single(t, func(cfg *Config) {
		cfg.AgentHeartbeat = scheduler.Heartbeat{Interval: 200 * time.Millisecond, Missed: 5}
	})
	// The silent agent is roomier, so the scheduler prefers it.
	c.must("POST", "/v1/agents", api.AgentRegister{ID: "a-silent", Address: "test",
		Capacity: api.Capacity{CPUs: 1024, MemoryBytes: 1 << 50, DiskBytes: 1 << 50}}, http.StatusOK, nil)
	d := agentOn(t, s, "b-live").D

	op := c.complete("apply", "app", api.ApplyRequest{Template: mainHCL(smallTemplate)})
	for _, a := range op.Actions {
		if a.Agent != "b-live" {
			t.Errorf("%s ran on %q, want b-live", a.Address, a.Agent)
		}
	}
	if n := d.Calls("network", "network.lan", "create"); n != 1 {
		t.Errorf("network.lan created %d times on the live agent, want 1", n)
	}
	var agents []api.AgentInfo
	c.must("GET", "/v1/agents", nil, http.StatusOK, &agents)
	for _, a := range agents {
		if a.ID == "a-silent" && a.Status != "down" {
			t.Errorf("a-silent is %s, want down", a.Status)
		}
	}
}

// TestPlanShowsDrift: a plan reads the actual state through the agents. A
// volume deleted and a server's memory changed behind kiln's back show as a
// create and an update; applying repairs both, and the next plan is empty.
func TestPlanShowsDrift(t *testing.T) {
	s, c := single(t, nil)
	d := agentOn(t, s, "agent-1").D
	tpl := mainHCL(`
network "lan" {
  cidr = "10.60.0.0/24"
}

volume "data" {
  count = 2
  size  = "1GiB"
}

server "web" {
  image  = "img-1"
  memory = "256MiB"
  network "lan" { address = "10.60.0.10" }
}
`)
	c.complete("apply", "app", api.ApplyRequest{Template: tpl})

	// Behind kiln's back.
	ctx := context.Background()
	if err := d.Delete(ctx, "volume", "volume.data[1]", ""); err != nil {
		t.Fatal(err)
	}
	web, ok, err := d.Read(ctx, "server", "server.web")
	if err != nil || !ok {
		t.Fatalf("read server.web: %v %v", ok, err)
	}
	web.Attrs["memory"] = int64(512 << 20)
	if _, err := d.Update(ctx, "server", "server.web", web.Attrs); err != nil {
		t.Fatal(err)
	}

	var plan api.PlanResponse
	c.must("POST", "/v1/stacks/app/plan", api.PlanRequest{Template: *tpl}, http.StatusOK, &plan)
	actions := planActions(t, plan)
	want := map[string]string{"volume.data[1]": "create", "server.web": "update", "network.lan": "no-op", "volume.data[0]": "no-op"}
	for addr, act := range want {
		if actions[addr] != act {
			t.Errorf("%s: %q, want %q\n%s", addr, actions[addr], act, plan.Text)
		}
	}

	c.complete("apply", "app", api.ApplyRequest{Template: tpl})
	if _, ok, _ := d.Read(ctx, "volume", "volume.data[1]"); !ok {
		t.Error("volume.data[1] was not made again")
	}
	if web, _, _ := d.Read(ctx, "server", "server.web"); web.Attrs["memory"] != int64(256<<20) {
		t.Errorf("server.web memory = %v after repair", web.Attrs["memory"])
	}
	c.must("POST", "/v1/stacks/app/plan", api.PlanRequest{Template: *tpl}, http.StatusOK, &plan)
	if plan.HasChanges {
		t.Fatalf("plan after repair has changes:\n%s", plan.Text)
	}
}

// planActions maps each address of a plan to its action.
func planActions(t *testing.T, p api.PlanResponse) map[string]string {
	t.Helper()
	raw, _ := json.Marshal(p.Plan)
	var doc struct {
		Changes []struct {
			Address string `json:"address"`
			Action  string `json:"action"`
		} `json:"changes"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, ch := range doc.Changes {
		out[ch.Address] = ch.Action
	}
	return out
}

// TestApplyWaitsForItsAgent: the agent a stack lives on is marked down and
// comes back (a restart) while an apply waits for it; the apply completes
// on it instead of failing at once.
func TestApplyWaitsForItsAgent(t *testing.T) {
	s, c := single(t, func(cfg *Config) {
		cfg.AgentHeartbeat = scheduler.Heartbeat{Interval: 100 * time.Millisecond, Missed: 5}
	})
	a := agentOn(t, s, "agent-1")
	c.complete("apply", "app", api.ApplyRequest{Template: mainHCL(smallTemplate)})

	a.stop()
	testwait.ForNil(t, 10*time.Second, "agent-1 to be marked down", func() error {
		var agents []api.AgentInfo
		c.must("GET", "/v1/agents", nil, http.StatusOK, &agents)
		if len(agents) == 1 && agents[0].Status == "down" {
			return nil
		}
		return fmt.Errorf("agents %+v", agents)
	})

	more := mainHCL(smallTemplate + "\nvolume \"extra\" {\n  size = \"1GiB\"\n}\n")
	var ref api.OperationRef
	c.must("POST", "/v1/stacks/app/apply", api.ApplyRequest{Template: more}, http.StatusAccepted, &ref)
	// The apply waits in opDispatcher.waitUp for the agent its stack lives
	// on to come back.
	testwait.For(t, 10*time.Second, "the apply to wait for agent-1", inCall((*opDispatcher).waitUp))
	a.restart()
	if op := c.waitOp(ref.OperationID); op.Status != "complete" {
		t.Fatalf("apply while agent-1 was coming back: %s %s", op.Status, op.Error)
	}
	if n := a.D.Calls("volume", "volume.extra", "create"); n != 1 {
		t.Errorf("volume.extra created %d times, want 1", n)
	}
}
