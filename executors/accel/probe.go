package accel

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"
)

// payload is the probe's boot sector, assembled from probe.S by
// scripts/gen-accel-probe.sh.
//
//go:embed probe.bin
var payload []byte

// Payload returns the probe's boot sector (a raw disk image), for a probe
// run outside libvirt (plain qemu in test harnesses).
func Payload() []byte { return append([]byte(nil), payload...) }

// OKMarker is the line the probe guest writes to its serial console once it
// has been through real, protected and long mode.
const OKMarker = "KILN-PROBE-OK\n"

// DefaultProbeTimeout bounds a probe run when the caller gives no timeout.
// A probe that works takes well under a second, even under TCG.
const DefaultProbeTimeout = 15 * time.Second

// probeMemory is the probe guest's memory: SeaBIOS and one sector.
const probeMemory = 16 << 20

// pollInterval is how often a running probe's console and state are looked at.
const pollInterval = 25 * time.Millisecond

// ProbeResult is the verdict of one probe run.
type ProbeResult struct {
	// OK is true when the guest wrote OKMarker.
	OK bool
	// Reason says, in one sentence, why the probe failed; empty when OK.
	Reason string
	// State and StateReason are libvirt's names for the domain's state at
	// the verdict ("running", "booted"; "paused", "unknown"); empty when
	// libvirt did not start the domain or no longer had it.
	State, StateReason string
	// Console is what the guest wrote to its serial port.
	Console string
	// Duration runs from the request to start the domain to the verdict;
	// destroying the domain afterwards is not in it.
	Duration time.Duration
}

// probeSlot lets one probe of this process run at a time: they share a
// domain name.
var probeSlot = make(chan struct{}, 1)

// ProbeName is the name of this process's probe domain, and the stem of its
// files.
func ProbeName() string {
	return "kiln-accel-probe-" + strconv.Itoa(os.Getpid())
}

const probePrefix = "kiln-accel-probe-"

// RunProbe boots the probe payload in a transient libvirt domain of the given
// type ("kvm" or "qemu") and waits, at most timeout (DefaultProbeTimeout when
// zero), for OKMarker on its serial console. The domain has 16 MiB, one vCPU,
// the payload as a raw IDE disk, no network interface and no graphics; its
// disk and console files are kept in dir while it runs.
//
// A guest that does not reach the marker is a verdict, not an error: the
// result says why (the domain paused, shut off or crashed, with libvirt's
// state and reason; the wait timed out; libvirt refused to start it) and
// quotes the end of the console. The error is for a probe that could not be
// run to a verdict: a cancelled ctx, files that cannot be written, a domain
// that cannot be destroyed. The domain is destroyed and the files removed in
// every case; the domain is also started with autodestroy, so libvirt
// destroys it should this process die first. A leftover domain of the same
// name is destroyed before the run.
func RunProbe(ctx context.Context, conn *libvirt.Connect, domainType, dir string, timeout time.Duration) (res ProbeResult, err error) {
	if domainType != "kvm" && domainType != "qemu" {
		return res, fmt.Errorf("accel probe: domain type %q: want kvm or qemu", domainType)
	}
	if dir == "" {
		return res, errors.New("accel probe: no directory for the probe's files")
	}
	if timeout <= 0 {
		timeout = DefaultProbeTimeout
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("accel probe: %w", err)
	}
	select {
	case probeSlot <- struct{}{}:
	case <-ctx.Done():
		return res, fmt.Errorf("accel probe: %w", ctx.Err())
	}
	defer func() { <-probeSlot }()

	name := ProbeName()
	disk := filepath.Join(dir, name+".img")
	console := filepath.Join(dir, name+".console")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, fmt.Errorf("accel probe: %w", err)
	}
	if err := cleanLeftovers(conn, dir, name); err != nil {
		return res, fmt.Errorf("accel probe: %w", err)
	}
	defer func() {
		for _, f := range []string{disk, console} {
			if rerr := os.Remove(f); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				err = errors.Join(err, fmt.Errorf("accel probe: %w", rerr))
			}
		}
	}()
	if err := writeDisk(disk); err != nil {
		return res, fmt.Errorf("accel probe: %w", err)
	}
	doc, err := probeXML(domainType, name, disk, console).Marshal()
	if err != nil {
		return res, fmt.Errorf("accel probe: domain XML: %w", err)
	}

	start := time.Now()
	dom, err := conn.DomainCreateXML(doc, libvirt.DOMAIN_START_AUTODESTROY)
	if err != nil {
		res.Duration = time.Since(start)
		res.Reason = "libvirt could not start the probe guest: " + libvirtMessage(err)
		return res, nil
	}
	defer func() {
		if derr := destroy(dom); derr != nil {
			err = errors.Join(err, fmt.Errorf("accel probe: destroy %s: %w", name, derr))
		}
		dom.Free()
	}()
	res, err = wait(ctx, dom, console, timeout)
	res.Duration = time.Since(start)
	return res, err
}

