package accel

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"libvirt.org/go/libvirt"
)

func TestParseWant(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"", "auto", ""},
		{"auto", "auto", ""},
		{"kvm", "kvm", ""},
		{"tcg", "tcg", ""},
		{"KVM", "", `accelerator "KVM": want auto, kvm or tcg`},
		{"qemu", "", `accelerator "qemu": want auto, kvm or tcg`},
		{"hvf", "", `accelerator "hvf": want auto, kvm or tcg`},
	} {
		got, err := ParseWant(tc.in)
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && err.Error() != tc.err) {
			t.Errorf("ParseWant(%q) = %q, %v; want %q, %q", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestDecide(t *testing.T) {
	ok := &ProbeResult{OK: true, Duration: 420 * time.Millisecond, State: "running", StateReason: "booted"}
	paused := &ProbeResult{
		Duration: 2300 * time.Millisecond, State: "paused", StateReason: "unknown",
		Reason: `the probe guest stopped before its marker: libvirt reports it paused (reason: unknown); console: "KILN-PROBE real"`,
	}
	timedOut := &ProbeResult{
		Duration: 15 * time.Second, State: "running", StateReason: "booted",
		Reason: `the probe guest did not reach its marker within 15s (libvirt reports it running, reason: booted); console: (empty)`,
	}
	missing := errors.New("/dev/kvm is missing")
	denied := errors.New("/dev/kvm cannot be opened read-write: permission denied")
	noCaps := errors.New("libvirt offers no kvm domains: unsupported configuration: KVM is not supported")

	for _, tc := range []struct {
		name   string
		f      facts
		accel  string // "" when an error is expected
		reason string // the whole Reason, or the error's text
		probe  time.Duration
	}{
		{"tcg requested", facts{want: "tcg"}, "tcg", "requested (-accel tcg)", 0},
		{"tcg requested ignores other facts", facts{want: "tcg", arch: "amd64", device: missing}, "tcg", "requested (-accel tcg)", 0},
		{"unknown want", facts{want: "xen"}, "", `accelerator "xen": want auto, kvm or tcg`, 0},

		{"auto: all pass", facts{want: "auto", arch: "amd64", probe: ok}, "kvm",
			"KVM runs guests here: a probe guest went through real, protected and long mode under KVM in 420ms", 420 * time.Millisecond},
		{"auto: other architecture", facts{want: "auto", arch: "arm64"}, "tcg",
			"kiln's guests are x86_64 and KVM runs only guests of the host's architecture, which is arm64", 0},
		{"auto: no /dev/kvm", facts{want: "auto", arch: "amd64", device: missing}, "tcg", "/dev/kvm is missing", 0},
		{"auto: /dev/kvm denied", facts{want: "auto", arch: "amd64", device: denied}, "tcg", denied.Error(), 0},
		{"auto: libvirt has no kvm", facts{want: "auto", arch: "amd64", caps: noCaps}, "tcg", noCaps.Error(), 0},
		{"auto: probe paused", facts{want: "auto", arch: "amd64", probe: paused}, "tcg",
			"KVM cannot run a guest here: " + paused.Reason, paused.Duration},
		{"auto: probe timed out", facts{want: "auto", arch: "amd64", probe: timedOut}, "tcg",
			"KVM cannot run a guest here: " + timedOut.Reason, timedOut.Duration},
		{"auto: checks pass, no probe", facts{want: "auto", arch: "amd64"}, "tcg", "the KVM probe guest did not run", 0},

		{"kvm: all pass", facts{want: "kvm", arch: "amd64", probe: ok}, "kvm",
			"requested (-accel kvm), and a probe guest went through real, protected and long mode under KVM in 420ms", 420 * time.Millisecond},
		{"kvm: other architecture", facts{want: "kvm", arch: "arm64"}, "",
			"-accel kvm: KVM cannot run a guest on this host: kiln's guests are x86_64 and KVM runs only guests of the host's architecture, which is arm64", 0},
		{"kvm: no /dev/kvm", facts{want: "kvm", arch: "amd64", device: missing}, "",
			"-accel kvm: KVM cannot run a guest on this host: /dev/kvm is missing", 0},
		{"kvm: libvirt has no kvm", facts{want: "kvm", arch: "amd64", caps: noCaps}, "",
			"-accel kvm: KVM cannot run a guest on this host: " + noCaps.Error(), 0},
		{"kvm: probe paused", facts{want: "kvm", arch: "amd64", probe: paused}, "",
			"-accel kvm: KVM cannot run a guest on this host: " + paused.Reason, 0},
		{"kvm: probe timed out", facts{want: "kvm", arch: "amd64", probe: timedOut}, "",
			"-accel kvm: KVM cannot run a guest on this host: " + timedOut.Reason, 0},
		{"kvm: checks pass, no probe", facts{want: "kvm", arch: "amd64"}, "",
			"-accel kvm: KVM cannot run a guest on this host: the KVM probe guest did not run", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decide(tc.f)
			if tc.accel == "" {
				if err == nil {
					t.Fatalf("decide = %+v, want error %q", got, tc.reason)
				}
				if err.Error() != tc.reason {
					t.Fatalf("error %q\nwant   %q", err, tc.reason)
				}
				if tc.f.want == "kvm" && !errors.Is(err, ErrKVMUnusable) {
					t.Fatalf("error %q does not wrap ErrKVMUnusable", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("decide: %v", err)
			}
			wantType := map[string]string{"kvm": "kvm", "tcg": "qemu"}[tc.accel]
			if got.Accel != tc.accel || got.DomainType != wantType || got.Reason != tc.reason || got.Probe != tc.probe {
				t.Fatalf("decide = %+v\nwant Accel %s, DomainType %s, Probe %s, Reason %q", got, tc.accel, wantType, tc.probe, tc.reason)
			}
		})
	}
}

func TestConsoleTail(t *testing.T) {
	seabios := "\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16.2)\r\nMachine UUID 17623b72\r\nBooting from Hard Disk..KILN-PROBE real\n"
	for _, tc := range []struct{ in, want string }{
		{"", "(empty)"},
		{"\x1bc\x1b[2J\r\n", "(empty)"},
		{seabios, `"SeaBIOS (version 1.16.2)\nMachine UUID 17623b72\nBooting from Hard Disk..KILN-PROBE real"`},
		{"a\nb\nc\nd\ne\n", `"c\nd\ne"`},
		{strings.Repeat("x", 300), `"...` + strings.Repeat("x", 240) + `"`},
		{"bell\x07 and del\x7f", `"bell and del"`},
	} {
		if got := ConsoleTail([]byte(tc.in)); got != tc.want {
			t.Errorf("ConsoleTail(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestStateName(t *testing.T) {
	for _, tc := range []struct {
		state  libvirt.DomainState
		reason int
		s, r   string
	}{
		{libvirt.DOMAIN_PAUSED, int(libvirt.DOMAIN_PAUSED_UNKNOWN), "paused", "unknown"},
		{libvirt.DOMAIN_PAUSED, int(libvirt.DOMAIN_PAUSED_CRASHED), "paused", "crashed"},
		{libvirt.DOMAIN_RUNNING, int(libvirt.DOMAIN_RUNNING_BOOTED), "running", "booted"},
		{libvirt.DOMAIN_SHUTOFF, int(libvirt.DOMAIN_SHUTOFF_CRASHED), "shutoff", "crashed"},
		{libvirt.DOMAIN_CRASHED, int(libvirt.DOMAIN_CRASHED_PANICKED), "crashed", "panicked"},
		{libvirt.DOMAIN_PAUSED, 99, "paused", "reason 99"},
		{libvirt.DomainState(42), 0, "state 42", "reason 0"},
	} {
		if s, r := StateName(tc.state, tc.reason); s != tc.s || r != tc.r {
			t.Errorf("StateName(%d, %d) = %q, %q; want %q, %q", tc.state, tc.reason, s, r, tc.s, tc.r)
		}
	}
}

func TestKVMInternalErrorSignals(t *testing.T) {
	for _, tc := range []struct {
		state  libvirt.DomainState
		reason int
		want   bool
	}{
		{libvirt.DOMAIN_PAUSED, int(libvirt.DOMAIN_PAUSED_UNKNOWN), true},
		{libvirt.DOMAIN_PAUSED, int(libvirt.DOMAIN_PAUSED_USER), false},
		{libvirt.DOMAIN_PAUSED, int(libvirt.DOMAIN_PAUSED_CRASHED), false},
		{libvirt.DOMAIN_RUNNING, int(libvirt.DOMAIN_RUNNING_UNKNOWN), false},
		{libvirt.DOMAIN_CRASHED, int(libvirt.DOMAIN_CRASHED_UNKNOWN), false},
	} {
		if got := MaybeKVMInternalError(tc.state, tc.reason); got != tc.want {
			t.Errorf("MaybeKVMInternalError(%d, %d) = %v", tc.state, tc.reason, got)
		}
	}
	for _, tc := range []struct{ reply, want, err string }{
		{`{"return":{"status":"internal-error","singlestep":false,"running":false},"id":"libvirt-412"}`, "internal-error", ""},
		{`{"return":{"status":"running","singlestep":false,"running":true},"id":"libvirt-9"}`, "running", ""},
		{`{"error":{"class":"GenericError","desc":"nope"}}`, "", "has no status"},
		{`not json`, "", "invalid character"},
	} {
		got, err := RunStatus(tc.reply)
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("RunStatus(%s) = %q, %v; want %q, error containing %q", tc.reply, got, err, tc.want, tc.err)
		}
	}
}

func TestCheckDevice(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "kvm")
	if err := checkDevice(missing); err == nil || err.Error() != missing+" is missing" {
		t.Errorf("checkDevice(missing) = %v", err)
	}
	// /dev/null opens read-write but is no KVM device.
	if err := checkDevice("/dev/null"); err == nil || !strings.Contains(err.Error(), "/dev/null does not answer KVM_GET_API_VERSION") {
		t.Errorf("checkDevice(/dev/null) = %v", err)
	}
	dir := t.TempDir()
	if err := checkDevice(dir); err == nil || !strings.Contains(err.Error(), "cannot be opened read-write") {
		t.Errorf("checkDevice(a directory) = %v", err)
	}
}

func TestPayload(t *testing.T) {
	if len(payload) != 512 || payload[510] != 0x55 || payload[511] != 0xaa {
		t.Fatalf("probe.bin: %d bytes, signature % x: want one boot sector", len(payload), payload[len(payload)-2:])
	}
	src, err := os.ReadFile("probe.S")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"KILN-PROBE real\\n", "KILN-PROBE protected\\n", "KILN-PROBE real-again\\n", "KILN-PROBE long\\n", strings.ReplaceAll(OKMarker, "\n", "\\n")} {
		if !strings.Contains(string(src), `"`+m+`"`) {
			t.Errorf("probe.S lacks the marker %q", m)
		}
		if !strings.Contains(string(payload), strings.ReplaceAll(m, "\\n", "\n")) {
			t.Errorf("probe.bin lacks the marker %q: regenerate it (scripts/gen-accel-probe.sh)", m)
		}
	}
}

func TestProbeXML(t *testing.T) {
	x := probeXML("kvm", "kiln-accel-probe-1", "/d/p.img", "/d/p.console")
	if x.Type != "kvm" || x.Memory.Value != 16<<10 || x.Memory.Unit != "KiB" || x.VCPU.Value != 1 {
		t.Fatalf("domain %+v", x)
	}
	dev := x.Devices
	if len(dev.Interfaces) != 0 || len(dev.Graphics) != 0 || len(dev.Videos) != 0 {
		t.Fatalf("probe domain has NICs %v, graphics %v or video %v", dev.Interfaces, dev.Graphics, dev.Videos)
	}
	if len(dev.Disks) != 1 || dev.Disks[0].Source.File.File != "/d/p.img" || dev.Disks[0].Driver.Type != "raw" {
		t.Fatalf("disks %+v", dev.Disks)
	}
	if len(dev.Serials) != 1 || dev.Serials[0].Source.File.Path != "/d/p.console" {
		t.Fatalf("serials %+v", dev.Serials)
	}
	if _, err := x.Marshal(); err != nil {
		t.Fatal(err)
	}
}
