// Package accel decides which accelerator kiln's guests run under: KVM, or
// QEMU's TCG emulator. A /dev/kvm that exists, opens and answers its API
// version proves little: under nested virtualisation without "unrestricted
// guest" support, KVM fails the first boot loader that switches to
// protected mode (QEMU stops the guest with "KVM internal error. Suberror:
// 1"). So kvm is chosen only when a probe guest — one boot sector that walks
// through real, protected and long mode (probe.S) — reaches its marker
// under a libvirt domain of type kvm.
//
// Choose gathers the facts (cheap checks first, then the probe) and decide,
// a pure function of them, makes the choice.
package accel

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"libvirt.org/go/libvirt"
)

// Result is the accelerator chosen and why.
type Result struct {
	// Accel is "kvm" or "tcg".
	Accel string
	// DomainType is libvirt's domain type for it: "kvm" or "qemu".
	DomainType string
	// Reason says in one sentence why.
	Reason string
	// Probe is how long the KVM probe took; zero when none ran.
	Probe time.Duration
}

// ErrKVMUnusable is in the error Choose returns when kvm was asked for and
// KVM cannot run a guest.
var ErrKVMUnusable = errors.New("KVM cannot run a guest on this host")

// ParseWant checks an accelerator request: "auto", "kvm" or "tcg"; "" is
// "auto".
func ParseWant(want string) (string, error) {
	switch want {
	case "", "auto":
		return "auto", nil
	case "kvm", "tcg":
		return want, nil
	}
	return "", fmt.Errorf("accelerator %q: want auto, kvm or tcg", want)
}

// Choose decides the accelerator. want is "auto" (or ""), "kvm" or "tcg".
// tcg needs no check. auto and kvm check, in order, that the host is
// x86_64, that /dev/kvm opens read-write and answers KVM API version 12,
// that libvirt offers kvm domains, and then boot the probe guest under a
// kvm domain (RunProbe, files in dir). auto takes kvm when all pass and
// tcg otherwise, saying why in Reason; kvm returns an error wrapping
// ErrKVMUnusable instead of falling back.
//
// An error is also returned when the probe could not be run to a verdict
// (ctx cancelled, dir not writable, a probe domain that would not go away).
func Choose(ctx context.Context, conn *libvirt.Connect, want, dir string) (Result, error) {
	w, err := ParseWant(want)
	if err != nil {
		return Result{}, err
	}
	f := facts{want: w}
	if w != "tcg" {
		f.arch = runtime.GOARCH
		if f.arch == "amd64" {
			f.device = checkDevice(DevicePath)
		}
		if f.arch == "amd64" && f.device == nil {
			f.caps = checkCaps(conn)
		}
		if f.arch == "amd64" && f.device == nil && f.caps == nil {
			p, err := RunProbe(ctx, conn, "kvm", dir, 0)
			if err != nil {
				return Result{}, fmt.Errorf("accel: %w", err)
			}
			f.probe = &p
		}
	}
	return decide(f)
}

// facts are what Choose found out, in the order it looks; a check is made
// only when those before it passed.
type facts struct {
	want   string       // "auto", "kvm" or "tcg", as ParseWant returns it
	arch   string       // runtime.GOARCH
	device error        // checkDevice: nil when /dev/kvm answered API version 12
	caps   error        // checkCaps: nil when libvirt offers kvm domains
	probe  *ProbeResult // the kvm probe; nil when it did not run
}

// decide is the choice, from the facts alone.
func decide(f facts) (Result, error) {
	tcg := Result{Accel: "tcg", DomainType: "qemu"}
	switch f.want {
	case "tcg":
		tcg.Reason = "requested (-accel tcg)"
		return tcg, nil
	case "auto", "kvm":
	default:
		return Result{}, fmt.Errorf("accelerator %q: want auto, kvm or tcg", f.want)
	}
	var took time.Duration
	if f.probe != nil {
		took = f.probe.Duration
	}
	why := whyNotKVM(f)
	if why == "" {
		r := Result{Accel: "kvm", DomainType: "kvm", Probe: took}
		ran := fmt.Sprintf("a probe guest went through real, protected and long mode under KVM in %s", took.Round(time.Millisecond))
		if f.want == "kvm" {
			r.Reason = "requested (-accel kvm), and " + ran
		} else {
			r.Reason = "KVM runs guests here: " + ran
		}
		return r, nil
	}
	if f.want == "kvm" {
		return Result{}, fmt.Errorf("-accel kvm: %w: %s", ErrKVMUnusable, why)
	}
	tcg.Reason, tcg.Probe = why, took
	if f.probe != nil {
		tcg.Reason = "KVM cannot run a guest here: " + why
	}
	return tcg, nil
}

// whyNotKVM is the first fact that rules KVM out, as a sentence; "" when
// none does.
func whyNotKVM(f facts) string {
	switch {
	case f.arch != "amd64":
		return fmt.Sprintf("kiln's guests are x86_64 and KVM runs only guests of the host's architecture, which is %s", f.arch)
	case f.device != nil:
		return f.device.Error()
	case f.caps != nil:
		return f.caps.Error()
	case f.probe == nil:
		return "the KVM probe guest did not run"
	case !f.probe.OK:
		return f.probe.Reason
	}
	return ""
}
