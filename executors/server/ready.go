package server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"libvirt.org/go/libvirt"

	"github.com/kiln-dev/kiln/executors/accel"
)

// A server is done when its guest is up, never because a call returned.
// Ready says how the driver sees that the guest is up; Create and Update
// wait for it, watching the domain the whole time, so that a guest that
// crashes, pauses on an error or shuts off fails at once with what libvirt
// and the console say, rather than at the timeout.

// Kinds of readiness check.
const (
	CheckTCP     = "tcp_port"
	CheckHTTP    = "http_port"
	CheckConsole = "console"
	CheckSignal  = "signal"
	// CheckLease (no ready block, a DHCP network): the guest took its
	// DHCP lease.
	CheckLease = "dhcp_lease"
	// CheckRunning (no ready block, no DHCP network): the domain ran for
	// Settle without crashing.
	CheckRunning = "running"
)

// Defaults of a readiness check.
const (
	DefaultReadyTimeout = 5 * time.Minute
	DefaultSettle       = 5 * time.Second
)

// Ready is one server's readiness check.
type Ready struct {
	Kind string
	// Address is the guest's IPv4 address (tcp, http).
	Address string
	Port    int
	Path    string // http; "/" when empty
	// Console is the regexp a console line must match (console).
	Console string
	// LeaseFile is the dnsmasq lease file of the network and MAC the
	// guest's NIC on it (lease).
	LeaseFile, MAC string
	// Signalled reports the time of the guest's last call of its ready
	// URL, zero when it never called (signal).
	Signalled func() time.Time
	// Timeout bounds the wait; DefaultReadyTimeout when zero.
	Timeout time.Duration
	// Settle is how long the domain must run without crashing (running);
	// DefaultSettle when zero.
	Settle time.Duration
}

// String names the check the way errors and events show it.
func (r Ready) String() string {
	switch r.Kind {
	case CheckTCP:
		return fmt.Sprintf("tcp_port %d (TCP connect to %s)", r.Port, net.JoinHostPort(r.Address, strconv.Itoa(r.Port)))
	case CheckHTTP:
		return fmt.Sprintf("http_port %d (GET %s)", r.Port, r.url())
	case CheckConsole:
		return fmt.Sprintf("console %q", r.Console)
	case CheckSignal:
		return "signal (the guest calls its ready URL)"
	case CheckLease:
		return fmt.Sprintf("DHCP lease of %s", r.MAC)
	case CheckRunning:
		return fmt.Sprintf("domain running for %s", r.settle())
	}
	return r.Kind
}

func (r Ready) url() string {
	p := r.Path
	if p == "" {
		p = "/"
	}
	return "http://" + net.JoinHostPort(r.Address, strconv.Itoa(r.Port)) + p
}

func (r Ready) timeout() time.Duration {
	if r.Timeout > 0 {
		return r.Timeout
	}
	return DefaultReadyTimeout
}

func (r Ready) settle() time.Duration {
	if r.Settle > 0 {
		return r.Settle
	}
	return DefaultSettle
}

// Validate reports a check the driver cannot run.
func (r Ready) Validate() error {
	switch r.Kind {
	case CheckTCP, CheckHTTP:
		if net.ParseIP(r.Address) == nil {
			return fmt.Errorf("ready %s: the server has no address to check (it needs a network)", r.Kind)
		}
		if r.Port < 1 || r.Port > 65535 {
			return fmt.Errorf("ready %s: port %d is not in 1..65535", r.Kind, r.Port)
		}
	case CheckConsole:
		if _, err := regexp.Compile(r.Console); err != nil || r.Console == "" {
			return fmt.Errorf("ready console: %q is not a regular expression", r.Console)
		}
	case CheckSignal:
		if r.Signalled == nil {
			return errors.New("ready signal: the server has no ready URL (it needs a network)")
		}
	case CheckLease:
		if r.LeaseFile == "" || r.MAC == "" {
			return errors.New("ready: no lease file or MAC for the DHCP lease check")
		}
	case CheckRunning, "":
	default:
		return fmt.Errorf("ready: unknown check %q", r.Kind)
	}
	return nil
}

