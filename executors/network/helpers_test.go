package network

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/netnstest"
	"github.com/vishvananda/netlink"
)

func TestMain(m *testing.M) { os.Exit(netnstest.Run(m)) }

// requireTools fails (never skips) when a real component is missing.
func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	netnstest.Guard(t)
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed; these tests need it (Debian: iptables, dnsmasq-base, iproute2, busybox)", tool)
		}
	}
}

func newDriver(t *testing.T) *Driver {
	t.Helper()
	requireTools(t, "iptables", "dnsmasq", "ip")
	return &Driver{DataDir: t.TempDir()}
}

// create makes a network and deletes it when the test ends.
func create(t *testing.T, d *Driver, spec Spec) State {
	t.Helper()
	ctx := context.Background()
	st, err := d.Create(ctx, spec)
	if err != nil {
		t.Fatalf("Create(%s): %v", spec.Address, err)
	}
	t.Cleanup(func() {
		if err := d.Delete(context.Background(), spec); err != nil {
			t.Errorf("cleanup Delete(%s): %v", spec.Address, err)
		}
	})
	return st
}

// allRules is every rule of the nat and filter tables.
func allRules(t *testing.T) []string {
	t.Helper()
	return netnstest.Rules(t, nil)
}

// ownerLines are the rules carrying owner's comment.
func ownerLines(t *testing.T, owner string) []string {
	t.Helper()
	var out []string
	for _, l := range allRules(t) {
		if Comment(l) == owner {
			out = append(out, l)
		}
	}
	return out
}

func count(lines []string, substr string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l, substr) {
			n++
		}
	}
	return n
}

// guest is a namespace plugged into a bridge like a VM's NIC: a veth whose
// host end is enslaved to the bridge and whose other end, "eth0", is in
// the guest's namespace with mac (and ip/prefix and a default route via gw
// when ip is not "").
type guest struct {
	ns *netnstest.NS
	ip string
}

var guestSeq int

func plugGuest(t *testing.T, bridge, mac, ipCIDR, gw string) *guest {
	t.Helper()
	guestSeq++
	ns := netnstest.New(t)
	local := fmt.Sprintf("kt-g%d", guestSeq)
	netnstest.Veth(t, ns, local, "eth0", "", "")
	ctx := context.Background()
	if _, err := ns.Exec(ctx, "ip", "link", "set", "eth0", "down"); err != nil {
		t.Fatal(err)
	}
	if _, err := ns.Exec(ctx, "ip", "link", "set", "eth0", "address", mac, "up"); err != nil {
		t.Fatal(err)
	}
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		t.Fatal(err)
	}
	l, err := netlink.LinkByName(local)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetMaster(l, br); err != nil {
		t.Fatalf("enslave %s to %s: %v", local, bridge, err)
	}
	g := &guest{ns: ns}
	if ipCIDR != "" {
		if _, err := ns.Exec(ctx, "ip", "addr", "add", ipCIDR, "dev", "eth0"); err != nil {
			t.Fatal(err)
		}
		if _, err := ns.Exec(ctx, "ip", "route", "add", "default", "via", gw); err != nil {
			t.Fatal(err)
		}
		g.ip, _, _ = strings.Cut(ipCIDR, "/")
	}
	return g
}

// serve listens on addr inside ns (nil: the test's own namespace, the
// "host") and answers every connection with body.
func serve(t *testing.T, ns *netnstest.NS, addr, body string) net.Listener {
	t.Helper()
	ln := netnstest.Listen(t, ns, addr)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s from %s\n", body, c.RemoteAddr())
			c.Close()
		}
	}()
	return ln
}

// dial connects to addr from ns (nil: the test's namespace) and returns
// what the server said.
func dial(ns *netnstest.NS, addr string) (string, error) {
	var c net.Conn
	do := func() (err error) {
		c, err = net.DialTimeout("tcp", addr, 2*time.Second)
		return err
	}
	var err error
	if ns == nil {
		err = do()
	} else {
		err = ns.Do(do)
	}
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	b := make([]byte, 256)
	n, err := c.Read(b)
	if n == 0 {
		return "", err
	}
	return strings.TrimSpace(string(b[:n])), nil
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
