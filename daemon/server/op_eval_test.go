package server

import (
	"testing"

	"github.com/kiln-dev/kiln/spec"
)

// TestConfiguredUnknown: only an unknown configured attribute sends an
// action back to the template; the computed ones every create has unknown
// do not.
func TestConfiguredUnknown(t *testing.T) {
	u := spec.Unknown{}
	for _, tt := range []struct {
		name  string
		kind  string
		attrs map[string]any
		want  bool
	}{
		{"network with computed unknowns", "network", map[string]any{"cidr": "10.0.0.0/24", "id": u, "gateway": u, "bridge": u}, false},
		{"server with an unknown image", "server", map[string]any{"image": u, "cpus": int64(1), "id": u, "address": u}, true},
		{"server with an unknown volume in a list", "server", map[string]any{"image": "abc", "volumes": []any{"v1", u}, "mac": u}, true},
		{"volume all known", "volume", map[string]any{"size": int64(1 << 20), "format": "qcow2"}, false},
		{"unknown kind: every unknown counts", "nosuchkind", map[string]any{"x": u}, true},
	} {
		if got := configuredUnknown(tt.kind, tt.attrs); got != tt.want {
			t.Errorf("%s: configuredUnknown = %v, want %v", tt.name, got, tt.want)
		}
	}
}
