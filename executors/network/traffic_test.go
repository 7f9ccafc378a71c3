package network

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/internal/netnstest"
)

// TestTraffic sends real packets: guests are namespaces plugged into the
// bridges, "outside" is a namespace behind an uplink veth that knows no
// route to the guests' networks, so only masqueraded traffic comes back.
func TestTraffic(t *testing.T) {
	requireTools(t, "iptables", "dnsmasq", "busybox")
	d := newDriver(t)
	d.GuestPorts = []int{18775} // the agent's ready-signal port
	netA := Spec{Stack: "tr", Address: "network.a", CIDR: "10.41.0.0/24", NAT: true, DHCP: true,
		Hosts: []Host{{MAC: "52:54:00:41:00:11", IP: "10.41.0.11", Hostname: "dhcp-guest"}}}
	netB := Spec{Stack: "tr", Address: "network.b", CIDR: "10.42.0.0/24", NAT: true}
	netC := Spec{Stack: "tr", Address: "network.c", CIDR: "10.43.0.0/24"} // no NAT
	stA, stB, stC := create(t, d, netA), create(t, d, netB), create(t, d, netC)

	outside := netnstest.New(t)
	netnstest.Veth(t, outside, "kt-up", "up0", "192.0.2.1/24", "192.0.2.2/24")
	serve(t, outside, "192.0.2.2:8000", "outside")

	guestA := plugGuest(t, stA.Bridge, "52:54:00:41:00:10", "10.41.0.10/24", "10.41.0.1")
	guestB := plugGuest(t, stB.Bridge, "52:54:00:42:00:10", "10.42.0.10/24", "10.42.0.1")
	guestC := plugGuest(t, stC.Bridge, "52:54:00:43:00:10", "10.43.0.10/24", "10.43.0.1")
	serve(t, guestB.ns, "10.42.0.10:8000", "guest-b")
	// Services of the host itself: one guests must not reach (SSH, kiln's
	// API and raft ports), and the ready-signal port they may.
	serve(t, nil, "0.0.0.0:18022", "host-service")
	serve(t, nil, "0.0.0.0:18775", "ready-signal")

	tests := []struct {
		name   string
		from   *guest
		to     string
		want   string // in the answer; "" means the connection must fail
		reason string
	}{
		{"nat egress", guestA, "192.0.2.2:8000", "outside from 192.0.2.1:", "the outside sees the host's uplink address (MASQUERADE)"},
		{"other network's nat egress", guestB, "192.0.2.2:8000", "outside from 192.0.2.1:", "each NAT network has its own MASQUERADE"},
		{"no nat, no egress", guestC, "192.0.2.2:8000", "", "a network without NAT does not forward out"},
		{"isolated networks", guestA, "10.42.0.10:8000", "", "kiln's networks are isolated from each other"},
		{"host reaches a guest", nil, "10.42.0.10:8000", "guest-b from 10.42.0.1:", "the host itself is not isolated"},
		{"guest to a host service on its gateway", guestA, "10.41.0.1:18022", "", "guests reach no host service but DHCP, DNS and the guest ports"},
		{"guest to a host service on another host address", guestA, "192.0.2.1:18022", "", "the host's other addresses are the host too"},
		{"guest without nat to a host service", guestC, "10.43.0.1:18022", "", "with or without NAT"},
		{"guest to the ready-signal port", guestA, "10.41.0.1:18775", "ready-signal from 10.41.0.10:", "the guest ports stay open"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ns *netnstest.NS
			if tt.from != nil {
				ns = tt.from.ns
			}
			got, err := dial(ns, tt.to)
			switch {
			case tt.want == "" && err == nil:
				t.Errorf("connected to %s (answer %q), but %s", tt.to, got, tt.reason)
			case tt.want != "" && err != nil:
				t.Errorf("dial %s: %v; %s", tt.to, err, tt.reason)
			case tt.want != "" && !strings.HasPrefix(got, tt.want):
				t.Errorf("answer %q, want %q: %s", got, tt.want, tt.reason)
			}
		})
	}

	t.Run("no ipv6 on the bridges", func(t *testing.T) {
		for _, br := range []string{stA.Bridge, stB.Bridge, stC.Bridge} {
			v, err := os.ReadFile(filepath.Join("/proc/sys/net/ipv6/conf", br, "disable_ipv6"))
			if err != nil {
				t.Fatalf("%s: %v", br, err)
			}
			if strings.TrimSpace(string(v)) != "1" {
				t.Errorf("%s: disable_ipv6 = %q, want 1: a guest would reach the host over a link-local address", br, v)
			}
		}
	})

	t.Run("dhcp lease", func(t *testing.T) {
		g := plugGuest(t, stA.Bridge, "52:54:00:41:00:11", "", "")
		script := filepath.Join(t.TempDir(), "udhcpc.sh")
		if err := os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = bound ] && echo \"LEASE ip=$ip router=$router\"\nexit 0\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30e9)
		defer cancel()
		out, err := g.ns.Exec(ctx, "busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "10", "-T", "1", "-s", script)
		if err != nil {
			t.Fatalf("udhcpc: %v", err)
		}
		if !strings.Contains(string(out), "LEASE ip=10.41.0.11 router=10.41.0.1") {
			t.Fatalf("udhcpc did not get the fixed address 10.41.0.11:\n%s", out)
		}
		leases, _ := os.ReadFile(d.dnsmasq(netA).path("dnsmasq.leases"))
		if !strings.Contains(string(leases), "52:54:00:41:00:11 10.41.0.11 dhcp-guest") {
			t.Errorf("lease file:\n%s", leases)
		}
	})

	t.Run("unknown mac gets nothing", func(t *testing.T) {
		g := plugGuest(t, stA.Bridge, "52:54:00:41:00:99", "", "")
		ctx, cancel := context.WithTimeout(context.Background(), 30e9)
		defer cancel()
		out, err := g.ns.Exec(ctx, "busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "2", "-T", "1", "-s", "/bin/true")
		if err == nil {
			t.Fatalf("udhcpc got a lease for a MAC not in the hosts file:\n%s", out)
		}
	})
}
