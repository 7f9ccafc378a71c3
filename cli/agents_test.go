package cli

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/api"
)

// TestRatioFlagsChecked: bad allocation ratios stop `kiln agent` and
// `kiln server -agent` before anything starts, with an error that names
// the flag; the ratios are refused on a server without -agent.
func TestRatioFlagsChecked(t *testing.T) {
	eachRefusal(t, []refusal{
		{[]string{"agent", "-cpu-ratio", "0"}, "kiln agent: -cpu-ratio 0: want a number above 0 and at most 1000"},
		{[]string{"agent", "-cpu-ratio", "1000.5"}, "kiln agent: -cpu-ratio 1000.5: want a number above 0 and at most 1000"},
		{[]string{"agent", "-memory-ratio", "-1"}, "kiln agent: -memory-ratio -1: want a number above 0 and at most 100"},
		{[]string{"agent", "-memory-ratio", "NaN"}, "kiln agent: -memory-ratio NaN: want a number above 0 and at most 100"},
		{[]string{"agent", "-cpu-ratio", "lots"}, `kiln agent: invalid value "lots" for flag -cpu-ratio`},
		{[]string{"server", "-agent", "-agent-driver", "memory", "-cpu-ratio", "2000"}, "kiln server: -agent: -cpu-ratio 2000: want a number above 0 and at most 1000"},
		{[]string{"server", "-agent", "-agent-driver", "memory", "-memory-ratio", "101"}, "kiln server: -agent: -memory-ratio 101: want a number above 0 and at most 100"},
		{[]string{"server", "-cpu-ratio", "32", "-memory-ratio", "2"}, "kiln server: -cpu-ratio and -memory-ratio need -agent (the allocation ratios are the agent's)"},
		{[]string{"server", "-memory-ratio", "2"}, "kiln server: -memory-ratio needs -agent (the allocation ratios are the agent's)"},
	}, refusedAtStart)
}

// TestEmbeddedRatiosAndAgents: KILN_CPU_RATIO and KILN_MEMORY_RATIO set
// the embedded agent's ratios, which `kiln agents` shows beside the
// accelerator; bad values name the variable.
func TestEmbeddedRatiosAndAgents(t *testing.T) {
	for _, tt := range []struct{ env, want string }{
		{"KILN_CPU_RATIO=many", `kiln image list: KILN_CPU_RATIO "many": want a number above 0 and at most 1000`},
		{"KILN_CPU_RATIO=0", "kiln image list: KILN_CPU_RATIO 0: want a number above 0 and at most 1000"},
		{"KILN_MEMORY_RATIO=250", "kiln image list: KILN_MEMORY_RATIO 250: want a number above 0 and at most 100"},
	} {
		e, out, errb := embeddedEnv(t)
		e.Environ = append(e.Environ, tt.env)
		if code := run(t, e, out, errb, "image", "list"); code != ExitError || strings.TrimSpace(errb.String()) != tt.want {
			t.Errorf("%s: exit %d, stderr %q, want %q", tt.env, code, errb, tt.want)
		}
	}

	e, out, errb := embeddedEnv(t)
	// The default first, then the variables: the agent reports them again
	// when it registers at the next start.
	for _, env := range [][]string{nil, {envCPURatio + "=32", envMemoryRatio + "=1.5"}} {
		e.Environ = append(e.Environ, env...)
		if code := run(t, e, out, errb, "image", "list"); code != ExitOK {
			t.Fatalf("image list (%v): %d %s", env, code, errb)
		}
		if code := run(t, e, out, errb, "agents", "-json"); code != ExitOK {
			t.Fatalf("agents -json: %d %s", code, errb)
		}
		var list []map[string]any
		if err := json.Unmarshal(out.Bytes(), &list); err != nil || len(list) != 1 {
			t.Fatalf("agents -json: %v %s", err, out)
		}
		a := list[0]
		capa, _ := a["capacity"].(map[string]any)
		wantCPU, wantMem := 16.0, 1.0
		if env != nil {
			wantCPU, wantMem = 32, 1.5
		}
		// The memory driver runs no guests: no accelerator.
		if capa["cpu_ratio"] != wantCPU || capa["memory_ratio"] != wantMem || capa["accel"] != "" ||
			a["accel"] != "" || a["accel_reason"] != "" || a["id"] != "local" ||
			// nor host ports: it forwards nothing on the host.
			a["host_ports"] != "" || capa["host_ports_lo"] != nil {
			t.Errorf("agents -json (%v): %s", env, out)
		}
	}

	if code := run(t, e, out, errb, "agents"); code != ExitOK {
		t.Fatalf("agents: %d %s", code, errb)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "ID ADDRESS STATUS ACCEL CPUS MEMORY DISK HOST PORTS ACTIONS LAST HEARTBEAT" {
		t.Fatalf("agents:\n%s", out)
	}
	cpus := fmt.Sprintf("%d cpus ×32", runtime.NumCPU())
	if runtime.NumCPU() == 1 {
		cpus = "1 cpu ×32"
	}
	row := strings.Join(strings.Fields(lines[1]), " ")
	if !strings.HasPrefix(row, "local embedded up - "+cpus+" ") || !strings.Contains(row, " ×1.5 ") || !strings.Contains(row, "B - 0 ") {
		t.Errorf("agents row %q, want accel - then %q and memory ×1.5", row, cpus)
	}
}

func TestAgentsCells(t *testing.T) {
	tests := []struct {
		c            api.Capacity
		cpus, memory string
	}{
		{api.Capacity{CPUs: 2, MemoryBytes: 16 << 30, CPURatio: 16, MemoryRatio: 1}, "2 cpus ×16", "16GiB ×1"},
		{api.Capacity{CPUs: 1, MemoryBytes: 1 << 30, CPURatio: 2.5, MemoryRatio: 1.5}, "1 cpu ×2.5", "1GiB ×1.5"},
		// An agent that does not report ratios gets the scheduler's defaults.
		{api.Capacity{CPUs: 8, MemoryBytes: 4 << 30}, "8 cpus ×16", "4GiB ×1"},
	}
	for _, tt := range tests {
		if got := cpusCell(tt.c); got != tt.cpus {
			t.Errorf("cpusCell(%+v) = %q, want %q", tt.c, got, tt.cpus)
		}
		if got := memoryCell(tt.c); got != tt.memory {
			t.Errorf("memoryCell(%+v) = %q, want %q", tt.c, got, tt.memory)
		}
	}
}

func TestHostPortsCell(t *testing.T) {
	tests := []struct {
		c    api.Capacity
		want string
	}{
		{api.Capacity{}, "-"},
		{api.Capacity{HostPortsLo: 10000, HostPortsHi: 60000}, "10000-60000"},
		// Only the reserved ports inside the range matter.
		{api.Capacity{HostPortsLo: 1024, HostPortsHi: 32767, ReservedPorts: []int{8775, 20443, 41000}}, "1024-32767 except 8775,20443"},
	}
	for _, tt := range tests {
		if got := hostPortsCell(tt.c); got != tt.want {
			t.Errorf("hostPortsCell(%+v) = %q, want %q", tt.c, got, tt.want)
		}
	}
}