// wait polls the console for the marker and the domain for a state that
// ends the run.
func wait(ctx context.Context, dom *libvirt.Domain, console string, timeout time.Duration) (ProbeResult, error) {
	var res ProbeResult
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		out, _ := os.ReadFile(console)
		if bytes.Contains(out, []byte(OKMarker)) {
			res.OK, res.Console = true, string(out)
			res.State, res.StateReason = currentState(dom)
			return res, nil
		}
		state, reason, err := dom.GetState()
		switch {
		case isCode(err, libvirt.ERR_NO_DOMAIN):
			// A transient domain is gone once it shuts off: the guest
			// reset or powered off (on_reboot and on_poweroff are
			// destroy), or its QEMU exited.
			return verdict(console, "the probe guest shut off before its marker (libvirt no longer has the domain: it reset, powered off or its QEMU exited)"), nil
		case err != nil:
			return res, fmt.Errorf("accel probe: domain state: %w", err)
		case state != libvirt.DOMAIN_RUNNING && state != libvirt.DOMAIN_BLOCKED && state != libvirt.DOMAIN_NOSTATE:
			s, r := StateName(state, reason)
			why := fmt.Sprintf("the probe guest stopped before its marker: libvirt reports it %s (reason: %s)", s, r)
			if kvmErr, _ := KVMInternalError(dom); kvmErr {
				why = fmt.Sprintf("the probe guest stopped before its marker: QEMU stopped it on a KVM internal error (QEMU run state internal-error; libvirt reports it %s, reason: %s)", s, r)
			}
			v := verdict(console, why)
			v.State, v.StateReason = s, r
			return v, nil
		}
		select {
		case <-ctx.Done():
			return res, fmt.Errorf("accel probe: %w", ctx.Err())
		case <-deadline.C:
			s, r := StateName(state, reason)
			v := verdict(console, fmt.Sprintf("the probe guest did not reach its marker within %s (libvirt reports it %s, reason: %s)", timeout, s, r))
			v.State, v.StateReason = s, r
			return v, nil
		case <-tick.C:
		}
	}
}

// verdict is a failed run: why, and what the console says. The console is
// read once more: the marker may have come just before the guest stopped.
func verdict(console, why string) ProbeResult {
	out, _ := os.ReadFile(console)
	if bytes.Contains(out, []byte(OKMarker)) {
		return ProbeResult{OK: true, Console: string(out)}
	}
	return ProbeResult{Reason: why + "; console: " + ConsoleTail(out), Console: string(out)}
}

func currentState(dom *libvirt.Domain) (string, string) {
	state, reason, err := dom.GetState()
	if err != nil {
		return "", ""
	}
	return StateName(state, reason)
}

func writeDisk(path string) error {
	if err := os.WriteFile(path, payload, 0o644); err != nil {
		return err
	}
	// Whatever the umask: the hypervisor's user must read the disk.
	return os.Chmod(path, 0o644)
}

// probeXML is the transient probe domain: the same machine as kiln's
// servers (x86_64, pc) with nothing but the probe disk and a serial port.
// No NIC: no iPXE option ROM to wait for. SeaBIOS writes to the serial
// console too (useserial), so a console that never reaches the payload says
// why ("No bootable device", ...).
func probeXML(domainType, name, disk, console string) *libvirtxml.Domain {
	port := uint(0)
	return &libvirtxml.Domain{
		Type:          domainType,
		Name:          name,
		Description:   "kiln accelerator probe: boots one sector to tell whether this domain type can run a guest",
		Memory:        &libvirtxml.DomainMemory{Value: probeMemory >> 10, Unit: "KiB"},
		CurrentMemory: &libvirtxml.DomainCurrentMemory{Value: probeMemory >> 10, Unit: "KiB"},
		VCPU:          &libvirtxml.DomainVCPU{Value: 1},
		OS: &libvirtxml.DomainOS{
			Type:        &libvirtxml.DomainOSType{Arch: "x86_64", Machine: "pc", Type: "hvm"},
			BootDevices: []libvirtxml.DomainBootDevice{{Dev: "hd"}},
			BIOS:        &libvirtxml.DomainBIOS{UseSerial: "yes"},
		},
		OnPoweroff: "destroy",
		OnReboot:   "destroy",
		OnCrash:    "destroy",
		Devices: &libvirtxml.DomainDeviceList{
			Disks: []libvirtxml.DomainDisk{{
				Device: "disk",
				Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "raw"},
				Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: disk}},
				Target: &libvirtxml.DomainDiskTarget{Dev: "hda", Bus: "ide"},
			}},
			Serials: []libvirtxml.DomainSerial{{
				Source: &libvirtxml.DomainChardevSource{File: &libvirtxml.DomainChardevSourceFile{Path: console, Append: "off"}},
				Target: &libvirtxml.DomainSerialTarget{Port: &port},
			}},
			Controllers: []libvirtxml.DomainController{{Type: "usb", Model: "none"}},
			MemBalloon:  &libvirtxml.DomainMemBalloon{Model: "none"},
		},
	}
}

