package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/executors/server"
	"github.com/kiln-dev/kiln/internal/libvirttest"
)

func TestTail(t *testing.T) {
	log := []byte("\x1b[2J\x1b[0mSeaBIOS\r\n\r\nline 2\tend\nkiln-guest: up\n" + strings.Repeat("x", 300) + "\n")
	got := server.Tail(log, 3)
	want := "  line 2 end\n  kiln-guest: up\n  " + strings.Repeat("x", 200) + "…"
	if got != want {
		t.Fatalf("Tail = %q, want %q", got, want)
	}
	if server.Tail(nil, 5) != "" {
		t.Fatal("Tail of nothing is not empty")
	}
}

func TestReadyValidate(t *testing.T) {
	for _, c := range []struct {
		r    server.Ready
		want string
	}{
		{server.Ready{}, ""},
		{server.Ready{Kind: server.CheckTCP, Address: "10.0.0.2", Port: 22}, ""},
		{server.Ready{Kind: server.CheckTCP, Port: 22}, "needs a network"},
		{server.Ready{Kind: server.CheckHTTP, Address: "10.0.0.2", Port: 0}, "not in 1..65535"},
		{server.Ready{Kind: server.CheckConsole, Console: "("}, "not a regular expression"},
		{server.Ready{Kind: server.CheckSignal}, "ready URL"},
		{server.Ready{Kind: server.CheckLease}, "lease"},
		{server.Ready{Kind: "ping"}, "unknown check"},
	} {
		err := c.r.Validate()
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%+v: Validate = %v, want %q", c.r, err, c.want)
		}
	}
}

// guestSpec is a one-NIC test guest on bridge br with a static address.
func guestSpec(f *fixture, stack, addr, br, ip, gw string) server.Spec {
	return server.Spec{
		Stack: stack, Address: addr,
		Image: f.img.Path, ImageFormat: f.img.Format,
		CPUs: 1, Memory: 128 << 20,
		NICs: []server.NIC{{Network: "network.lan", Bridge: br, Address: ip + "/24", Gateway: gw}},
	}
}

