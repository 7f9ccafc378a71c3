package accel

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"libvirt.org/go/libvirt"

	"github.com/kiln-dev/kiln/internal/libvirttest"
	"github.com/kiln-dev/kiln/internal/testwait"
)

// The tests below boot the probe under the private libvirtd of
// internal/libvirttest, in a network and mount namespace of the test's own.
// None assumes whether KVM works on the machine that runs them: they check
// that Choose agrees with a probe run under type kvm, whatever its verdict.

func TestMain(m *testing.M) { os.Exit(libvirttest.Main(m)) }

func connect(t testing.TB) (*libvirttest.Daemon, *libvirt.Connect) {
	t.Helper()
	d := libvirttest.Shared(t)
	conn, err := d.Connect()
	if err != nil {
		t.Fatalf("connect to the test libvirtd: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return d, conn
}

// assertClean fails unless the probe domain and its files are gone.
func assertClean(t *testing.T, conn *libvirt.Connect, dir string) {
	t.Helper()
	if dom, err := conn.LookupDomainByName(ProbeName()); err == nil {
		dom.Free()
		t.Errorf("probe domain %s is still there", ProbeName())
	} else if !isCode(err, libvirt.ERR_NO_DOMAIN) {
		t.Errorf("look up the probe domain: %v", err)
	}
	left, _ := os.ReadDir(dir)
	for _, e := range left {
		t.Errorf("file left in the probe directory: %s", e.Name())
	}
}

// TestProbeTCG boots the payload under TCG (domain type qemu), which runs it
// on every x86_64 host: it proves the payload goes through all its modes and
// that the marker is seen.
func TestProbeTCG(t *testing.T) {
	d, conn := connect(t)
	dir := t.TempDir()
	res, err := RunProbe(context.Background(), conn, "qemu", dir, 0)
	if err != nil {
		t.Fatalf("RunProbe(qemu): %v", err)
	}
	if !res.OK {
		t.Fatalf("the probe did not pass under TCG: %s\nqemu log:\n%s", res.Reason, d.QemuLog(ProbeName()))
	}
	t.Logf("TCG probe: %s (libvirt: %s, %s)", res.Duration.Round(time.Millisecond), res.State, res.StateReason)
	at := 0
	for _, m := range []string{"KILN-PROBE real\n", "KILN-PROBE protected\n", "KILN-PROBE real-again\n", "KILN-PROBE long\n", OKMarker} {
		i := strings.Index(res.Console[at:], m)
		if i < 0 {
			t.Fatalf("console lacks %q after byte %d:\n%s", m, at, res.Console)
		}
		at += i + len(m)
	}
	if res.Reason != "" || res.State != "running" || res.Duration <= 0 {
		t.Fatalf("result %+v", res)
	}
	assertClean(t, conn, dir)
}

// TestProbeTimeout: a guest that does not reach its marker in time is a
// verdict that says so, and is cleaned up.
func TestProbeTimeout(t *testing.T) {
	_, conn := connect(t)
	dir := t.TempDir()
	res, err := RunProbe(context.Background(), conn, "qemu", dir, time.Nanosecond)
	if err != nil {
		t.Fatalf("RunProbe: %v", err)
	}
	// The marker cannot be on the console before the first look, which
	// comes before the deadline is looked at.
	if res.OK || !strings.HasPrefix(res.Reason, "the probe guest did not reach its marker within 1ns (libvirt reports it running") ||
		!strings.Contains(res.Reason, "; console: ") {
		t.Fatalf("result %+v", res)
	}
	assertClean(t, conn, dir)
}

// TestProbeCancel: cancelling ctx while the probe guest boots ends the run
// with an error, and the domain and files are gone all the same.
func TestProbeCancel(t *testing.T) {
	_, conn := connect(t)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// Cancel as soon as the domain exists, while it is being started.
		for ctx.Err() == nil {
			if dom, err := conn.LookupDomainByName(ProbeName()); err == nil {
				dom.Free()
				cancel()
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	res, err := RunProbe(ctx, conn, "qemu", dir, time.Minute)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("RunProbe with ctx cancelled during the boot = %+v, %v; want context.Canceled", res, err)
	}
	assertClean(t, conn, dir)

	if _, err := RunProbe(ctx, conn, "qemu", dir, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("RunProbe with a cancelled ctx: %v", err)
	}
	assertClean(t, conn, dir)
}

// TestProbeLeftovers: a domain of the probe's name left running, and files
// of a probe whose domain is gone, are cleaned before the run.
func TestProbeLeftovers(t *testing.T) {
	_, conn := connect(t)
	dir := t.TempDir()
	disk := filepath.Join(dir, "leftover.img")
	if err := writeDisk(disk); err != nil {
		t.Fatal(err)
	}
	doc, err := probeXML("qemu", ProbeName(), disk, filepath.Join(dir, "leftover.console")).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// Not autodestroy: as if a process of the same pid had left it.
	dom, err := conn.DomainCreateXML(doc, libvirt.DOMAIN_NONE)
	if err != nil {
		t.Fatalf("start a leftover probe domain: %v", err)
	}
	defer dom.Free()
	stale := filepath.Join(dir, "kiln-accel-probe-999999999.console")
	other := filepath.Join(dir, "kiln-accel-probe-notes.txt")
	for _, f := range []string{stale, other} {
		if err := os.WriteFile(f, []byte("KILN-PROBE-OK\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	res, err := RunProbe(context.Background(), conn, "qemu", dir, 0)
	if err != nil || !res.OK {
		t.Fatalf("RunProbe over a leftover = %+v, %v", res, err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the stale probe file is still there (%v)", err)
	}
	for _, f := range []string{disk, filepath.Join(dir, "leftover.console"), other} {
		os.Remove(f) // not the probe's: left alone, removed here
	}
	assertClean(t, conn, dir)
}

// kvmProbe is one direct probe under type kvm, shared by the Choose tests.
var kvmProbe struct {
	once sync.Once
	res  ProbeResult
	err  error
}

func directKVMProbe(t *testing.T, conn *libvirt.Connect) ProbeResult {
	t.Helper()
	kvmProbe.once.Do(func() {
		dir, err := os.MkdirTemp("", "kiln-accel-direct-")
		if err != nil {
			kvmProbe.err = err
			return
		}
		defer os.RemoveAll(dir)
		kvmProbe.res, kvmProbe.err = RunProbe(context.Background(), conn, "kvm", dir, 0)
	})
	if kvmProbe.err != nil {
		t.Fatalf("direct probe under type kvm: %v", kvmProbe.err)
	}
	if kvmProbe.res.OK {
		t.Logf("direct kvm probe passed in %s", kvmProbe.res.Duration.Round(time.Millisecond))
	} else {
		t.Logf("direct kvm probe failed in %s: %s", kvmProbe.res.Duration.Round(time.Millisecond), kvmProbe.res.Reason)
	}
	return kvmProbe.res
}

// expectedWhy is what Choose must name when KVM is not usable: the first
// cheap check that fails, else the direct probe's reason without its
// console tail (which changes from boot to boot: SeaBIOS prints the
// machine's UUID).
func expectedWhy(t *testing.T, conn *libvirt.Connect, direct ProbeResult) string {
	if runtime.GOARCH != "amd64" {
		return "kiln's guests are x86_64"
	}
	if err := checkDevice(DevicePath); err != nil {
		return err.Error()
	}
	if err := checkCaps(conn); err != nil {
		return err.Error()
	}
	why, _, _ := strings.Cut(direct.Reason, "; console: ")
	return why
}

// TestChooseAuto: auto takes kvm exactly when a probe under type kvm
// passes, and says why either way.
func TestChooseAuto(t *testing.T) {
	_, conn := connect(t)
	direct := directKVMProbe(t, conn)
	dir := t.TempDir()
	for _, want := range []string{"auto", ""} {
		res, err := Choose(context.Background(), conn, want, dir)
		if err != nil {
			t.Fatalf("Choose(%q): %v", want, err)
		}
		t.Logf("Choose(%q) = %+v", want, res)
		if res.Reason == "" {
			t.Fatalf("Choose(%q) gives no reason: %+v", want, res)
		}
		if direct.OK {
			if res.Accel != "kvm" || res.DomainType != "kvm" || res.Probe <= 0 {
				t.Fatalf("the kvm probe passes, but Choose(%q) = %+v", want, res)
			}
		} else {
			why := expectedWhy(t, conn, direct)
			if res.Accel != "tcg" || res.DomainType != "qemu" || !strings.Contains(res.Reason, why) {
				t.Fatalf("the kvm probe fails (%s), but Choose(%q) = %+v", why, want, res)
			}
		}
		assertClean(t, conn, dir)
	}
}

// TestChooseKVM: kvm is an error exactly when a probe under type kvm fails,
// and the error names the reason.
func TestChooseKVM(t *testing.T) {
	_, conn := connect(t)
	direct := directKVMProbe(t, conn)
	dir := t.TempDir()
	res, err := Choose(context.Background(), conn, "kvm", dir)
	t.Logf("Choose(kvm) = %+v, %v", res, err)
	if direct.OK {
		if err != nil || res.Accel != "kvm" || res.DomainType != "kvm" || !strings.HasPrefix(res.Reason, "requested (-accel kvm)") {
			t.Fatalf("the kvm probe passes, but Choose(kvm) = %+v, %v", res, err)
		}
	} else {
		why := expectedWhy(t, conn, direct)
		if err == nil || !errors.Is(err, ErrKVMUnusable) ||
			!strings.HasPrefix(err.Error(), "-accel kvm: KVM cannot run a guest on this host: ") || !strings.Contains(err.Error(), why) {
			t.Fatalf("the kvm probe fails (%s), but Choose(kvm) = %+v, %v", why, res, err)
		}
	}
	assertClean(t, conn, dir)
}

// TestChooseTCG: tcg needs no probe: Choose does not touch libvirt (a nil
// connection) nor the directory.
func TestChooseTCG(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "never-made")
	res, err := Choose(context.Background(), nil, "tcg", dir)
	if err != nil {
		t.Fatalf("Choose(tcg): %v", err)
	}
	if res != (Result{Accel: "tcg", DomainType: "qemu", Reason: "requested (-accel tcg)"}) {
		t.Fatalf("Choose(tcg) = %+v", res)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("Choose(tcg) made its directory (%v)", err)
	}
}

func TestChooseUnknown(t *testing.T) {
	if _, err := Choose(context.Background(), nil, "xen", t.TempDir()); err == nil || err.Error() != `accelerator "xen": want auto, kvm or tcg` {
		t.Fatalf("Choose(xen) = %v", err)
	}
}

// TestKVMInternalError runs the helper on the domains it is meant for and
// not: a probe domain paused on purpose is not a KVM internal error; where
// KVM fails the probe here, its stopped domain must be recognised as one.
func TestKVMInternalError(t *testing.T) {
	_, conn := connect(t)
	dir := t.TempDir()
	for _, typ := range []string{"qemu", "kvm"} {
		disk := filepath.Join(dir, typ+".img")
		if err := writeDisk(disk); err != nil {
			t.Fatal(err)
		}
		console := filepath.Join(dir, typ+".console")
		doc, err := probeXML(typ, "kiln-accel-kvmerror-"+typ, disk, console).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		dom, err := conn.DomainCreateXML(doc, libvirt.DOMAIN_START_AUTODESTROY)
		if err != nil {
			if typ == "kvm" {
				t.Logf("no kvm domain here (%v): nothing more to check", libvirtMessage(err))
				continue
			}
			t.Fatal(err)
		}
		defer func() { destroy(dom); dom.Free() }()
		// Wait for the verdict, as RunProbe does.
		var state libvirt.DomainState
		var reason int
		testwait.Until(DefaultProbeTimeout, pollInterval, func() bool {
			out, _ := os.ReadFile(console)
			state, reason, err = dom.GetState()
			if err != nil {
				t.Fatal(err)
			}
			return strings.Contains(string(out), OKMarker) || state != libvirt.DOMAIN_RUNNING
		})
		s, r := StateName(state, reason)
		got, err := KVMInternalError(dom)
		t.Logf("type %s: libvirt state %d (%s), reason %d (%s); KVMInternalError = %v, %v", typ, state, s, reason, r, got, err)
		if err != nil {
			t.Fatal(err)
		}
		if state == libvirt.DOMAIN_RUNNING && got {
			t.Fatalf("a running %s domain is reported as stopped by a KVM internal error", typ)
		}
		if typ == "qemu" {
			// Paused by request: paused (user), not a KVM error.
			if err := dom.Suspend(); err != nil {
				t.Fatal(err)
			}
			if got, err := KVMInternalError(dom); got || err != nil {
				t.Fatalf("a domain paused by the user: KVMInternalError = %v, %v", got, err)
			}
		}
		if typ == "kvm" && state == libvirt.DOMAIN_PAUSED && !got {
			t.Fatalf("the kvm probe domain paused (%s) but KVMInternalError does not say so", r)
		}
	}
}

// BenchmarkProbe measures a probe run under TCG: what choosing the
// accelerator adds to an agent's start. ns/op is the whole run (files,
// start, boot, destroy, clean-up); verdict-ms/op is ProbeResult.Duration,
// from the start request to the marker. The first run after libvirtd
// starts also pays for libvirt's probe of QEMU's capabilities (seconds,
// then cached), so one unmeasured run comes first.
func BenchmarkProbe(b *testing.B) {
	_, conn := connect(b)
	dir := b.TempDir()
	run := func() time.Duration {
		res, err := RunProbe(context.Background(), conn, "qemu", dir, 0)
		if err != nil || !res.OK {
			b.Fatalf("probe: %+v, %v", res, err)
		}
		return res.Duration
	}
	run()
	b.ResetTimer()
	var verdict time.Duration
	for i := 0; i < b.N; i++ {
		verdict += run()
	}
	b.ReportMetric(float64(verdict.Milliseconds())/float64(b.N), "verdict-ms/op")
}
