package server

import (
	"bytes"
	"net/http"
	"testing"
)

// TestPprof: a global admin gets the server's Go profiles (a heap profile
// is gzipped protobuf); an unknown profile is 404; a project's admin is
// refused.
func TestPprof(t *testing.T) {
	_, mgmt := single(t, nil)
	code, out := mgmt.do("GET", "/debug/pprof/heap", nil)
	if code != http.StatusOK || !bytes.HasPrefix(out, []byte{0x1f, 0x8b}) {
		t.Errorf("heap profile: %d, %d bytes starting %q; want 200 and gzip", code, len(out), out[:min(len(out), 8)])
	}
	if code, out := mgmt.do("GET", "/debug/pprof/goroutine?debug=1", nil); code != http.StatusOK || !bytes.Contains(out, []byte("goroutine profile:")) {
		t.Errorf("goroutine profile: %d %.80s", code, out)
	}
	if code, out := mgmt.do("GET", "/debug/pprof/nope", nil); code != http.StatusNotFound {
		t.Errorf("unknown profile: %d %s, want 404", code, out)
	}
	if code, out := mgmt.as("p1", "admin").do("GET", "/debug/pprof/heap", nil); code != http.StatusForbidden {
		t.Errorf("a project admin: %d %.80s, want 403", code, out)
	}
}
