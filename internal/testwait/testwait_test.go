package testwait

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	n := 0
	if !Until(time.Second, time.Millisecond, func() bool { n++; return n == 3 }) {
		t.Fatal("Until gave up on a condition that came true")
	}
	if n != 3 {
		t.Errorf("cond called %d times, want 3 (it stops once true)", n)
	}
	calls := 0
	start := time.Now()
	if Until(30*time.Millisecond, 5*time.Millisecond, func() bool { calls++; return false }) {
		t.Fatal("Until reported true for a condition that never holds")
	}
	if time.Since(start) < 30*time.Millisecond || calls < 2 {
		t.Errorf("Until gave up after %v and %d calls, before its limit", time.Since(start), calls)
	}
}

// fatalTB records Fatalf and ends its goroutine as testing.T does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// run calls fn with a fatalTB in a goroutine and returns its Fatalf message.
func run(fn func(t testing.TB)) string {
	f := &fatalTB{}
	done := make(chan struct{})
	go func() { defer close(done); fn(f) }()
	<-done
	return f.msg
}

func TestForFailsWithWhat(t *testing.T) {
	if msg := run(func(tb testing.TB) { For(tb, 10*time.Millisecond, "the moon", func() bool { return false }) }); !strings.Contains(msg, "waiting for the moon") {
		t.Errorf("For on a false condition: %q, want a failure naming what it waited for", msg)
	}
	if msg := run(func(tb testing.TB) { For(tb, time.Second, "now", func() bool { return true }) }); msg != "" {
		t.Errorf("For on a true condition failed: %q", msg)
	}
}

func TestForNilFailsWithLastError(t *testing.T) {
	n := 0
	msg := run(func(tb testing.TB) {
		ForNil(tb, 120*time.Millisecond, "the count", func() error { n++; return fmt.Errorf("count %d", n) })
	})
	if !strings.Contains(msg, "waiting for the count: count ") || !strings.HasSuffix(msg, fmt.Sprintf("count %d", n)) {
		t.Errorf("ForNil failure %q, want the last error (count %d)", msg, n)
	}
	if msg := run(func(tb testing.TB) { ForNil(tb, time.Second, "nil", func() error { return nil }) }); msg != "" {
		t.Errorf("ForNil on nil failed: %q", msg)
	}
}
