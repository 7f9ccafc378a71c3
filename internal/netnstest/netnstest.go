// Package netnstest runs tests inside network namespaces that the tests
// themselves make, so that bridges, addresses, iptables rules and dnsmasq
// made by a test never touch the host's own network.
//
// A package whose tests touch the network has:
//
//	func TestMain(m *testing.M) { os.Exit(netnstest.Run(m)) }
//
// Run creates a fresh namespace kiln-t-<random>, runs the test binary again
// inside it (through `ip netns exec`) and deletes it afterwards, killing any
// process left in it. Inside, New makes further namespaces (a "client" or a
// "guest") and Veth joins them to the test's namespace.
//
// It needs root and iproute2's ip; without them Run fails and says so.
package netnstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// EnvVar names the namespace the re-executed test binary runs in.
const EnvVar = "KILN_NETNS"

// Prefix starts the name of every namespace this package makes.
const Prefix = "kiln-t-"

// Run is for TestMain. Outside a test namespace it makes one, runs the test
// binary inside it with the same arguments and returns its exit code; inside
// it runs the tests. It returns 1, after saying why on stderr, when the
// namespace cannot be made (not root, no ip command).
func Run(m *testing.M) int {
	if name := os.Getenv(EnvVar); name != "" {
		if err := checkInside(name); err != nil {
			fmt.Fprintf(os.Stderr, "netnstest: %v\n", err)
			return 1
		}
		return m.Run()
	}
	if err := Requirements(); err != nil {
		fmt.Fprintf(os.Stderr, "netnstest: %v\n", err)
		return 1
	}
	name, err := add()
	if err != nil {
		fmt.Fprintf(os.Stderr, "netnstest: %v\n", err)
		return 1
	}
	defer func() {
		if err := del(name); err != nil {
			fmt.Fprintf(os.Stderr, "netnstest: %v\n", err)
		}
	}()
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "netnstest: find test binary: %v\n", err)
		return 1
	}
	args := append([]string{"netns", "exec", name, self}, os.Args[1:]...)
	cmd := exec.Command("ip", args...)
	cmd.Env = append(os.Environ(), EnvVar+"="+name)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "netnstest: start tests in %s: %v\n", name, err)
		return 1
	}
	// Pass interrupts on, so the tests end and the namespace is still removed.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case s := <-sigs:
				_ = cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	err = cmd.Wait()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit) && exit.ExitCode() > 0:
		return exit.ExitCode()
	default:
		fmt.Fprintf(os.Stderr, "netnstest: tests in %s: %v\n", name, err)
		return 1
	}
}

// Requirements says what is missing to make namespaces: root, ip.
func Requirements() error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (network namespaces, bridges and iptables need it)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		missing = append(missing, "the ip command (apt-get install iproute2)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("cannot run network tests: missing %s", strings.Join(missing, " and "))
	}
	return nil
}

// Current is the name of the test namespace the tests run in, or "" when
// they do not run under Run.
func Current() string {
	return os.Getenv(EnvVar)
}

// Guard fails the test unless it runs inside a namespace made by Run. Every
// test that changes the network calls it first.
func Guard(t testing.TB) {
	t.Helper()
	name := Current()
	if name == "" {
		t.Fatalf("netnstest: test runs in the host's network namespace; its package needs TestMain calling netnstest.Run")
	}
	if err := checkInside(name); err != nil {
		t.Fatalf("netnstest: %v", err)
	}
}

// checkInside makes sure the calling thread really is in the named test
// namespace, so a stray KILN_NETNS never lets tests loose on the host.
func checkInside(name string) error {
	if !strings.HasPrefix(name, Prefix) {
		return fmt.Errorf("%s=%q is not a test namespace (want prefix %s)", EnvVar, name, Prefix)
	}
	want, err := netns.GetFromName(name)
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", name, err)
	}
	defer want.Close()
	cur, err := netns.Get()
	if err != nil {
		return fmt.Errorf("current namespace: %w", err)
	}
	defer cur.Close()
	if !cur.Equal(want) {
		return fmt.Errorf("%s=%s but the process is not in that namespace", EnvVar, name)
	}
	return nil
}

