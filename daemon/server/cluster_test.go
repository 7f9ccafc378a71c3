package server

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/executors/memdriver"
)

// TestClusterFailover: three servers on loopback; an apply sent to a
// follower is forwarded; the leader is shut down while an action is held in
// the agent; the new leader resumes and every action runs exactly once.
func TestClusterFailover(t *testing.T) {
	servers, token := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	d := startAgent(t, "agent-1", token, addrs(servers)).D
	gate := d.Block("volume.data[1]", memdriver.OpCreate, memdriver.BeforeEffect)

	var leader, follower *Server
	for _, s := range servers {
		if s.IsLeader() {
			leader = s
		} else if follower == nil {
			follower = s
		}
	}
	fc := client{t: t, addr: follower.Addr(), token: token}
	var ref api.OperationRef
	fc.must("POST", "/v1/stacks/web/apply", api.ApplyRequest{Template: mainHCL(smallTemplate)}, http.StatusAccepted, &ref)

	select {
	case <-gate.Reached():
	case <-ctx.Done():
		t.Fatal("the held create never reached the agent")
	}
	if err := leader.Shutdown(ctx); err != nil {
		t.Logf("shutdown: %v", err)
	}
	gate.Release()

	var rest client
	for _, s := range servers {
		if s != leader {
			rest = client{t: t, addr: s.Addr(), token: token}
		}
	}
	op := rest.waitOp(ref.OperationID)
	if op.Status != "complete" {
		t.Fatalf("operation: %s %s %+v", op.Status, op.Error, op.Actions)
	}
	for _, c := range []struct{ kind, addr string }{{"network", "network.lan"}, {"volume", "volume.data[0]"}, {"volume", "volume.data[1]"}} {
		if n := d.Calls(c.kind, c.addr, memdriver.OpCreate); n != 1 {
			t.Errorf("%s created %d times, want exactly 1", c.addr, n)
		}
	}
	var outs map[string]api.OutputValue
	rest.must("GET", "/v1/stacks/web/outputs", nil, http.StatusOK, &outs)
	if outs["gateway"].Value != "10.40.0.1" {
		t.Errorf("outputs after failover: %v", outs)
	}
}
