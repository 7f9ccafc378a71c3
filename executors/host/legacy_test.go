package host_test

import (
	"testing"

	"github.com/kiln-dev/kiln/executors"
	"github.com/kiln-dev/kiln/executors/host"
	"github.com/kiln-dev/kiln/executors/network"
	"github.com/kiln-dev/kiln/executors/records"
	"github.com/kiln-dev/kiln/executors/volume"
)

// TestTargetLegacy: an action of a non-default project whose id names an
// instance as a kiln without projects named it (the default project's
// stack of the same name) is told apart (ErrLegacy), never resolved to
// that object; its own instances and the default project's resolve as
// before.
func TestTargetLegacy(t *testing.T) {
	reg, err := records.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := host.New(reg, func(any) bool { return false })
	volID := func(stack, phys string) string { return volume.Name(stack, phys, volume.QCOW2) }

	// Named as the default project's web names it.
	a := executors.Instance{Stack: "p1/web", Address: "volume.data", Kind: "volume", Op: executors.OpDelete, ID: volID("web", "volume.data")}
	if _, err := h.Target("volume", a); !host.IsLegacy(err) {
		t.Fatalf("a legacy volume id: %v, want ErrLegacy", err)
	}
	// Registered to the default project's web (an instance of a replace).
	legacyNet := records.Record{Kind: "network", ID: network.BridgeName("web", "network.lan~0011aabb"), Stack: "web", Phys: "network.lan~0011aabb"}
	if err := reg.Put(legacyNet); err != nil {
		t.Fatal(err)
	}
	a = executors.Instance{Stack: "p1/web", Address: "network.lan", Kind: "network", Op: executors.OpDelete, ID: legacyNet.ID}
	if _, err := h.Target("network", a); !host.IsLegacy(err) {
		t.Fatalf("a legacy network record: %v, want ErrLegacy", err)
	}
	// The default project's own stack resolves it as always.
	a.Stack = "web"
	if phys, err := h.Target("network", a); err != nil || phys != legacyNet.Phys {
		t.Fatalf("default project: %q, %v", phys, err)
	}
	// p1's own instances resolve; an unknown id is an error, not legacy.
	a = executors.Instance{Stack: "p1/web", Address: "volume.data", Kind: "volume", Op: executors.OpDelete, ID: volID("p1/web", "volume.data")}
	if phys, err := h.Target("volume", a); err != nil || phys != "volume.data" {
		t.Fatalf("p1's own volume: %q, %v", phys, err)
	}
	a.ID = "kiln_nobody_volume-x.qcow2"
	if _, err := h.Target("volume", a); err == nil || host.IsLegacy(err) {
		t.Fatalf("an unknown id: %v, want a plain error", err)
	}
}
