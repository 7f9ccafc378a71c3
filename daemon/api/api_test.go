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
