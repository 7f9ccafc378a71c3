package realprocess

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/testwait"
)

// BenchmarkOrchestration1000Trio is issue 13's measure on a trio: the
// stack of BenchmarkOrchestration1000 applied and destroyed through the CLI
// against three `kiln server` processes on loopback (a quorum of them
// fsyncs every entry), with one `kiln agent` process on the test-only
// in-memory driver (-driver=memory). The CLI is given the three addresses,
// the leader's first, so that the figures hold no forwarding hop. The
// three servers and the agent share this machine's cores, each with Go's
// default GOMAXPROCS. server-peak-MiB is the largest peak of the three
// (the leader's, which runs the engine); agent-peak-MiB is the agent's.
func BenchmarkOrchestration1000Trio(b *testing.B) {
	const networks, volumes = 100, 900
	c := newCluster(b)
	b.Cleanup(c.dumpLogs)
	var servers []string
	for _, n := range c.nodes {
		servers = append(servers, n.http)
	}
	ag := start(b, "agent", c.logDir, []string{"KILN_TOKEN=" + c.token},
		"agent", "-data-dir", filepath.Join(c.root, "agent"), "-servers", strings.Join(servers, ","),
		"-driver=memory", "-log-level=warn")
	testwait.For(b, 30*time.Second, "the agent", func() bool {
		ags, err := c.client().Agents(context.Background())
		return err == nil && len(ags) == 1 && ags[0].Status == "up"
	})

	leader := c.leader()
	if leader < 0 {
		b.Fatal("no leader")
	}
	addrs := []string{c.nodes[leader].http}
	for _, i := range otherThan(leader) {
		addrs = append(addrs, c.nodes[i].http)
	}
	tdir := filepath.Join(c.root, "tmpl")
	if err := os.MkdirAll(tdir, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tdir, "big.hcl"), []byte(noopStack(networks, volumes)), 0o644); err != nil {
		b.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		cmd := exec.Command(kiln(b), args...)
		cmd.Dir = tdir
		cmd.Env = append(os.Environ(), "KILN_ADDR="+strings.Join(addrs, ","), "KILN_TOKEN="+c.token)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		return out.String() + errb.String(), err
	}

	var apply, destroy time.Duration
	b.ResetTimer()
	for range b.N {
		a, d := applyDestroy(b, run)
		apply += a
		destroy += d
	}
	b.StopTimer()
	reportTimes(b, apply, destroy, networks+volumes)
	var peak float64
	for _, n := range c.nodes {
		peak = max(peak, peakMiB(b, n.p))
	}
	b.ReportMetric(peak, "server-peak-MiB")
	b.ReportMetric(peakMiB(b, ag), "agent-peak-MiB")
}
