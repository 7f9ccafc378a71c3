package server

import (
	"net/http"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/executors/memdriver"
	"github.com/kiln-dev/kiln/internal/testwait"
	"github.com/kiln-dev/kiln/raftstore"
)

// TestReportsRecordedWithTheirResult: while the leader waits for an
// agent's report (handed straight to it, see reportInbox), a report of the
// same work item from another agent is refused and changes nothing; the
// real report finishes the action with the agent's attributes; and an
// action's work items are forgotten with its result, while other actions
// of the operation still run.
func TestReportsRecordedWithTheirResult(t *testing.T) {
	s, c := single(t, nil)
	a := agentOn(t, s, "agent-a")
	dirB := t.TempDir()
	// A smaller host: the scheduler places the stack on agent-a.
	agentOn(t, s, "agent-b", inDir(dirB), onHost(api.Capacity{CPUs: 4, MemoryBytes: 8 << 30, DiskBytes: 16 << 30}))
	credB := waitCredential(t, dirB)
	lanGate := a.D.Block("network.lan", memdriver.OpCreate, memdriver.AfterEffect)
	volGate := a.D.Block("volume.data[1]", memdriver.OpCreate, memdriver.BeforeEffect)
	defer lanGate.Release()
	defer volGate.Release()

	var ref api.OperationRef
	c.must("POST", "/v1/stacks/web/apply", api.ApplyRequest{Template: mainHCL(smallTemplate)}, http.StatusAccepted, &ref)
	st := s.store.State()
	var work raftstore.Work
	testwait.For(t, 30*time.Second, "network.lan's work item on agent-a", func() bool {
		for _, w := range st.WorkFor(ref.OperationID, "network.lan") {
			work = w
			return true
		}
		return false
	})
	if work.Agent != "agent-a" {
		t.Fatalf("the scheduler placed the stack on %s, not on the roomier agent-a", work.Agent)
	}
	<-lanGate.Reached()

	forged := api.ActionReport{OperationID: ref.OperationID, Address: "network.lan", Op: api.OpCreate, WorkID: work.ID,
		OK: true, Attrs: map[string]any{"gateway": "10.66.6.1"}}
	b := client{t: t, addr: s.Addr(), token: credB}
	if code, out := b.do("POST", "/v1/agents/agent-b/results", forged); code != http.StatusConflict {
		t.Errorf("agent-b's report of agent-a's work: %d %s, want 409", code, out)
	}
	if w, ok := st.Work(work.ID); !ok || w.Done {
		t.Fatalf("agent-a's work after agent-b's report: %+v %v, want not reported", w, ok)
	}

	lanGate.Release()
	testwait.For(t, 30*time.Second, "network.lan done", func() bool {
		o, _ := st.OperationSummary(ref.OperationID)
		a := o.Action("network.lan")
		return a != nil && a.Status == raftstore.ActionDone
	})
	if ws := st.WorkFor(ref.OperationID, "network.lan"); len(ws) != 0 {
		t.Errorf("network.lan is done but its work items are kept: %+v", ws)
	}
	if ws := st.WorkFor(ref.OperationID, "volume.data[1]"); len(ws) != 1 {
		t.Errorf("volume.data[1] is running with %d work items, want 1", len(ws))
	}
	volGate.Release()
	op := c.waitOp(ref.OperationID)
	if op.Status != "complete" {
		t.Fatalf("operation %s: %s", op.Status, op.Error)
	}
	var outs map[string]api.OutputValue
	c.must("GET", "/v1/stacks/web/outputs", nil, http.StatusOK, &outs)
	if outs["gateway"].Value != "10.40.0.1" {
		t.Errorf("gateway output = %v, want agent-a's 10.40.0.1", outs["gateway"].Value)
	}
}
