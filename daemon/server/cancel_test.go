package server

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/executors/memdriver"
	"github.com/kiln-dev/kiln/internal/testnet"
	"github.com/kiln-dev/kiln/internal/testwait"
	"github.com/kiln-dev/kiln/raftstore"
)

// chainTemplate: two volumes that wait for the network, so that an apply
// cancelled while the network is being made has actions not yet started.
const chainTemplate = `
network "lan" {
  cidr = "10.40.0.0/24"
}

volume "data" {
  count      = 2
  size       = "1GiB"
  depends_on = [network.lan]
}
`

// logSignal is a log writer that closes seen once a line holding want is
// written.
type logSignal struct {
	want []byte
	seen chan struct{}
	once sync.Once
}

func (l *logSignal) Write(p []byte) (int, error) {
	if bytes.Contains(p, l.want) {
		l.once.Do(func() { close(l.seen) })
	}
	return len(p), nil
}

// TestCancelRecordsCancelled: an apply cancelled while its first action is
// held in the agent lets that action finish, records the actions that had
// not started cancelled (not skipped: cancelled is its own final status),
// runs none of them, and leaves the stack CANCELLED.
func TestCancelRecordsCancelled(t *testing.T) {
	engineCancelled := &logSignal{want: []byte("msg=cancelling"), seen: make(chan struct{})}
	s, c := single(t, func(cfg *Config) { cfg.Logger = slog.New(slog.NewTextHandler(engineCancelled, nil)) })
	d := agentOn(t, s, "agent-1").D
	opID, gate := applyThenCancel(t, c, d)
	waitClosed(t, engineCancelled.seen, "the engine to see the cancel")
	gate.Release()

	op := c.waitOp(opID)
	if op.Status != "cancelled" {
		t.Fatalf("operation %s %q, want cancelled", op.Status, op.Error)
	}
	want := map[string]string{"network.lan": "done", "volume.data[0]": "cancelled", "volume.data[1]": "cancelled"}
	checkActions(t, op, want)
	for _, addr := range []string{"volume.data[0]", "volume.data[1]"} {
		if n := d.Calls("volume", addr, memdriver.OpCreate); n != 0 {
			t.Errorf("%s created %d times after the cancel", addr, n)
		}
	}
	var st api.StackDetail
	c.must("GET", "/v1/stacks/web", nil, http.StatusOK, &st)
	if st.Status != "CANCELLED" {
		t.Errorf("stack %s %q, want CANCELLED", st.Status, st.StatusReason)
	}
}

// TestResumeCancelledOperation: the leader recorded a cancelled apply's
// unstarted actions cancelled and stopped before it recorded the
// operation's end (its held action still running). The server started
// again on the same data resumes the operation: the running action is
// resumed (read, not made again), the cancelled ones stay cancelled and
// never run, and the operation ends cancelled.
func TestResumeCancelledOperation(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Bootstrap, cfg.HTTPAddr = true, testnet.FreeAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s1 := startServer(t, cfg)
	if err := s1.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	c := client{t: t, addr: s1.Addr(), token: s1.ManagementToken()}
	d := agentOn(t, s1, "agent-1").D
	opID, gate := applyThenCancel(t, c, d)
	// What the cancelled engine records once the network is done, written
	// here while it still waits for it: then the leader stops.
	for _, addr := range []string{"volume.data[0]", "volume.data[1]"} {
		if err := s1.apply(ctx, &raftstore.ActionFinished{Operation: opID, Address: addr,
			Status: raftstore.ActionCancelled, Error: "cancelled", Time: time.Now().UTC()}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s1.Shutdown(ctx); err != nil {
		t.Logf("shutdown: %v", err)
	}
	gate.Release()
	testwait.For(t, 30*time.Second, "the held create to happen", func() bool {
		for _, o := range d.Objects() {
			if o.Address == "network.lan" {
				return true
			}
		}
		return false
	})

	s2 := startServer(t, cfg)
	if err := s2.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	op := c.waitOp(opID)
	if op.Status != "cancelled" {
		t.Fatalf("resumed operation %s %q, want cancelled", op.Status, op.Error)
	}
	checkActions(t, op, map[string]string{"network.lan": "done", "volume.data[0]": "cancelled", "volume.data[1]": "cancelled"})
	if n := d.Calls("network", "network.lan", memdriver.OpCreate); n != 1 {
		t.Errorf("network.lan created %d times, want 1 (resumed, not made again)", n)
	}
	for _, addr := range []string{"volume.data[0]", "volume.data[1]"} {
		if n := d.Calls("volume", addr, memdriver.OpCreate); n != 0 {
			t.Errorf("%s created %d times by the resume", addr, n)
		}
	}
}

// applyThenCancel applies chainTemplate with the network's create held in
// the agent d and, once it is, cancels the operation. The create stays held
// until the gate is released.
func applyThenCancel(t *testing.T, c client, d *memdriver.Driver) (string, *memdriver.Gate) {
	t.Helper()
	gate := d.Block("network.lan", memdriver.OpCreate, memdriver.BeforeEffect)
	var ref api.OperationRef
	c.must("POST", "/v1/stacks/web/apply", api.ApplyRequest{Template: mainHCL(chainTemplate)}, http.StatusAccepted, &ref)
	waitClosed(t, gate.Reached(), "the network's create to reach the agent")
	c.must("POST", "/v1/operations/"+ref.OperationID+"/cancel", nil, http.StatusOK, nil)
	return ref.OperationID, gate
}

// waitClosed waits up to 30s for ch to be closed, or fails the test saying
// what it waited for.
func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// checkActions compares the statuses of op's actions with want (by address).
func checkActions(t *testing.T, op api.Operation, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	for _, a := range op.Actions {
		got[a.Address] = a.Status
	}
	for addr, st := range want {
		if got[addr] != st {
			t.Errorf("%s: %q, want %q (actions %+v)", addr, got[addr], st, op.Actions)
		}
	}
	if len(got) != len(want) {
		t.Errorf("actions %v, want %v", got, want)
	}
}