// cleanLeftovers destroys a domain of the probe's name left by an earlier
// run (a process of the same pid that died before libvirt autodestroyed it)
// and removes probe files in dir that belong to no domain libvirt has.
func cleanLeftovers(conn *libvirt.Connect, dir, name string) error {
	dom, err := conn.LookupDomainByName(name)
	switch {
	case isCode(err, libvirt.ERR_NO_DOMAIN):
	case err != nil:
		return fmt.Errorf("look up leftover %s: %w", name, err)
	default:
		derr := destroy(dom)
		if persistent, _ := dom.IsPersistent(); persistent {
			if uerr := dom.Undefine(); uerr != nil && !isCode(uerr, libvirt.ERR_NO_DOMAIN) {
				derr = errors.Join(derr, uerr)
			}
		}
		dom.Free()
		if derr != nil {
			return fmt.Errorf("remove leftover domain %s: %w", name, derr)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, probePrefix+"*"))
	for _, f := range files {
		base := filepath.Base(f)
		stem := strings.TrimSuffix(strings.TrimSuffix(base, ".img"), ".console")
		if stem == base {
			continue // not a probe file
		}
		if stem != name {
			if other, err := conn.LookupDomainByName(stem); err == nil {
				other.Free()
				continue // another process's probe, still running
			} else if !isCode(err, libvirt.ERR_NO_DOMAIN) {
				continue
			}
		}
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove leftover %s: %w", f, err)
		}
	}
	return nil
}

// destroy stops dom at once; a domain already gone is not an error.
func destroy(dom *libvirt.Domain) error {
	err := dom.Destroy()
	if err == nil || isCode(err, libvirt.ERR_NO_DOMAIN) || isCode(err, libvirt.ERR_OPERATION_INVALID) {
		return nil
	}
	return err
}

func isCode(err error, code libvirt.ErrorNumber) bool {
	var lerr libvirt.Error
	return errors.As(err, &lerr) && lerr.Code == code
}

// libvirtMessage is libvirt's own sentence for err, without the codes.
func libvirtMessage(err error) string {
	var lerr libvirt.Error
	if errors.As(err, &lerr) && lerr.Message != "" {
		return lerr.Message
	}
	return err.Error()
}

// ConsoleTail quotes the end of a serial console for an error message: the
// last three lines at most 240 bytes, terminal escape sequences and other
// control characters (SeaBIOS's serial console clears the screen) taken
// out.
func ConsoleTail(out []byte) string {
	clean := stripControl(out)
	clean = strings.TrimRight(clean, "\n")
	if clean == "" {
		return "(empty)"
	}
	lines := strings.Split(clean, "\n")
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	tail := strings.Join(lines, "\n")
	if len(tail) > 240 {
		tail = "..." + tail[len(tail)-240:]
	}
	return strconv.Quote(tail)
}

// stripControl drops ANSI escape sequences (ESC [ ... final byte, and
// two-byte ESC x) and control characters other than newline and tab.
func stripControl(b []byte) string {
	var sb strings.Builder
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c == 0x1b:
			if i+1 < len(b) && b[i+1] == '[' {
				i += 2
				for i < len(b) && (b[i] < 0x40 || b[i] > 0x7e) {
					i++
				}
			} else {
				i++
			}
		case c == '\n' || c == '\t' || (c >= 0x20 && c != 0x7f):
			sb.WriteByte(c)
		}
	}
	return sb.String()
}
