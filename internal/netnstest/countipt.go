package netnstest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// CountIPTablesEnv, set to 1, makes the benchmarks that call CountIPTables
// count the iptables processes started (iptables, iptables-save and
// iptables-restore) through wrappers put first in PATH. The wrappers' own
// shell slows every run, so the times of a counting run are not the ones to
// compare.
const CountIPTablesEnv = "KILN_BENCH_COUNT_IPTABLES"

// IPTablesCounter counts the runs logged by the wrappers CountIPTables
// installs. A nil counter (counting off) counts nothing.
type IPTablesCounter struct {
	log string
}

// CountIPTables puts wrappers of iptables, iptables-save and
// iptables-restore first in PATH (for the rest of tb) when CountIPTablesEnv
// is 1, and returns the counter of their runs; it returns nil otherwise.
// With parent set, only the runs started by a process of that command name
// (/proc/PID/comm, e.g. "kiln") are counted, so that the benchmark's own
// look at the rules is not.
func CountIPTables(tb testing.TB, parent string) *IPTablesCounter {
	tb.Helper()
	if os.Getenv(CountIPTablesEnv) != "1" {
		return nil
	}
	dir := tb.TempDir()
	log := filepath.Join(dir, "runs")
	filter := ""
	if parent != "" {
		filter = fmt.Sprintf("read -r c < /proc/$PPID/comm\n[ \"$c\" = %q ] && ", parent)
	}
	for _, tool := range []string{"iptables", "iptables-save", "iptables-restore"} {
		real, err := exec.LookPath(tool)
		if err != nil {
			tb.Fatalf("%s=1: no %s to wrap: %v", CountIPTablesEnv, tool, err)
		}
		script := fmt.Sprintf("#!/bin/sh\n%secho \"%s $*\" >> %q\nexec %q \"$@\"\n", filter, tool, log, real)
		if err := os.WriteFile(filepath.Join(dir, tool), []byte(script), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	tb.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	tb.Logf("%s=1: counting iptables runs through %s (times are slower)", CountIPTablesEnv, dir)
	return &IPTablesCounter{log: log}
}

// Take returns the runs counted since the last Take and forgets them.
func (c *IPTablesCounter) Take(tb testing.TB) int {
	tb.Helper()
	if c == nil {
		return 0
	}
	data, err := os.ReadFile(c.log)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.Remove(c.log); err != nil {
		tb.Fatal(err)
	}
	return strings.Count(string(data), "\n")
}
