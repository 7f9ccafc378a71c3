package network

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// dnsmasq is one network's dnsmasq and its files:
//
//	dnsmasq-<hash>.conf  the whole configuration; its name (hash of its
//	                     content) is on dnsmasq's command line, so a running
//	                     dnsmasq tells which configuration it runs
//	dnsmasq.hosts        MAC,IP[,hostname] per line (--dhcp-hostsfile),
//	                     re-read on SIGHUP
//	dnsmasq.leases       the lease file
//	dnsmasq.pid          the pid file
//	dnsmasq.log          dnsmasq's log
//
// The configuration is a file rather than flags so that nothing from
// /etc/dnsmasq.conf is read (a --conf-file replaces the default one).
type dnsmasq struct {
	bin    string
	dir    string
	owner  string
	bridge string
	spec   Spec
}

func (d *Driver) dnsmasq(spec Spec) *dnsmasq {
	return &dnsmasq{
		bin:    d.Dnsmasq,
		dir:    d.Dir(spec),
		owner:  spec.owner(),
		bridge: BridgeName(spec.Stack, spec.Address),
		spec:   spec,
	}
}

func (m *dnsmasq) path(name string) string { return filepath.Join(m.dir, name) }

// conf renders the configuration.
func (m *dnsmasq) conf() (string, error) {
	p, err := m.spec.prefix()
	if err != nil {
		return "", err
	}
	mask := net.IP(net.CIDRMask(p.Bits(), 32)).String()
	var b strings.Builder
	fmt.Fprintf(&b, "# %s: written by kiln, do not edit\n", m.owner)
	fmt.Fprintf(&b, "interface=%s\nbind-interfaces\nexcept-interface=lo\n", m.bridge)
	fmt.Fprintf(&b, "pid-file=%s\n", m.path("dnsmasq.pid"))
	fmt.Fprintf(&b, "dhcp-leasefile=%s\n", m.path("dnsmasq.leases"))
	fmt.Fprintf(&b, "dhcp-hostsfile=%s\n", m.path("dnsmasq.hosts"))
	fmt.Fprintf(&b, "log-facility=%s\n", m.path("dnsmasq.log"))
	// Only the hosts listed get an address: static mode.
	fmt.Fprintf(&b, "dhcp-range=%s,static,%s,1h\n", p.Addr(), mask)
	b.WriteString("dhcp-authoritative\n")
	// The data directory is private to root; dnsmasq must re-read the
	// hosts file from it on SIGHUP, so it keeps root rather than dropping
	// to a user who could not.
	b.WriteString("user=root\n")
	if len(m.spec.DNS) == 0 {
		b.WriteString("port=0\n")
	} else {
		b.WriteString("no-resolv\nno-hosts\nstrict-order\n")
		for _, s := range m.spec.DNS {
			fmt.Fprintf(&b, "server=%s\n", s)
		}
	}
	return b.String(), nil
}

func (m *dnsmasq) confPath() (string, error) {
	c, err := m.conf()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(c))
	return m.path("dnsmasq-" + hex.EncodeToString(sum[:])[:12] + ".conf"), nil
}

func sortedHosts(hosts []Host) []Host {
	out := make([]Host, 0, len(hosts))
	for _, h := range hosts {
		mac, err := net.ParseMAC(h.MAC)
		if err == nil {
			h.MAC = mac.String()
		}
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b Host) int {
		x, _ := netip.ParseAddr(a.IP)
		y, _ := netip.ParseAddr(b.IP)
		return x.Compare(y)
	})
	if len(out) == 0 {
		return nil
	}
	return out
}

func hostsFile(hosts []Host) []byte {
	var b bytes.Buffer
	for _, h := range sortedHosts(hosts) {
		if h.Hostname != "" {
			fmt.Fprintf(&b, "%s,%s,%s\n", h.MAC, h.IP, h.Hostname)
		} else {
			fmt.Fprintf(&b, "%s,%s\n", h.MAC, h.IP)
		}
	}
	return b.Bytes()
}

// readHosts parses the hosts file; none when it does not exist.
func (m *dnsmasq) readHosts() ([]Host, error) {
	b, err := os.ReadFile(m.path("dnsmasq.hosts"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("network %s: %w", m.spec.Address, err)
	}
	var hosts []Host
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(strings.TrimSpace(line), ",")
		if len(f) < 2 {
			continue
		}
		h := Host{MAC: f[0], IP: f[1]}
		if len(f) > 2 {
			h.Hostname = f[2]
		}
		hosts = append(hosts, h)
	}
	return sortedHosts(hosts), nil
}

// writeFile replaces a file atomically; it reports whether the content changed.
func writeFile(path string, data []byte) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return false, err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return false, err
	}
	return true, nil
}

