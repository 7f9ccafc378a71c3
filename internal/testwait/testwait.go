// Package testwait is the one way kiln's tests wait for a condition: poll it
// until it holds, and fail the test (or report false) when a limit passes
// first. Tests import it; nothing else does.
package testwait

import (
	"testing"
	"time"
)

// Interval is how often For and ForNil ask again.
const Interval = 50 * time.Millisecond

// Until calls cond every interval until it returns true, and reports
// whether it did before limit passed. cond is always called at least once,
// and once more at the limit.
func Until(limit, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
}

// For waits until cond returns true; when limit passes first, it fails the
// test with "timed out after LIMIT waiting for WHAT".
func For(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Until(limit, Interval, cond) {
		t.Fatalf("timed out after %v waiting for %s", limit, what)
	}
}

// ForNil waits until check returns nil; when limit passes first, it fails
// the test with check's last error, which says what was seen instead.
func ForNil(t testing.TB, limit time.Duration, what string, check func() error) {
	t.Helper()
	var last error
	if !Until(limit, Interval, func() bool { last = check(); return last == nil }) {
		t.Fatalf("timed out after %v waiting for %s: %v", limit, what, last)
	}
}
