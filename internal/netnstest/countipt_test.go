package netnstest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestCountIPTables(t *testing.T) {
	Guard(t)
	t.Setenv(CountIPTablesEnv, "")
	if c := CountIPTables(t, ""); c != nil || c.Take(t) != 0 {
		t.Fatalf("counting off: CountIPTables = %v, want nil counting nothing", c)
	}
	run := func(tool string, args ...string) {
		t.Helper()
		if out, err := exec.Command(tool, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", tool, err, out)
		}
	}
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	self := strings.TrimSpace(string(comm))
	tests := []struct {
		name   string
		parent string
		want   int
	}{
		{"every run", "", 2},
		// The runs here are started by the test binary, not by kiln.
		{"runs by kiln only", "kiln", 0},
		{"runs by this binary only", self, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(CountIPTablesEnv, "1")
			c := CountIPTables(t, tt.parent)
			if c == nil {
				t.Fatal("counting on: CountIPTables = nil")
			}
			run("iptables", "-S")
			run("iptables-save")
			if got := c.Take(t); got != tt.want {
				t.Fatalf("Take = %d, want %d", got, tt.want)
			}
			run("iptables", "-S")
			if got, want := c.Take(t), tt.want/2; got != want {
				t.Fatalf("second Take = %d, want %d (only the runs since the first)", got, want)
			}
		})
	}
}
