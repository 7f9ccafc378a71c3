package executors

import (
	"strings"
	"testing"
)

func TestPhysicalName(t *testing.T) {
	tests := []struct {
		stack, address string
		max            int
		want           string
	}{
		{"ci-1", "server.web[0]", 63, "ci-1-server-web-0"},
		{"Demo", "network.lan", 63, "demo-network-lan"},
		{"demo", "network.lan", 16, "demo-network-lan"},
		{"demo", "network.lan", 12, "demo-" + ShortHash("demo", "network.lan")},
		{"a", `volume.data["x/y z"]`, 63, "a-volume-data-x-y-z"},
		{"stack", "x", 3, "stack-x"},
		{"stackname", "x", 3, "s-" + ShortHash("stackname", "x")},
	}
	for _, tt := range tests {
		got := PhysicalName(tt.stack, tt.address, tt.max)
		if got != tt.want {
			t.Errorf("PhysicalName(%q, %q, %d) = %q, want %q", tt.stack, tt.address, tt.max, got, tt.want)
		}
		max := tt.max
		if max < 8 {
			max = 8
		}
		if len(got) > max {
			t.Errorf("PhysicalName(%q, %q, %d) = %q is longer than %d", tt.stack, tt.address, tt.max, got, max)
		}
		if again := PhysicalName(tt.stack, tt.address, tt.max); again != got {
			t.Errorf("PhysicalName not deterministic: %q then %q", got, again)
		}
	}
}

func TestPhysicalNameTruncatedDiffer(t *testing.T) {
	a := PhysicalName("a-very-long-stack-name", "network.lan", 15)
	b := PhysicalName("a-very-long-stack-name", "network.wan", 15)
	if a == b {
		t.Fatalf("truncated names collide: %q", a)
	}
	if !strings.HasPrefix(a, "a-very-l") {
		t.Errorf("truncated name %q lost its readable prefix", a)
	}
}

func TestOwner(t *testing.T) {
	tag := Owner("ci-1", "network.lan")
	if tag != "kiln:ci-1/network.lan" {
		t.Fatalf("Owner = %q", tag)
	}
	tests := []struct {
		tag, stack, address string
		ok                  bool
	}{
		{tag, "ci-1", "network.lan", true},
		{"kiln:s/server.web[0]", "s", "server.web[0]", true},
		{"kiln:", "", "", false},
		{"kiln:s", "", "", false},
		{"other:s/a", "", "", false},
	}
	for _, tt := range tests {
		s, a, ok := ParseOwner(tt.tag)
		if s != tt.stack || a != tt.address || ok != tt.ok {
			t.Errorf("ParseOwner(%q) = %q, %q, %v", tt.tag, s, a, ok)
		}
	}
}
