// Package testwait is the one way kiln's tests wait for a condition: poll it
// until it holds, and fail the test (or report false) when a limit passes
// first. Tests import it; nothing else does.
package testwait

import (
	"testing"
	"time"
)

// For and ForNil ask again after 1ms, then twice as long each time up to
// maxInterval: a condition that holds soon is seen soon, and a slow one is
// not asked a thousand times.
const (
	firstInterval = time.Millisecond
	maxInterval   = 50 * time.Millisecond
)

// Until calls cond every interval until it returns true, and reports
// whether it did before limit passed. cond is always called at least once,
// and once more at the limit.
func Until(limit, interval time.Duration, cond func() bool) bool {
	return poll(limit, interval, interval, cond)
}

// poll is Until with an interval that starts at first and doubles up to max.
func poll(limit, first, max time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	interval := first
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
		interval = min(2*interval, max)
	}
}

// For waits until cond returns true; when limit passes first, it fails the
// test with "timed out after LIMIT waiting for WHAT".
func For(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	if !poll(limit, firstInterval, maxInterval, cond) {
		t.Fatalf("timed out after %v waiting for %s", limit, what)
	}
}

// ForNil waits until check returns nil; when limit passes first, it fails
// the test with check's last error, which says what was seen instead.
func ForNil(t testing.TB, limit time.Duration, what string, check func() error) {
	t.Helper()
	var last error
	if !poll(limit, firstInterval, maxInterval, func() bool { last = check(); return last == nil }) {
		t.Fatalf("timed out after %v waiting for %s: %v", limit, what, last)
	}
}