// ensure writes the files and makes dnsmasq run the wanted configuration:
// started when none runs, restarted when it runs another configuration,
// sent SIGHUP when only the hosts changed.
func (m *dnsmasq) ensure(ctx context.Context) error {
	if err := os.MkdirAll(m.dir, 0o755); err != nil {
		return fmt.Errorf("network %s: %w", m.spec.Address, err)
	}
	conf, err := m.conf()
	if err != nil {
		return err
	}
	confPath, _ := m.confPath()
	if _, err := writeFile(confPath, []byte(conf)); err != nil {
		return fmt.Errorf("network %s: dnsmasq config: %w", m.spec.Address, err)
	}
	hostsChanged, err := writeFile(m.path("dnsmasq.hosts"), hostsFile(m.spec.Hosts))
	if err != nil {
		return fmt.Errorf("network %s: dnsmasq hosts: %w", m.spec.Address, err)
	}
	pid, running, err := m.running()
	if err != nil {
		return err
	}
	switch {
	case pid != 0 && running == confPath:
		if hostsChanged {
			if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
				return fmt.Errorf("network %s: reload dnsmasq %d: %w", m.spec.Address, pid, err)
			}
		}
	default:
		if err := m.stop(ctx); err != nil {
			return err
		}
		if err := m.start(ctx, confPath); err != nil {
			return err
		}
	}
	// Configurations no dnsmasq runs any more.
	old, _ := filepath.Glob(m.path("dnsmasq-*.conf"))
	for _, f := range old {
		if f != confPath {
			os.Remove(f)
		}
	}
	return nil
}

func (m *dnsmasq) start(ctx context.Context, confPath string) error {
	bin := m.bin
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("dnsmasq"); err != nil {
			return fmt.Errorf("network %s: dnsmasq is not installed (apt-get install dnsmasq-base): %w", m.spec.Address, err)
		}
	}
	// Output to a file, not a pipe: the daemon dnsmasq forks must not keep
	// our Wait hanging on an open pipe.
	out, err := os.Create(m.path("dnsmasq.start"))
	if err != nil {
		return fmt.Errorf("network %s: %w", m.spec.Address, err)
	}
	defer out.Close()
	defer os.Remove(out.Name())
	os.Remove(m.path("dnsmasq.pid"))
	cmd := exec.CommandContext(ctx, bin, "--conf-file="+confPath)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// dnsmasq forks the daemon and exits once it has started (or reports
	// why it could not).
	if err := cmd.Run(); err != nil {
		msg, _ := os.ReadFile(out.Name())
		return fmt.Errorf("network %s: start dnsmasq: %w: %s", m.spec.Address, err, strings.TrimSpace(string(msg)))
	}
	for range 100 {
		if pid, conf, err := m.running(); err == nil && pid != 0 && conf == confPath {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("network %s: dnsmasq started but is not running; see %s", m.spec.Address, m.path("dnsmasq.log"))
}

// running finds the dnsmasq of this network: the pid file first, then a
// scan of /proc (the pid file may be gone). It returns its pid and the
// configuration file it runs, or 0.
func (m *dnsmasq) running() (int, string, error) {
	if b, err := os.ReadFile(m.path("dnsmasq.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			if conf, ok := m.isOurs(pid); ok {
				return pid, conf, nil
			}
		}
	}
	pids, err := m.scan()
	if err != nil || len(pids) == 0 {
		return 0, "", err
	}
	conf, _ := m.isOurs(pids[0])
	return pids[0], conf, nil
}

// isOurs says whether pid is a live dnsmasq of this network, in our network
// namespace, and returns its configuration file.
func (m *dnsmasq) isOurs(pid int) (string, bool) {
	proc := "/proc/" + strconv.Itoa(pid)
	comm, err := os.ReadFile(proc + "/comm")
	if err != nil || strings.TrimSpace(string(comm)) != "dnsmasq" {
		return "", false
	}
	if stat, err := os.ReadFile(proc + "/stat"); err != nil || zombie(stat) {
		return "", false
	}
	// The calling thread's namespace, not the process's: /proc/self is the
	// main thread, which a goroutine that locked it and switched namespace
	// (netns.Set, netnstest.NS.Do) may have left elsewhere for good.
	if a, b := nsOf(proc), nsOf("/proc/thread-self"); a == "" || a != b {
		return "", false
	}
	cmdline, err := os.ReadFile(proc + "/cmdline")
	if err != nil {
		return "", false
	}
	prefix := "--conf-file=" + m.path("dnsmasq-")
	for _, arg := range strings.Split(string(cmdline), "\x00") {
		if strings.HasPrefix(arg, prefix) {
			return strings.TrimPrefix(arg, "--conf-file="), true
		}
	}
	return "", false
}

func nsOf(proc string) string {
	s, _ := os.Readlink(proc + "/ns/net")
	return s
}

func zombie(stat []byte) bool {
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && (stat[i+2] == 'Z' || stat[i+2] == 'X')
}

// scan lists every dnsmasq process of this network.
func (m *dnsmasq) scan() ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("network %s: list processes: %w", m.spec.Address, err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, ok := m.isOurs(pid); ok {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// stop ends every dnsmasq of this network: SIGTERM, then SIGKILL after 5s.
func (m *dnsmasq) stop(ctx context.Context) error {
	pids, err := m.scan()
	if err != nil {
		return err
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for {
			if _, ok := m.isOurs(pid); !ok {
				break
			}
			if time.Now().After(deadline) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				break
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	// A SIGKILLed one still has to go.
	for range 100 {
		left, err := m.scan()
		if err != nil || len(left) == 0 {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("network %s: dnsmasq does not stop", m.spec.Address)
}

// remove stops dnsmasq and deletes the network's directory.
func (m *dnsmasq) remove(ctx context.Context) error {
	if err := m.stop(ctx); err != nil {
		return err
	}
	if err := os.RemoveAll(m.dir); err != nil {
		return fmt.Errorf("network %s: %w", m.spec.Address, err)
	}
	return nil
}
