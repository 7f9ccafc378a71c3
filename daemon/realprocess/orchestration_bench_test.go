package realprocess

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/testnet"
	"github.com/kiln-dev/kiln/internal/testwait"
)

// noopStack is issue 13's stack: networks and volumes whose actions cost
// nothing on the in-memory driver, so that what is measured is kiln's own
// cost per action (record, dispatch, report, commit).
func noopStack(networks, volumes int) string {
	return fmt.Sprintf(`network "n" {
  count = %d
  cidr  = cidrsubnet("10.0.0.0/8", 16, count.index)
}

volume "v" {
  count = %d
  size  = "1MiB"
}
`, networks, volumes)
}

// benchOrchestration applies and destroys a stack of networks and volumes
// (one action each) on `kiln server -bootstrap -agent -agent-driver=memory`
// through the CLI, as a user does, and reports the seconds each took and
// the milliseconds per action.
func benchOrchestration(b *testing.B, networks, volumes int) {
	root := b.TempDir()
	dir := filepath.Join(root, "server")
	httpAddr := testnet.FreeAddr(b)
	start(b, "server", root, nil, "server", "-bootstrap", "-agent", "-agent-driver=memory",
		"-data-dir", dir, "-http-addr", httpAddr, "-raft-addr", testnet.FreeAddr(b), "-log-level", "warn")
	var token string
	testwait.For(b, 30*time.Second, "management token", func() bool {
		data, err := os.ReadFile(filepath.Join(dir, "management.token"))
		token = strings.TrimSpace(string(data))
		return err == nil && token != ""
	})
	tdir := filepath.Join(root, "tmpl")
	if err := os.MkdirAll(tdir, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tdir, "big.hcl"), []byte(noopStack(networks, volumes)), 0o644); err != nil {
		b.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		cmd := exec.Command(kiln(b), args...)
		cmd.Dir = tdir
		cmd.Env = append(os.Environ(), "KILN_ADDR="+httpAddr, "KILN_TOKEN="+token)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	testwait.For(b, 30*time.Second, "the in-process agent", func() bool {
		out, err := run("agents", "-json")
		return err == nil && strings.Contains(out, `"up"`)
	})
	actions := float64(networks + volumes)
	var apply, destroy time.Duration
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if out, err := run("apply", "big.hcl", "-auto-approve"); err != nil {
			b.Fatalf("apply: %v\n%s", err, out)
		}
		t1 := time.Now()
		if out, err := run("destroy", "big", "-auto-approve"); err != nil {
			b.Fatalf("destroy: %v\n%s", err, out)
		}
		apply += t1.Sub(t0)
		destroy += time.Since(t1)
	}
	n := float64(b.N)
	b.ReportMetric(apply.Seconds()/n, "apply-s")
	b.ReportMetric(destroy.Seconds()/n, "destroy-s")
	b.ReportMetric(apply.Seconds()*1000/n/actions, "apply-ms/action")
	b.ReportMetric(destroy.Seconds()*1000/n/actions, "destroy-ms/action")
}

// BenchmarkOrchestration1000 is issue 13's measure: apply and destroy of
// 100 networks and 900 volumes on a single node.
func BenchmarkOrchestration1000(b *testing.B) { benchOrchestration(b, 100, 900) }
