package agent

import (
	"testing"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/executors/network"
	"github.com/kiln-dev/kiln/executors/records"
	"github.com/kiln-dev/kiln/executors/volume"
)

// TestTargetLegacy: an action of a non-default project whose id names an
// instance as a kiln without projects named it (the default project's
// stack of the same name) is told apart (errLegacy), never resolved to
// that object; its own instances and the default project's resolve as
// before.
func TestTargetLegacy(t *testing.T) {
	reg, err := records.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := &Real{reg: reg}
	volID := func(stack, phys string) string { return volume.Name(stack, phys, volume.QCOW2) }

	// Named as the default project's web names it.
	a := Action{Stack: "p1/web", Address: "volume.data", Kind: "volume", Op: api.OpDelete, ID: volID("web", "volume.data")}
	if _, err := r.target("volume", instance(a)); !isLegacy(err) {
		t.Fatalf("a legacy volume id: %v, want errLegacy", err)
	}
	// Registered to the default project's web (an instance of a replace).
	legacyNet := record{Kind: "network", ID: network.BridgeName("web", "network.lan~0011aabb"), Stack: "web", Phys: "network.lan~0011aabb"}
	if err := reg.Put(legacyNet); err != nil {
		t.Fatal(err)
	}
	a = Action{Stack: "p1/web", Address: "network.lan", Kind: "network", Op: api.OpDelete, ID: legacyNet.ID}
	if _, err := r.target("network", instance(a)); !isLegacy(err) {
		t.Fatalf("a legacy network record: %v, want errLegacy", err)
	}
	// The default project's own stack resolves it as always.
	a.Stack = "web"
	if phys, err := r.target("network", instance(a)); err != nil || phys != legacyNet.Phys {
		t.Fatalf("default project: %q, %v", phys, err)
	}
	// p1's own instances resolve; an unknown id is an error, not legacy.
	a = Action{Stack: "p1/web", Address: "volume.data", Kind: "volume", Op: api.OpDelete, ID: volID("p1/web", "volume.data")}
	if phys, err := r.target("volume", instance(a)); err != nil || phys != "volume.data" {
		t.Fatalf("p1's own volume: %q, %v", phys, err)
	}
	a.ID = "kiln_nobody_volume-x.qcow2"
	if _, err := r.target("volume", instance(a)); err == nil || isLegacy(err) {
		t.Fatalf("an unknown id: %v, want a plain error", err)
	}
}
