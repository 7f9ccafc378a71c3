package realprocess

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/daemon/agent"
	"github.com/kiln-dev/kiln/internal/testwait"
)

// template has a network, four volumes and two servers that use them, so
// that the apply runs in three waves.
const template = `
network "lan" {
  cidr = "10.77.0.0/24"
}

volume "data" {
  count = 4
  size  = "1GiB"
}

server "web" {
  count   = 2
  image   = "/var/lib/kiln/images/none.qcow2"
  cpus    = 1
  memory  = "256MiB"
  volumes = [volume.data[count.index].id, volume.data[count.index + 2].id]

  network "lan" {
    address = cidrhost(network.lan.cidr, 10 + count.index)
  }
}

output "addresses" {
  value = server.web[*].address
}
`

func TestTrioSurvivesLeaderKillMidApply(t *testing.T) {
	c := newCluster(t)
	defer c.dumpLogs()

	agentDir := filepath.Join(c.root, "agent")
	var servers []string
	for _, n := range c.nodes {
		servers = append(servers, n.http)
	}
	start(t, "agent", c.logDir, []string{"KILN_TOKEN=" + c.token},
		"agent", "-data-dir", agentDir, "-servers", strings.Join(servers, ","),
		"-driver=memory", "-memory-delay=700ms", "-heartbeat=300ms", "-log-level=warn")
	testwait.For(t, 30*time.Second, "the agent", func() bool {
		ags, err := c.client().Agents(context.Background())
		return err == nil && len(ags) == 1 && ags[0].Status == "up"
	})

	leader := c.leader()
	follower := (leader + 1) % 3
	tdir := filepath.Join(c.root, "tmpl")
	os.MkdirAll(tdir, 0o755)
	os.WriteFile(filepath.Join(tdir, "web.hcl"), []byte(template), 0o644)

	// The apply goes to a follower, through the CLI.
	cmd := exec.Command(kiln(t), "apply", "web.hcl", "-auto-approve", "-detach", "-json", "-servers", c.nodes[follower].http)
	cmd.Dir = tdir
	cmd.Env = append(os.Environ(), "KILN_TOKEN="+c.token)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("kiln apply: %v\n%s%s", err, out.String(), errb.String())
	}
	opID := jsonField(t, out.Bytes(), "operation_id")

	// Acknowledged writes made while the leader dies: tokens created by
	// concurrent clients. Every one that was answered must survive.
	var (
		mu    sync.Mutex
		acked []string
		stop  = make(chan struct{})
		wg    sync.WaitGroup
	)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			cl := c.client(leader)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				tok, err := cl.CreateToken(ctx, api.TokenRequest{Project: "p", Role: "reader", Name: fmt.Sprintf("w%d-%d", w, i)})
				cancel()
				if err == nil {
					mu.Lock()
					acked = append(acked, tok.ID)
					mu.Unlock()
				}
			}
		}(w)
	}

	// Kill the leader once the first wave is done and the rest is not.
	cl := c.client(leader)
	testwait.For(t, 60*time.Second, "the first wave", func() bool {
		op, _, err := cl.Operation(context.Background(), opID, 0, 0)
		if err != nil {
			return false
		}
		c := countStatus(op)
		return c["done"] >= 1 && c["done"] < len(op.Actions)
	})
	killed := time.Now()
	c.nodes[leader].p.kill()
	testwait.For(t, 30*time.Second, "a new leader", func() bool { return c.leader(leader) >= 0 })
	t.Logf("new leader after %v", time.Since(killed).Round(time.Millisecond))

	var op api.Operation
	testwait.ForNil(t, 90*time.Second, "the operation to finish", func() error {
		var err error
		op, _, err = cl.Operation(context.Background(), opID, 0, 0)
		if err == nil && (op.Status == "complete" || op.Status == "done" || op.Status == "failed" || op.Status == "cancelled") {
			return nil
		}
		return fmt.Errorf("operation %+v, %v", op, err)
	})
	close(stop)
	wg.Wait()
	if op.Status != "complete" && op.Status != "done" {
		t.Fatalf("operation %s: %s (%s)", opID, op.Status, op.Error)
	}

	// Every action ran exactly once on the agent.
	calls, err := agent.ReadMemoryCalls(agentDir)
	if err != nil {
		t.Fatal(err)
	}
	creates := map[string]int{}
	for _, call := range calls {
		if call.Op == "create" {
			creates[call.Address] += call.Count
		}
	}
	for _, a := range op.Actions {
		if creates[a.Address] != 1 {
			t.Errorf("%s created %d times, want exactly 1 (calls %+v)", a.Address, creates[a.Address], calls)
		}
	}
	if len(op.Actions) != 7 {
		t.Errorf("%d actions, want 7", len(op.Actions))
	}

	checkState := func(when string) {
		t.Helper()
		cl := c.client()
		st, err := cl.Stack(context.Background(), "web")
		if err != nil || st.Status != "COMPLETE" || len(st.Resources) != 7 {
			t.Fatalf("%s: stack %+v, %v", when, st.StackSummary, err)
		}
		outs, err := cl.Outputs(context.Background(), "web", false)
		if err != nil || fmt.Sprint(outs["addresses"].Value) != "[10.77.0.10 10.77.0.11]" {
			t.Fatalf("%s: outputs %v, %v", when, outs, err)
		}
		toks, err := cl.Tokens(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for _, tk := range toks {
			have[tk.ID] = true
		}
		mu.Lock()
		defer mu.Unlock()
		for _, id := range acked {
			if !have[id] {
				t.Fatalf("%s: acknowledged token %s lost", when, id)
			}
		}
		t.Logf("%s: stack COMPLETE, %d acknowledged writes all present", when, len(acked))
	}
	checkState("after failover")

	// Bring the killed server back, then restart all three.
	c.startNode(leader)
	testwait.For(t, 30*time.Second, "the old leader to catch up", func() bool {
		h, err := c.client().HealthOf(context.Background(), c.nodes[leader].http)
		return err == nil && h.NodeID != ""
	})
	for _, n := range c.nodes {
		n.p.kill()
	}
	for i := range c.nodes {
		c.startNode(i)
	}
	testwait.For(t, 60*time.Second, "a leader after the restart", func() bool { return c.leader() >= 0 })
	// A restarted cluster elects a leader before its state machine has
	// replayed the log: until then the servers do not know the token yet
	// and answer 401. Wait (bounded) for the first authenticated read.
	elected := time.Now()
	testwait.For(t, 30*time.Second, "the state to be replayed", func() bool {
		_, err := c.client().Stack(context.Background(), "web")
		return err == nil
	})
	t.Logf("state readable %v after the election", time.Since(elected).Round(time.Millisecond))
	checkState("after restarting all three")
	peers, err := c.client().Peers(context.Background())
	if err != nil || len(peers) != 3 {
		t.Fatalf("peers after restart: %+v, %v", peers, err)
	}
}

func countStatus(op api.Operation) map[string]int {
	m := map[string]int{}
	for _, a := range op.Actions {
		m[a.Status]++
	}
	return m
}