// ErrNotReady is wrapped by every error of a guest that did not become
// ready: it crashed, stopped, paused or timed out.
var ErrNotReady = errors.New("the guest did not become ready")

// ErrKVMInternal is wrapped (with ErrNotReady) when the guest died of a
// KVM internal error: KVM cannot run this guest on the host.
var ErrKVMInternal = errors.New("KVM internal error")

// boot is what was there before the domain (re)started: where the console
// log ended, the lease the MAC had, and when.
type boot struct {
	started    time.Time
	consoleOff int64
	lease      string
	// adopted: the domain was running already (a repeated create); what
	// the guest did before this call counts.
	adopted bool
}

func (d *Driver) beforeStart(stack, address string, r Ready) boot {
	b := boot{started: time.Now()}
	if fi, err := os.Stat(d.ConsoleLog(stack, address)); err == nil {
		b.consoleOff = fi.Size()
	}
	if r.Kind == CheckLease {
		b.lease = leaseLine(r.LeaseFile, r.MAC)
	}
	return b
}

// leaseLine is the line of dnsmasq's lease file for mac ("" when none):
// "EXPIRY MAC IP HOSTNAME CLIENT-ID".
func leaseLine(file, mac string) string {
	data, err := os.ReadFile(file)
	if err != nil {
		return ""
	}
	mac = strings.ToLower(mac)
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && strings.ToLower(f[1]) == mac {
			return l
		}
	}
	return ""
}

// Progress receives one line per step of a wait ("booting", "ready after").
type Progress func(msg string)

// poll is the period of the readiness loop.
const poll = 250 * time.Millisecond

// waitReady waits until the guest of dom passes r, or fails. It returns
// how long the guest took from b.started.
func (d *Driver) waitReady(ctx context.Context, dom *libvirt.Domain, stack, address string, r Ready, b boot) (time.Duration, error) {
	name := Name(stack, address)
	deadline := time.Now().Add(r.timeout())
	var re *regexp.Regexp
	if r.Kind == CheckConsole {
		re = regexp.MustCompile(r.Console) // Validate compiled it
	}
	fail := func(why string, cause error) (time.Duration, error) {
		state := d.stateString(dom)
		tail := d.consoleTail(stack, address, b.consoleOff, 15)
		msg := fmt.Sprintf("server %s: not ready: %s; check: %s; domain %s", name, why, r, state)
		if tail != "" {
			msg += "; last lines of the console:\n" + tail
		} else {
			msg += "; the console is empty"
		}
		if cause != nil {
			return time.Since(b.started), fmt.Errorf("%s: %w: %w", msg, ErrNotReady, cause)
		}
		return time.Since(b.started), fmt.Errorf("%s: %w", msg, ErrNotReady)
	}
	var runningSince time.Time
	if b.adopted {
		runningSince = b.started.Add(-r.settle())
	}
	last := ""
	for {
		if err := ctx.Err(); err != nil {
			return time.Since(b.started), err
		}
		// The domain first: a dead guest fails now, not at the timeout.
		state, reason, err := dom.GetState()
		if err != nil {
			return fail("cannot read the domain's state", err)
		}
		switch libvirt.DomainState(state) {
		case libvirt.DOMAIN_RUNNING, libvirt.DOMAIN_BLOCKED:
			if runningSince.IsZero() {
				runningSince = time.Now()
			}
		case libvirt.DOMAIN_PAUSED:
			if libvirt.DomainPausedReason(reason) == libvirt.DOMAIN_PAUSED_USER {
				return fail("the domain was paused by a user", nil)
			}
			if d.kvmInternalError(name) || kvmPaused(dom, state, reason) {
				return fail("the guest stopped on a KVM internal error", ErrKVMInternal)
			}
			return fail("the guest paused on an error", nil)
		case libvirt.DOMAIN_SHUTOFF, libvirt.DOMAIN_SHUTDOWN, libvirt.DOMAIN_CRASHED:
			if d.kvmInternalError(name) {
				return fail("the guest stopped on a KVM internal error", ErrKVMInternal)
			}
			return fail("the guest stopped before it was ready", nil)
		default:
			runningSince = time.Time{}
		}
		console := d.consoleSince(stack, address, b.consoleOff)
		if i := panicLine(console); i != "" {
			return fail("the guest's kernel panicked ("+i+")", nil)
		}
		ok, why := false, ""
		switch r.Kind {
		case CheckTCP:
			ok, why = tcpReady(ctx, r)
		case CheckHTTP:
			ok, why = httpReady(ctx, r)
		case CheckConsole:
			if b.adopted {
				console = d.consoleSince(stack, address, 0)
			}
			ok = re.Match(console)
			why = "no console line matched yet"
		case CheckSignal:
			t := r.Signalled()
			ok = !t.IsZero() && (b.adopted || !t.Before(b.started.Add(-time.Second)))
			why = "the guest has not called its ready URL yet"
		case CheckLease:
			l := leaseLine(r.LeaseFile, r.MAC)
			ok = l != "" && (b.adopted || l != b.lease)
			why = "the guest has not taken a DHCP lease yet"
		default: // running
			ok = !runningSince.IsZero() && time.Since(runningSince) >= r.settle()
			why = "the domain has not run long enough yet"
		}
		if ok {
			return time.Since(b.started), nil
		}
		last = why
		if time.Now().After(deadline) {
			return fail(fmt.Sprintf("not ready within %s (%s)", r.timeout(), last), nil)
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return time.Since(b.started), ctx.Err()
		case <-t.C:
		}
	}
}

