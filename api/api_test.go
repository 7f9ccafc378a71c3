package api

import (
	"math"
	"testing"
)

func TestCheckRatios(t *testing.T) {
	tests := []struct {
		name string
		c    Capacity
		want string
	}{
		{"not set", Capacity{}, ""},
		{"at the bounds", Capacity{CPURatio: MaxCPURatio, MemoryRatio: MaxMemoryRatio}, ""},
		{"fractions", Capacity{CPURatio: 0.5, MemoryRatio: 1.5}, ""},
		{"negative cpu", Capacity{CPURatio: -1}, "capacity.cpu_ratio -1: want a number above 0 and at most 1000"},
		{"cpu over", Capacity{CPURatio: 1000.5}, "capacity.cpu_ratio 1000.5: want a number above 0 and at most 1000"},
		{"memory over", Capacity{CPURatio: 16, MemoryRatio: 101}, "capacity.memory_ratio 101: want a number above 0 and at most 100"},
		{"not a number", Capacity{MemoryRatio: math.NaN()}, "capacity.memory_ratio NaN: want a number above 0 and at most 100"},
		{"infinite", Capacity{CPURatio: math.Inf(1)}, "capacity.cpu_ratio +Inf: want a number above 0 and at most 1000"},
	}
	for _, tt := range tests {
		err := tt.c.CheckRatios("capacity")
		if got := errString(err); got != tt.want {
			t.Errorf("%s: err = %q, want %q", tt.name, got, tt.want)
		}
	}
	if err := CheckRatio("-cpu-ratio", 0, MaxCPURatio); errString(err) != "-cpu-ratio 0: want a number above 0 and at most 1000" {
		t.Errorf("CheckRatio(0) = %v", err)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestCheckHostPorts(t *testing.T) {
	many := make([]int, MaxReservedPorts+1)
	for i := range many {
		many[i] = i + 1
	}
	tests := []struct {
		name string
		c    Capacity
		want string
	}{
		{"not set", Capacity{}, ""},
		{"a range and reserved ports", Capacity{HostPortsLo: 10000, HostPortsHi: 60000, ReservedPorts: []int{8775}}, ""},
		{"one port", Capacity{HostPortsLo: 1, HostPortsHi: 1}, ""},
		{"only lo", Capacity{HostPortsLo: 10000}, "capacity.host_ports_lo..host_ports_hi 10000..0: want 1 <= lo <= hi <= 65535"},
		{"above 65535", Capacity{HostPortsLo: 10000, HostPortsHi: 70000}, "capacity.host_ports_lo..host_ports_hi 10000..70000: want 1 <= lo <= hi <= 65535"},
		{"reserved not a port", Capacity{ReservedPorts: []int{0}}, "capacity.reserved_ports: 0 is not a port (1-65535)"},
		{"too many reserved", Capacity{ReservedPorts: many}, "capacity.reserved_ports: 65 ports, at most 64"},
	}
	for _, tt := range tests {
		if got := errString(tt.c.CheckHostPorts("capacity")); got != tt.want {
			t.Errorf("%s: err = %q, want %q", tt.name, got, tt.want)
		}
	}
}
