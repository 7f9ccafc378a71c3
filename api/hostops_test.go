package api

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/spec"
)

// TestHostOpsRoundTrip: every host request and answer encodes to JSON and
// decodes back to the same value (attribute values keep int64, float64,
// unknown, nested lists and maps).
func TestHostOpsRoundTrip(t *testing.T) {
	attrs := map[string]any{
		"cpus": int64(2), "ratio": 1.5, "whole": float64(3), "name": "web", "nat": true,
		"address": spec.Unknown{}, "none": nil,
		"networks": []any{map[string]any{"name": "lan", "address": "10.0.0.10", "n": int64(9007199254740993)}},
		"empty":    map[string]any{}, "nolist": []any(nil),
	}
	requests := map[string]HostRequest{
		"refresh": {WorkID: "h-1", Op: HostRefresh, Refresh: &RefreshRequest{Project: "p1", Stack: "web", Resources: []RefreshResource{
			{Address: "server.web", Kind: "server", ID: "kiln-web-1", Attrs: attrs},
			{Address: "network.lan", Kind: "network", Attrs: map[string]any{}},
			{Address: "image.base", Kind: "image"},
		}}},
		"images":  {WorkID: "h-2", Op: HostImages, Images: &ImagesRequest{}},
		"prune":   {WorkID: "h-3", Op: HostPrune, Prune: &PruneRequest{InUse: []string{"aa", "bb"}}},
		"gc":      {WorkID: "h-4", Op: HostGC, GC: &GCRequest{Owned: map[string][]string{"web": {"server.web"}, "p1/db": {}}, Busy: []string{"p2/x"}, Force: true}},
		"console": {WorkID: "h-5", Op: HostConsole, Console: &ConsoleRequest{Project: "p1", Stack: "web", Name: "kiln-web", Offset: -1, Max: 4096}},
	}
	answers := map[string]HostAnswer{
		"refresh": {WorkID: "h-1", Op: HostRefresh, OK: true, Refresh: &RefreshAnswer{Resources: []ResourceRead{
			{Address: "server.web", Exists: true, Attrs: attrs},
			{Address: "network.lan", Exists: false},
		}}},
		"images": {WorkID: "h-2", Op: HostImages, OK: true, Images: &ImagesAnswer{Images: []ImageInfo{{SHA256: "aa", Format: "qcow2", Size: 1 << 40}}}},
		"prune":  {WorkID: "h-3", Op: HostPrune, Error: "remove bb: busy", Prune: &PruneAnswer{Removed: []ImageInfo{{SHA256: "cc", Format: "raw", Size: 3}}}},
		"gc": {WorkID: "h-4", Op: HostGC, OK: true, GC: &GCAnswer{Removed: true, Orphans: []Orphan{
			{Kind: "domain", Name: "kiln-x", Owner: "kiln:p2/x/server.a"}}}},
		"console": {WorkID: "h-5", Op: HostConsole, OK: true, Console: &ConsoleChunk{Text: "boot\n\x00é", Next: 7, Size: 7}},
		"refused": {WorkID: "h-6", Op: "frobnicate", Refused: true, Error: "unknown host operation"},
	}
	for name, req := range requests {
		if err := req.Check(); err != nil {
			t.Errorf("%s: Check: %v", name, err)
		}
		roundTrip(t, name+" request", req)
	}
	for name, ans := range answers {
		roundTrip(t, name+" answer", ans)
	}
	roundTrip(t, "work response", HostWorkResponse{Items: []HostRequest{requests["gc"], requests["console"]}, Index: 42})
}

func roundTrip[T any](t *testing.T, name string, v T) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%s: encode: %v", name, err)
	}
	var got T
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("%s: decode %s: %v", name, b, err)
	}
	if !reflect.DeepEqual(got, v) {
		t.Errorf("%s: round trip through %s\n got %#v\nwant %#v", name, b, got, v)
	}
}

// TestHostRequestCheck: a request names a known op and carries that op's
// request, and no other.
func TestHostRequestCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  HostRequest
		want string // "" ok
	}{
		{"images", HostRequest{Op: HostImages, Images: &ImagesRequest{}}, ""},
		{"unknown op", HostRequest{Op: "frobnicate", Images: &ImagesRequest{}}, `unknown host operation "frobnicate"`},
		{"no op", HostRequest{}, `unknown host operation ""`},
		{"op without its request", HostRequest{Op: HostGC}, "host operation gc without its gc request"},
		{"two requests", HostRequest{Op: HostImages, Images: &ImagesRequest{}, Console: &ConsoleRequest{}}, "host operation images carries a console request too"},
	} {
		err := tc.req.Check()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
}
