package network

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/netnstest"
)

// CountIPTablesEnv, set to 1, makes BenchmarkCreateDelete20Networks count
// the iptables processes it starts (iptables, iptables-save and
// iptables-restore) through wrappers put first in PATH. The wrappers' own
// shell slows every run, so the times of a counting run are not the ones to
// compare.
const CountIPTablesEnv = "KILN_BENCH_COUNT_IPTABLES"

// wrapIPTables puts the counting wrappers first in PATH and returns the
// file they log to, a line per run ("" when counting is off).
func wrapIPTables(b *testing.B) string {
	if os.Getenv(CountIPTablesEnv) != "1" {
		return ""
	}
	dir := b.TempDir()
	log := filepath.Join(dir, "runs")
	for _, tool := range []string{"iptables", "iptables-save", "iptables-restore"} {
		real, err := exec.LookPath(tool)
		if err != nil {
			b.Fatalf("%s is not installed: %v", tool, err)
		}
		script := fmt.Sprintf("#!/bin/sh\necho %s \"$*\" >> %q\nexec %q \"$@\"\n", tool, log, real)
		if err := os.WriteFile(filepath.Join(dir, tool), []byte(script), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	b.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return log
}

// runs counts the wrappers' log lines and empties the log.
func runs(b *testing.B, log string) int {
	if log == "" {
		return 0
	}
	data, err := os.ReadFile(log)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		b.Fatal(err)
	}
	os.Remove(log)
	return strings.Count(string(data), "\n")
}

// BenchmarkCreateDelete20Networks makes 20 networks one after another (NAT,
// no DHCP: a bridge, its gateway and its iptables rules, as the e2e
// real-executor benchmark's networks) and then deletes them, in the test
// namespace. It reports the seconds of each phase and, with
// KILN_BENCH_COUNT_IPTABLES=1, the iptables processes per create and per
// delete.
func BenchmarkCreateDelete20Networks(b *testing.B) {
	netnstest.Guard(b)
	log := wrapIPTables(b)
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
	runs(b, log)
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
		createRuns += runs(b, log)
		start = time.Now()
		for _, s := range specs {
			if err := d.Delete(ctx, s); err != nil {
				b.Fatal(err)
			}
		}
		del += time.Since(start)
		delRuns += runs(b, log)
	}
	b.ReportMetric(create.Seconds()/float64(b.N), "create-s")
	b.ReportMetric(del.Seconds()/float64(b.N), "delete-s")
	if log != "" {
		b.ReportMetric(float64(createRuns)/float64(n*b.N), "iptables-runs/create")
		b.ReportMetric(float64(delRuns)/float64(n*b.N), "iptables-runs/delete")
	}
}