func randomName() (string, error) {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return Prefix + hex.EncodeToString(b), nil
}

// add makes a namespace with its loopback up.
func add() (string, error) {
	name, err := randomName()
	if err != nil {
		return "", fmt.Errorf("namespace name: %w", err)
	}
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return "", fmt.Errorf("ip netns add %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		_ = del(name)
		return "", fmt.Errorf("ip -n %s link set lo up: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	return name, nil
}

// del kills what still runs in the namespace and deletes it.
func del(name string) error {
	for range 50 {
		pids, err := Pids(name)
		if err != nil || len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			if pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns del %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Pids lists the processes running in the named namespace.
func Pids(name string) ([]int, error) {
	out, err := exec.Command("ip", "netns", "pids", name).Output()
	if err != nil {
		return nil, fmt.Errorf("ip netns pids %s: %w", name, err)
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// DnsmasqPids lists the live (not zombie) dnsmasq processes of the calling
// thread's network namespace: what a test counts to see that a network's
// dnsmasq was started or stopped.
func DnsmasqPids(t testing.TB) []int {
	t.Helper()
	self, _ := os.Readlink("/proc/thread-self/ns/net")
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
		stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if strings.TrimSpace(string(comm)) == "dnsmasq" && ns == self && !strings.Contains(string(stat), ") Z") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Rules lists the rules of the nat and filter tables of the calling
// thread's network namespace, as `iptables -S` prints them and each prefixed
// by its table ("nat: -A ..."), that keep accepts (nil: every rule).
func Rules(t testing.TB, keep func(rule string) bool) []string {
	t.Helper()
	var out []string
	for _, table := range []string{"nat", "filter"} {
		b, err := exec.Command("iptables", "-w", "-t", table, "-S").CombinedOutput()
		if err != nil {
			t.Fatalf("iptables -t %s -S: %v: %s", table, err, b)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if l != "" && (keep == nil || keep(l)) {
				out = append(out, table+": "+l)
			}
		}
	}
	return out
}

// NS is a namespace made by New for one test, deleted when the test ends.
type NS struct {
	Name string
}

// New makes a fresh namespace (loopback up) for a second party in a test,
// such as a client or a guest, and deletes it when the test ends.
func New(t testing.TB) *NS {
	t.Helper()
	Guard(t)
	name, err := add()
	if err != nil {
		t.Fatalf("netnstest: %v", err)
	}
	t.Cleanup(func() {
		if err := del(name); err != nil {
			t.Errorf("netnstest: %v", err)
		}
	})
	return &NS{Name: name}
}

// Exec runs a command inside the namespace and returns its combined output.
func (ns *NS) Exec(ctx context.Context, name string, args ...string) ([]byte, error) {
	full := append([]string{"netns", "exec", ns.Name, name}, args...)
	out, err := exec.CommandContext(ctx, "ip", full...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), ns.Name, err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// Start starts a command inside the namespace; the caller waits for it (or
// it is killed with the namespace).
func (ns *NS) Start(ctx context.Context, name string, args ...string) (*exec.Cmd, error) {
	full := append([]string{"netns", "exec", ns.Name, name}, args...)
	cmd := exec.CommandContext(ctx, "ip", full...)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", name, ns.Name, err)
	}
	return cmd, nil
}

// Do runs fn on an OS thread switched into the namespace. Sockets made by
// fn (a net.Listen, a net.Dial) stay in that namespace afterwards, whichever
// goroutine uses them. The thread is thrown away after fn, never reused.
func (ns *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the goroutine's end retires the thread, so no
		// other goroutine ever runs in the wrong namespace.
		runtime.LockOSThread()
		h, err := netns.GetFromName(ns.Name)
		if err != nil {
			errc <- fmt.Errorf("open namespace %s: %w", ns.Name, err)
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- fmt.Errorf("enter namespace %s: %w", ns.Name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Veth joins the test's namespace to peer with a veth pair: local stays in
// the test's namespace with address localCIDR, remote moves into peer with
// remoteCIDR ("" leaves an end without address). Both ends are up. The
// local end is returned; the pair goes away with peer's namespace.
func Veth(t testing.TB, peer *NS, local, remote, localCIDR, remoteCIDR string) netlink.Link {
	t.Helper()
	Guard(t)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: local}, PeerName: remote}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("netnstest: add veth %s/%s: %v", local, remote, err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(local); err == nil {
			_ = netlink.LinkDel(l)
		}
	})
	peerLink, err := netlink.LinkByName(remote)
	if err != nil {
		t.Fatalf("netnstest: find %s: %v", remote, err)
	}
	h, err := netns.GetFromName(peer.Name)
	if err != nil {
		t.Fatalf("netnstest: open namespace %s: %v", peer.Name, err)
	}
	defer h.Close()
	if err := netlink.LinkSetNsFd(peerLink, int(h)); err != nil {
		t.Fatalf("netnstest: move %s into %s: %v", remote, peer.Name, err)
	}
	localLink, err := netlink.LinkByName(local)
	if err != nil {
		t.Fatalf("netnstest: find %s: %v", local, err)
	}
	if localCIDR != "" {
		addr, err := netlink.ParseAddr(localCIDR)
		if err != nil {
			t.Fatalf("netnstest: %v", err)
		}
		if err := netlink.AddrAdd(localLink, addr); err != nil {
			t.Fatalf("netnstest: address %s on %s: %v", localCIDR, local, err)
		}
	}
	if err := netlink.LinkSetUp(localLink); err != nil {
		t.Fatalf("netnstest: set %s up: %v", local, err)
	}
	ctx := context.Background()
	if remoteCIDR != "" {
		if _, err := peer.Exec(ctx, "ip", "addr", "add", remoteCIDR, "dev", remote); err != nil {
			t.Fatalf("netnstest: %v", err)
		}
	}
	if _, err := peer.Exec(ctx, "ip", "link", "set", remote, "up"); err != nil {
		t.Fatalf("netnstest: %v", err)
	}
	return localLink
}

var guestSeq atomic.Int32

// Guest makes a namespace that stands for a VM on a bridge of the test's
// namespace: a veth whose local end is enslaved to bridge and whose other
// end, eth0 in the new namespace, has mac and, when ipCIDR is not "", that
// address and a default route via gw.
func Guest(t testing.TB, bridge, mac, ipCIDR, gw string) *NS {
	t.Helper()
	ns := New(t)
	local := fmt.Sprintf("kt-v%d", guestSeq.Add(1))
	Veth(t, ns, local, "eth0", "", "")
	ctx := context.Background()
	if _, err := ns.Exec(ctx, "ip", "link", "set", "eth0", "down"); err != nil {
		t.Fatalf("netnstest: %v", err)
	}
	if _, err := ns.Exec(ctx, "ip", "link", "set", "eth0", "address", mac, "up"); err != nil {
		t.Fatalf("netnstest: %v", err)
	}
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		t.Fatalf("netnstest: bridge %s: %v", bridge, err)
	}
	l, err := netlink.LinkByName(local)
	if err != nil {
		t.Fatalf("netnstest: %v", err)
	}
	if err := netlink.LinkSetMaster(l, br); err != nil {
		t.Fatalf("netnstest: enslave %s to %s: %v", local, bridge, err)
	}
	if ipCIDR != "" {
		if _, err := ns.Exec(ctx, "ip", "addr", "add", ipCIDR, "dev", "eth0"); err != nil {
			t.Fatalf("netnstest: %v", err)
		}
		if _, err := ns.Exec(ctx, "ip", "route", "add", "default", "via", gw); err != nil {
			t.Fatalf("netnstest: %v", err)
		}
	}
	return ns
}