// TestServerReadyHTTP: a create with an http readiness check returns once
// the guest answers, so the first request right after it succeeds (no
// polling here).
func TestServerReadyHTTP(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	bridge(t, "kbr1", "10.0.1.1/24")
	spec := guestSpec(f, "s2", "server.web", "kbr1", "10.0.1.10", "10.0.1.1")
	spec.Ready = server.Ready{Kind: server.CheckHTTP, Address: "10.0.1.10", Port: 80, Timeout: 3 * time.Minute}
	var progress []string
	spec.Progress = func(m string) { progress = append(progress, m) }
	t.Cleanup(func() { f.srv.Delete(context.Background(), spec.Stack, spec.Address) })
	s, err := f.srv.Create(ctx, spec)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if s.ReadyAfter <= 0 {
		t.Fatalf("ReadyAfter = %s", s.ReadyAfter)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://10.0.1.10/")
	if err != nil {
		t.Fatalf("the first request after create failed: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "hostname="+server.Name(spec.Stack, spec.Address)) {
		t.Fatalf("first answer %d %q", resp.StatusCode, body)
	}
	if len(progress) != 2 || !strings.HasPrefix(progress[0], "booting under TCG") || !strings.HasPrefix(progress[1], "ready after ") {
		t.Fatalf("progress = %q", progress)
	}
	t.Logf("ready after %s; progress %q", s.ReadyAfter.Round(time.Millisecond), progress)

	// A repeated create adopts the running guest and sees it ready at once.
	again, err := f.srv.Create(ctx, spec)
	if err != nil || again.Name != s.Name {
		t.Fatalf("second create = %+v, %v", again, err)
	}
	// A create of another spec (a new readiness check is not one) remakes
	// an unfinished domain; a new check alone adopts it.
	spec.Ready = server.Ready{Kind: server.CheckConsole, Console: `KILN-GUEST-READY`}
	if _, err := f.srv.Create(ctx, spec); err != nil {
		t.Fatalf("create with a console check: %v", err)
	}
}

// TestServerNeverReady: a check that never passes fails after its
// timeout, naming the check and the domain's state and quoting the
// console; the domain is left for a re-run, which adopts it once the
// check is fixed.
func TestServerNeverReady(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	bridge(t, "kbr2", "10.0.2.1/24")
	spec := guestSpec(f, "s3", "server.web", "kbr2", "10.0.2.10", "10.0.2.1")
	// Long enough for the guest to boot (and print its ready line) on a
	// loaded CI host.
	const timeout = 45 * time.Second
	spec.Ready = server.Ready{Kind: server.CheckTCP, Address: "10.0.2.10", Port: 2222, Timeout: timeout}
	t.Cleanup(func() { f.srv.Delete(context.Background(), spec.Stack, spec.Address) })
	start := time.Now()
	_, err := f.srv.Create(ctx, spec)
	took := time.Since(start)
	if !errors.Is(err, server.ErrNotReady) {
		t.Fatalf("create = %v, want ErrNotReady", err)
	}
	msg := err.Error()
	for _, want := range []string{"not ready within 45s", "tcp_port 2222", "domain running (reason: booted)", "last lines of the console", "KILN-GUEST-READY"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	// It waited for the timeout, and not unboundedly longer.
	if took < timeout || took > timeout+time.Minute {
		t.Errorf("create failed after %s; timeout %s", took, timeout)
	}
	t.Logf("failed after %s:\n%s", took.Round(time.Millisecond), msg)

	// Fixed: the re-run adopts the running guest.
	spec.Ready = server.Ready{Kind: server.CheckTCP, Address: "10.0.2.10", Port: 80, Timeout: time.Minute}
	if _, err := f.srv.Create(ctx, spec); err != nil {
		t.Fatalf("create after fixing the check: %v", err)
	}
}

// kernelBoot copies the test guest's kernel and initramfs (build/test-image)
// where the test's qemu can read them.
func kernelBoot(t *testing.T) (kernel, initrd string) {
	t.Helper()
	dir := filepath.Join(libvirttest.Dir(t), "kernel")
	os.MkdirAll(dir, 0o755)
	for _, f := range []string{"vmlinuz", "initrd.gz"} {
		src, err := filepath.Abs("../../build/test-image/disk/" + f)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatalf("the test guest's %s is missing (%v): run `make test-image`", f, err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd.gz")
}

// TestServerCrashFast: a guest whose kernel panics, or that powers off at
// boot, fails the create at once with the domain's state, long before the
// readiness timeout.
func TestServerCrashFast(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	kernel, initrd := kernelBoot(t)
	for i, c := range []struct {
		name, cmdline string
		want          []string
	}{
		{"panic", "console=ttyS0 panic=-1 rdinit=/nonexistent root=/dev/nonexistent", []string{"kernel panicked", "Kernel panic - not syncing"}},
		{"poweroff", "console=ttyS0 rdinit=/bin/poweroff -- -f", []string{"stopped before it was ready", "domain shutoff (reason: shutdown)"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			spec := server.Spec{
				Stack: "s4", Address: fmt.Sprintf("server.crash[%d]", i),
				Image: f.img.Path, ImageFormat: f.img.Format, CPUs: 1, Memory: 128 << 20,
				Kernel: kernel, Initrd: initrd, Cmdline: c.cmdline,
				Ready: server.Ready{Kind: server.CheckConsole, Console: "KILN-GUEST-READY", Timeout: 5 * time.Minute},
			}
			t.Cleanup(func() { f.srv.Delete(context.Background(), spec.Stack, spec.Address) })
			start := time.Now()
			_, err := f.srv.Create(ctx, spec)
			if !errors.Is(err, server.ErrNotReady) {
				t.Fatalf("create = %v, want ErrNotReady", err)
			}
			msg := err.Error()
			if strings.Contains(msg, "not ready within") {
				t.Fatalf("the crash was seen only at the timeout:\n%s", msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %q:\n%s", w, msg)
				}
			}
			t.Logf("failed after %s:\n%s", time.Since(start).Round(time.Millisecond), msg)
		})
	}
}

// TestServerSignal: the guest calls its ready URL (from its seed) and only
// that server's secret counts.
func TestServerSignal(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	bridge(t, "kbr3", "10.0.3.1/24")
	sig, err := server.OpenSignals(t.TempDir(), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sig.Close()
	if err := sig.Listen("10.0.3.1"); err != nil {
		t.Fatal(err)
	}
	a := guestSpec(f, "s5", "server.a", "kbr3", "10.0.3.10", "10.0.3.1")
	b := guestSpec(f, "s5", "server.b", "kbr3", "10.0.3.11", "10.0.3.1")
	nameA, nameB := server.Name(a.Stack, a.Address), server.Name(b.Stack, b.Address)
	if sig.Secret(nameA) == sig.Secret(nameB) {
		t.Fatal("two servers have one secret")
	}
	// From the host: A's URL with B's secret is refused and counts for nothing.
	forged := strings.Replace(sig.URL("10.0.3.1", nameA), sig.Secret(nameA), sig.Secret(nameB), 1)
	resp, err := http.Post(forged, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !sig.Signalled(nameA).IsZero() {
		t.Fatalf("forged call: status %d, signalled %v", resp.StatusCode, sig.Signalled(nameA))
	}

	// Server A's guest is given that forged URL: it calls, is refused, and
	// A is not ready.
	a.ReadyURL = forged
	a.Ready = server.Ready{Kind: server.CheckSignal, Signalled: func() time.Time { return sig.Signalled(nameA) }, Timeout: 40 * time.Second}
	t.Cleanup(func() { f.srv.Delete(context.Background(), a.Stack, a.Address) })
	if _, err := f.srv.Create(ctx, a); !errors.Is(err, server.ErrNotReady) || !strings.Contains(err.Error(), "has not called its ready URL") {
		t.Fatalf("create with a forged URL = %v, want not ready: the guest has not called its ready URL", err)
	}

	// Server B's guest gets its own URL: ready.
	b.ReadyURL = sig.URL("10.0.3.1", nameB)
	b.Ready = server.Ready{Kind: server.CheckSignal, Signalled: func() time.Time { return sig.Signalled(nameB) }, Timeout: 3 * time.Minute}
	t.Cleanup(func() { f.srv.Delete(context.Background(), b.Stack, b.Address) })
	s, err := f.srv.Create(ctx, b)
	if err != nil {
		t.Fatalf("create with its own URL: %v", err)
	}
	if sig.Signalled(nameB).IsZero() || !sig.Signalled(nameA).IsZero() {
		t.Fatalf("signalled: a %v, b %v", sig.Signalled(nameA), sig.Signalled(nameB))
	}
	t.Logf("b ready after %s", s.ReadyAfter.Round(time.Millisecond))
}

// TestCPUModeNeedsKVM: host-passthrough and host-model are refused on a
// TCG driver with the reason, before anything is made; "default" is fine.
func TestCPUModeNeedsKVM(t *testing.T) {
	d := &server.Driver{}
	d.SetAccel("qemu", "KVM cannot run a guest here: the probe guest paused")
	spec := server.Spec{Stack: "s", Address: "server.x", Image: "/nonexistent.qcow2", ImageFormat: "qcow2", CPUs: 1, Memory: 64 << 20}
	for _, mode := range []string{"host-passthrough", "host-model"} {
		spec.CPUMode = mode
		_, err := d.Create(context.Background(), spec)
		if err == nil || !strings.Contains(err.Error(), `cpu_mode "`+mode+`" needs KVM`) || !strings.Contains(err.Error(), "the probe guest paused") {
			t.Errorf("cpu_mode %s under TCG: %v", mode, err)
		}
	}
	spec.CPUMode = "turbo"
	if _, err := d.Create(context.Background(), spec); err == nil || !strings.Contains(err.Error(), "want host-passthrough, host-model or default") {
		t.Errorf("cpu_mode turbo: %v", err)
	}
}
