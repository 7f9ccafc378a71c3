package server

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/daemon/agent"
)

// TestAgentCapacity: the ratios, the accelerator and the host-port policy
// an agent reports go through registration and heartbeat into the state
// and back out in GET /v1/agents; ratios and port ranges out of bounds are
// refused.
func TestAgentCapacity(t *testing.T) {
	_, c := single(t, nil)
	capa := api.Capacity{CPUs: 2, MemoryBytes: 4 << 30, DiskBytes: 100 << 30, CPURatio: 32, MemoryRatio: 1.5,
		Accel: "tcg", AccelReason: "/dev/kvm does not exist on this host.",
		HostPortsLo: 10000, HostPortsHi: 60000, ReservedPorts: []int{4646, 8775}}
	var reg api.AgentInfo
	c.must("POST", "/v1/agents", api.AgentRegister{ID: "a1", Address: "test", Capacity: capa}, http.StatusOK, &reg)
	if !reflect.DeepEqual(reg.Capacity, capa) {
		t.Errorf("registered capacity = %+v, want %+v", reg.Capacity, capa)
	}
	agentCapacity := func() (api.Capacity, []byte) {
		t.Helper()
		code, out := c.do("GET", "/v1/agents", nil)
		var list []api.AgentInfo
		if err := json.Unmarshal(out, &list); code != http.StatusOK || err != nil || len(list) != 1 {
			t.Fatalf("agents: %d %s (%v)", code, out, err)
		}
		return list[0].Capacity, out
	}
	got, raw := agentCapacity()
	if !reflect.DeepEqual(got, capa) {
		t.Errorf("listed capacity = %+v, want %+v", got, capa)
	}
	var wire []struct{ Capacity map[string]any }
	json.Unmarshal(raw, &wire)
	want := map[string]any{"cpus": 2.0, "memory_bytes": float64(4 << 30), "disk_bytes": float64(100 << 30), "cpu_ratio": 32.0,
		"memory_ratio": 1.5, "accel": "tcg", "accel_reason": "/dev/kvm does not exist on this host.",
		"host_ports_lo": 10000.0, "host_ports_hi": 60000.0, "reserved_ports": []any{4646.0, 8775.0}}
	if len(wire) != 1 || !reflect.DeepEqual(wire[0].Capacity, want) {
		t.Errorf("GET /v1/agents capacity = %s, want %v", raw, want)
	}

	// A heartbeat with a capacity replaces it; one without leaves it.
	capa.CPURatio, capa.Accel, capa.AccelReason = 4, "kvm", "a probe guest ran under KVM."
	capa.HostPortsLo, capa.ReservedPorts = 20000, []int{8775}
	c.must("POST", "/v1/agents/a1/heartbeat", api.AgentHeartbeat{Capacity: capa}, http.StatusNoContent, nil)
	c.must("POST", "/v1/agents/a1/heartbeat", api.AgentHeartbeat{}, http.StatusNoContent, nil)
	if got, _ := agentCapacity(); !reflect.DeepEqual(got, capa) {
		t.Errorf("capacity after heartbeats = %+v, want %+v", got, capa)
	}

	for _, tt := range []struct {
		name, path string
		body       any
		want       string
	}{
		{"register with a cpu ratio over 1000", "/v1/agents",
			api.AgentRegister{ID: "a2", Capacity: api.Capacity{CPUs: 2, CPURatio: 2000}}, "capacity.cpu_ratio 2000: want a number above 0 and at most 1000"},
		{"heartbeat with a negative memory ratio", "/v1/agents/a1/heartbeat",
			api.AgentHeartbeat{Capacity: api.Capacity{CPUs: 2, MemoryRatio: -1}}, "capacity.memory_ratio -1: want a number above 0 and at most 100"},
		{"register with an upside-down port range", "/v1/agents",
			api.AgentRegister{ID: "a2", Capacity: api.Capacity{CPUs: 2, HostPortsLo: 9000, HostPortsHi: 8000}}, "capacity.host_ports_lo..host_ports_hi 9000..8000: want 1 <= lo <= hi <= 65535"},
		{"heartbeat with a reserved port that is no port", "/v1/agents/a1/heartbeat",
			api.AgentHeartbeat{Capacity: api.Capacity{CPUs: 2, HostPortsLo: 1, HostPortsHi: 2, ReservedPorts: []int{70000}}}, "capacity.reserved_ports: 70000 is not a port (1-65535)"},
	} {
		code, out := c.do("POST", tt.path, tt.body)
		var e struct{ Error, Field string }
		json.Unmarshal(out, &e)
		if code != http.StatusBadRequest || e.Error != tt.want || e.Field != "capacity" {
			t.Errorf("%s: %d %s, want 400 with %q", tt.name, code, out, tt.want)
		}
	}
	if got, _ := agentCapacity(); !reflect.DeepEqual(got, capa) {
		t.Errorf("a refused heartbeat changed the capacity to %+v", got)
	}
}

// TestPlacementUsesAgentRatio: 20 two-vCPU servers do not fit a 2-core
// agent at the default ratio (16), and the failure says so; once the agent
// reports ratio 32 (restarted with it) they do.
func TestPlacementUsesAgentRatio(t *testing.T) {
	s, c := single(t, nil)
	a := agentOn(t, s, "agent-1", onHost(api.Capacity{CPUs: 2, MemoryBytes: 1 << 40, DiskBytes: 1 << 44}))
	tpl := mainHCL(`
network "lan" {
  cidr = "10.70.0.0/24"
}

server "ci" {
  count  = 20
  image  = "img-1"
  cpus   = 2
  memory = "64MiB"
  network "lan" { address = cidrhost(network.lan.cidr, 10 + count.index) }
}
`)
	apply := func() api.Operation { return c.run("apply", "ci", api.ApplyRequest{Template: tpl}) }

	op := apply()
	want := "agent agent-1: cpus: 40 wanted, 32 free of 2 host CPUs × ratio 16"
	if op.Status != "failed" || !strings.Contains(op.Error, want) {
		t.Fatalf("apply at the default ratio: %s %q, want failed with %q", op.Status, op.Error, want)
	}

	a.restart(withConfig(func(c *agent.Config) { c.CPURatio = 32 }))
	if op := apply(); op.Status != "complete" {
		t.Fatalf("apply at ratio 32: %s %s", op.Status, op.Error)
	}
}
