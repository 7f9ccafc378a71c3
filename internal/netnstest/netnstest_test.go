package netnstest

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/kiln-dev/kiln/internal/testwait"
)

func TestMain(m *testing.M) { os.Exit(Run(m)) }

func TestRunsInsideFreshNamespace(t *testing.T) {
	Guard(t)
	if !strings.HasPrefix(Current(), Prefix) {
		t.Fatalf("Current() = %q, want prefix %q", Current(), Prefix)
	}
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	if len(names) != 1 || names[0] != "lo" {
		t.Fatalf("links in the test namespace = %v, want only lo (the host's must be invisible)", names)
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if lo.Attrs().Flags&net.FlagUp == 0 {
		t.Fatal("lo is down in the test namespace")
	}
}

func TestCheckInsideRefusesOtherNamespace(t *testing.T) {
	tests := []struct {
		name string
		env  string
	}{
		{"not a test namespace", "default"},
		{"a test namespace we are not in", ""}, // filled below
	}
	peer := New(t)
	tests[1].env = peer.Name
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := checkInside(tt.env); err == nil {
				t.Fatalf("checkInside(%q) succeeded", tt.env)
			}
		})
	}
}

func TestVethJoinsNamespaces(t *testing.T) {
	peer := New(t)
	Veth(t, peer, "kt-a", "kt-b", "10.99.0.1/24", "10.99.0.2/24")

	var ln net.Listener
	if err := peer.Do(func() (err error) {
		ln, err = net.Listen("tcp", "10.99.0.2:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = c.Write([]byte("hello from " + peer.Name))
	}()

	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial the peer namespace: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), "hello from "+peer.Name; got != want {
		t.Fatalf("read %q, want %q", got, want)
	}

	// The peer sees its end and not ours.
	out, err := peer.Exec(context.Background(), "ip", "-o", "link", "show")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "kt-b") || strings.Contains(string(out), "kt-a") {
		t.Fatalf("links in peer:\n%s", out)
	}
}

func TestNewDeletesNamespaceAndItsProcesses(t *testing.T) {
	var name string
	var pid int
	t.Run("inner", func(t *testing.T) {
		ns := New(t)
		name = ns.Name
		cmd, err := ns.Start(context.Background(), "sleep", "300")
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = cmd.Wait() }()
		pid = cmd.Process.Pid
		// Until `ip netns exec` has entered the namespace and become
		// sleep, `ip netns pids` cannot see it: wait for that (bounded),
		// or the cleanup may run before it is there to be killed.
		for i := 0; ; i++ {
			comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
			if strings.TrimSpace(string(comm)) == "sleep" {
				break
			}
			if i == 250 {
				t.Fatalf("process %d did not become sleep in %s: comm %q", pid, name, comm)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if _, err := os.Stat(filepath.Join("/run/netns", name)); err != nil {
			t.Fatalf("namespace %s missing: %v", name, err)
		}
	})
	if _, err := os.Stat(filepath.Join("/run/netns", name)); !os.IsNotExist(err) {
		t.Fatalf("namespace %s still there after its test: %v", name, err)
	}
	// `ip netns exec` replaces itself with the command, so pid was sleep.
	testwait.For(t, 5*time.Second, fmt.Sprintf("process %d, left running in the deleted namespace, to end", pid), func() bool {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		return err != nil || strings.Contains(string(b), ") Z ")
	})
}

func TestGuestOnBridge(t *testing.T) {
	la := netlink.NewLinkAttrs()
	la.Name = "kt-br"
	br := &netlink.Bridge{LinkAttrs: la}
	if err := netlink.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(br) })
	addr, _ := netlink.ParseAddr("10.98.0.1/24")
	if err := netlink.AddrAdd(br, addr); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		t.Fatal(err)
	}
	g := Guest(t, "kt-br", "52:54:00:98:00:02", "10.98.0.2/24", "10.98.0.1")
	out, err := g.Exec(context.Background(), "ip", "-o", "link", "show", "eth0")
	if err != nil || !strings.Contains(string(out), "52:54:00:98:00:02") {
		t.Fatalf("guest eth0: %v\n%s", err, out)
	}
	var ln net.Listener
	if err := g.Do(func() (err error) { ln, err = net.Listen("tcp", "10.98.0.2:0"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatalf("host to guest over the bridge: %v", err)
	}
	c.Close()
}