func tcpReady(ctx context.Context, r Ready) (bool, string) {
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var dialer net.Dialer
	c, err := dialer.DialContext(dctx, "tcp", net.JoinHostPort(r.Address, strconv.Itoa(r.Port)))
	if err != nil {
		return false, "last attempt: " + shortNetErr(err)
	}
	c.Close()
	return true, ""
}

// readyClient checks HTTP readiness: no proxy from the environment, no
// redirect followed (a 3xx counts as ready), no keep-alive.
var readyClient = &http.Client{
	Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

func httpReady(ctx context.Context, r Ready) (bool, string) {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, r.url(), nil)
	if err != nil {
		return false, err.Error()
	}
	resp, err := readyClient.Do(req)
	if err != nil {
		return false, "last attempt: " + shortNetErr(err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		return true, ""
	}
	return false, "last answer: " + resp.Status
}

func shortNetErr(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err.Error()
	}
	return err.Error()
}

// maxConsoleScan bounds what one poll reads of the console log.
const maxConsoleScan = 4 << 20

// consoleSince is the console log from byte off on (the last
// maxConsoleScan bytes of it at most).
func (d *Driver) consoleSince(stack, address string, off int64) []byte {
	f, err := os.Open(d.ConsoleLog(stack, address))
	if err != nil {
		return nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() <= off {
		return nil
	}
	if fi.Size()-off > maxConsoleScan {
		off = fi.Size() - maxConsoleScan
	}
	data, _ := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	return data
}

// consoleTail is the last n lines of the console from off on, cleaned of
// terminal escapes and control characters.
func (d *Driver) consoleTail(stack, address string, off int64, n int) string {
	return Tail(d.consoleSince(stack, address, off), n)
}

var ansi = regexp.MustCompile(`\x1b(\[[0-9;?]*[ -/]*[@-~]|[()][0-9A-Za-z]|[=>c78])`)

// Tail returns the last n non-empty lines of a console log, cleaned of
// terminal escape sequences and control characters, each cut to 200
// bytes and indented by two spaces.
func Tail(log []byte, n int) string {
	log = ansi.ReplaceAll(log, nil)
	var lines []string
	s := bufio.NewScanner(bytes.NewReader(log))
	s.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for s.Scan() {
		l := strings.Map(func(r rune) rune {
			if r == '\t' {
				return ' '
			}
			if r < 0x20 || r == 0x7f {
				return -1
			}
			return r
		}, s.Text())
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if len(l) > 200 {
			l = l[:200] + "…"
		}
		lines = append(lines, l)
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return strings.Join(lines, "\n")
}

var panicRE = regexp.MustCompile(`Kernel panic - not syncing:[^\r\n]*`)

// panicLine is the kernel's panic line in a console log, or "".
func panicLine(console []byte) string {
	if m := panicRE.Find(console); m != nil {
		return strings.TrimSpace(string(m))
	}
	return ""
}

// stateString is "shutoff (reason: crashed)" for errors.
func (d *Driver) stateString(dom *libvirt.Domain) string {
	state, reason, err := dom.GetState()
	if err != nil {
		return "state unknown (" + err.Error() + ")"
	}
	return StateString(libvirt.DomainState(state), reason)
}

// StateString names a libvirt domain state and its reason.
func StateString(state libvirt.DomainState, reason int) string {
	name := stateNames[state]
	if name == "" {
		name = fmt.Sprintf("state %d", state)
	}
	why := reasonName(state, reason)
	return fmt.Sprintf("%s (reason: %s)", name, why)
}

func reasonName(state libvirt.DomainState, reason int) string {
	var names []string
	switch state {
	case libvirt.DOMAIN_RUNNING:
		names = []string{"unknown", "booted", "migrated", "restored", "from snapshot", "unpaused", "migration canceled", "save canceled", "wakeup", "crashed", "postcopy", "postcopy failed"}
	case libvirt.DOMAIN_BLOCKED:
		names = []string{"unknown"}
	case libvirt.DOMAIN_PAUSED:
		names = []string{"unknown", "user", "migration", "save", "dump", "ioerror", "watchdog", "from snapshot", "shutting down", "snapshot", "crashed", "starting up", "postcopy", "postcopy failed", "api error"}
	case libvirt.DOMAIN_SHUTDOWN:
		names = []string{"unknown", "user"}
	case libvirt.DOMAIN_SHUTOFF:
		names = []string{"unknown", "shutdown", "destroyed", "crashed", "migrated", "saved", "failed", "from snapshot", "daemon"}
	case libvirt.DOMAIN_CRASHED:
		names = []string{"unknown", "panicked"}
	case libvirt.DOMAIN_PMSUSPENDED:
		names = []string{"unknown"}
	}
	if reason >= 0 && reason < len(names) {
		return names[reason]
	}
	return strconv.Itoa(reason)
}

// kvmPaused asks QEMU whether a domain paused for no reason libvirt
// knows stopped on an internal error (libvirt reports paused/unknown).
func kvmPaused(dom *libvirt.Domain, state libvirt.DomainState, reason int) bool {
	if !accel.MaybeKVMInternalError(state, reason) {
		return false
	}
	ok, err := accel.KVMInternalError(dom)
	return err == nil && ok
}

// QEMULogDir is where libvirtd's QEMU driver writes each domain's log.
var QEMULogDir = "/var/log/libvirt/qemu"

// kvmInternalError reports whether the domain's QEMU log says it stopped
// on a KVM internal error (what nested KVM that cannot run a guest does).
func (d *Driver) kvmInternalError(name string) bool {
	f, err := os.Open(filepath.Join(QEMULogDir, name+".log"))
	if err != nil {
		return false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	off := max(fi.Size()-256<<10, 0)
	data, _ := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	// Only this boot's part of the log: after the last start line.
	if i := bytes.LastIndex(data, []byte("starting up")); i >= 0 {
		data = data[i:]
	}
	return bytes.Contains(data, []byte("KVM internal error"))
}
