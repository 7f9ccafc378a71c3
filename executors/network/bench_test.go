package network

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/netnstest"
)

// BenchmarkCreateDelete20Networks makes 20 networks one after another (NAT,
// no DHCP: a bridge, its gateway and its iptables rules, as the e2e
// real-executor benchmark's networks) and then deletes them, in the test
// namespace. It reports the seconds of each phase and, with
// KILN_BENCH_COUNT_IPTABLES=1, the iptables processes per create and per
// delete.
func BenchmarkCreateDelete20Networks(b *testing.B) {
	netnstest.Guard(b)
	ipt := netnstest.CountIPTables(b, "")
	const n = 20
	d := &Driver{DataDir: b.TempDir(), GuestPorts: []int{18775}}
	ctx := context.Background()
	var specs []Spec
	for i := range n {
		specs = append(specs, Spec{Stack: "bench", Address: fmt.Sprintf("network.n[%d]", i), CIDR: fmt.Sprintf("10.96.%d.0/24", i), NAT: true})
	}
	if _, err := d.iptables(); err != nil {
		b.Fatal(err)
	}
	ipt.Take(b)
	var create, del time.Duration
	var createRuns, delRuns int
	for b.Loop() {
		start := time.Now()
		for _, s := range specs {
			if _, err := d.Create(ctx, s); err != nil {
				b.Fatal(err)
			}
		}
		create += time.Since(start)
		createRuns += ipt.Take(b)
		start = time.Now()
		for _, s := range specs {
			if err := d.Delete(ctx, s); err != nil {
				b.Fatal(err)
			}
		}
		del += time.Since(start)
		delRuns += ipt.Take(b)
	}
	b.ReportMetric(create.Seconds()/float64(b.N), "create-s")
	b.ReportMetric(del.Seconds()/float64(b.N), "delete-s")
	if ipt != nil {
		b.ReportMetric(float64(createRuns)/float64(n*b.N), "iptables-runs/create")
		b.ReportMetric(float64(delRuns)/float64(n*b.N), "iptables-runs/delete")
	}
}
