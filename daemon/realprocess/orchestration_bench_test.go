package realprocess

import (
	"fmt"
	"testing"
	"time"
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
	n := startSingle(b, "big.hcl", noopStack(networks, volumes))
	run := n.run
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
	nb := float64(b.N)
	b.ReportMetric(apply.Seconds()/nb, "apply-s")
	b.ReportMetric(destroy.Seconds()/nb, "destroy-s")
	b.ReportMetric(apply.Seconds()*1000/nb/actions, "apply-ms/action")
	b.ReportMetric(destroy.Seconds()*1000/nb/actions, "destroy-ms/action")
}

// BenchmarkOrchestration1000 is issue 13's measure: apply and destroy of
// 100 networks and 900 volumes on a single node.
func BenchmarkOrchestration1000(b *testing.B) { benchOrchestration(b, 100, 900) }
