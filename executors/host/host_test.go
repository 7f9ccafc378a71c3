package host_test

import (
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/executors"
	"github.com/kiln-dev/kiln/executors/host"
	"github.com/kiln-dev/kiln/executors/network"
	"github.com/kiln-dev/kiln/executors/server"
)

// TestPhysAddress: a new generation gets its own physical address, and so
// its own physical names; the base address is read back.
func TestPhysAddress(t *testing.T) {
	if host.PhysAddress("server.web[0]", "") != "server.web[0]" {
		t.Fatal("a first generation changed the address")
	}
	a, b := host.PhysAddress("server.web[0]", "op-1"), host.PhysAddress("server.web[0]", "op-2")
	if a == b || !strings.HasPrefix(a, "server.web[0]~") || host.BaseAddress(a) != "server.web[0]" {
		t.Fatalf("physAddress: %q %q", a, b)
	}
	n := host.PhysAddress("network.lan", "op-1")
	if server.Name("s", a) == server.Name("s", "server.web[0]") || network.BridgeName("s", n) == network.BridgeName("s", "network.lan") {
		t.Fatal("a new generation does not get a new physical name")
	}
}

// A server boots only an image of its own stack: the id must be that of one
// of its image dependencies, whatever the shared cache holds.
func TestOwnImage(t *testing.T) {
	const sum = "4f1c0a3b6d2e8f7a9c0b1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a"
	a := executors.Instance{Address: "server.web", Deps: map[string]map[string]any{
		"network.lan": {"id": sum}, "image.base": {"id": "other"}}}
	err := host.OwnImage(a, sum)
	if err == nil || !strings.Contains(err.Error(), `server.web: attribute "image"`) || !strings.Contains(err.Error(), "image.NAME.id") {
		t.Fatalf("an id no image dependency has: %v", err)
	}
	a.Deps["image.guest"] = map[string]any{"id": sum}
	if err := host.OwnImage(a, sum); err != nil {
		t.Fatalf("the id of an image dependency: %v", err)
	}
}

// TestPolicy: port ranges parse and check as the agent's flags want them;
// reserved ports are added once each; Policy hands out copies.
func TestPolicy(t *testing.T) {
	if r, err := host.ParsePortRange(" 2000-3000 "); err != nil || r != (host.PortRange{Lo: 2000, Hi: 3000}) {
		t.Fatalf("ParsePortRange = %v, %v", r, err)
	}
	if r, err := host.ParsePortRange("8080"); err != nil || r != (host.PortRange{Lo: 8080, Hi: 8080}) {
		t.Fatalf("a single port = %v, %v", r, err)
	}
	for _, bad := range []string{"0-10", "10-5", "1-70000", "x"} {
		if _, err := host.ParsePortRange(bad); err == nil {
			t.Errorf("ParsePortRange(%q): no error", bad)
		}
	}
	if (host.Policy{}).Ports() != host.DefaultHostPorts {
		t.Error("the zero policy's ports are not DefaultHostPorts")
	}
	var h host.Host
	if err := h.SetPolicy(host.Policy{AllowLocalImages: []string{"images"}}); err == nil || !strings.Contains(err.Error(), "-allow-local-images") {
		t.Fatalf("a relative directory: %v", err)
	}
	if err := h.SetPolicy(host.Policy{HostPorts: host.PortRange{Lo: 9, Hi: 1}}); err == nil || !strings.Contains(err.Error(), "-host-ports") {
		t.Fatalf("a reversed range: %v", err)
	}
	if err := h.SetPolicy(host.Policy{ReservedPorts: []int{7000}}); err != nil {
		t.Fatal(err)
	}
	h.Reserve(7000, 7001, 0)
	p := h.Policy()
	if len(p.ReservedPorts) != 2 || p.ReservedPorts[1] != 7001 {
		t.Fatalf("reserved = %v, want [7000 7001]", p.ReservedPorts)
	}
	p.ReservedPorts[0] = 1
	if h.Policy().ReservedPorts[0] != 7000 {
		t.Fatal("Policy shares its slices with the host")
	}
}

// TestWithComputed: unknown configured values are dropped, computed ones
// added over the configured.
func TestWithComputed(t *testing.T) {
	type unknown struct{}
	h := host.Host{Unknown: func(v any) bool { _, ok := v.(unknown); return ok }}
	a := executors.Instance{Attrs: map[string]any{"cidr": "10.0.0.0/24", "id": unknown{}, "nat": true}}
	got := h.WithComputed(a, map[string]any{"id": "kb-x", "nat": false})
	if len(got) != 3 || got["id"] != "kb-x" || got["nat"] != false || got["cidr"] != "10.0.0.0/24" {
		t.Fatalf("WithComputed = %v", got)
	}
}
