package network

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/executors"
	"github.com/kiln-dev/kiln/internal/testwait"
	"github.com/vishvananda/netlink"
)

func lanSpec(stack string) Spec {
	return Spec{
		Stack: stack, Address: "network.lan", CIDR: "10.20.0.0/24", NAT: true, DHCP: true,
		Hosts: []Host{
			{MAC: "52:54:00:00:00:11", IP: "10.20.0.11", Hostname: "web-1"},
			{MAC: "52:54:00:00:00:10", IP: "10.20.0.10", Hostname: "web-0"},
		},
	}
}

func TestCreate(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
	}{
		{"nat and dhcp", lanSpec("s1")},
		{"plain bridge", Spec{Stack: "s2", Address: "network.iso", CIDR: "10.21.0.0/24"}},
		{"dhcp with dns", Spec{Stack: "s3", Address: "network.dns", CIDR: "10.22.0.0/16", DHCP: true, DNS: []string{"192.0.2.53"},
			Hosts: []Host{{MAC: "52:54:00:aa:bb:cc", IP: "10.22.3.4"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDriver(t)
			st := create(t, d, tt.spec)
			owner := executors.Owner(tt.spec.Stack, tt.spec.Address)
			if d := st.Drift(tt.spec); len(d) > 0 {
				t.Errorf("drift right after Create: %v", d)
			}

			br, err := netlink.LinkByName(st.Bridge)
			if err != nil {
				t.Fatalf("bridge %s: %v", st.Bridge, err)
			}
			if br.Type() != "bridge" || len(st.Bridge) > 15 || !strings.HasPrefix(st.Bridge, BridgePrefix) {
				t.Errorf("link %s type %s", st.Bridge, br.Type())
			}
			if br.Attrs().Alias != owner {
				t.Errorf("alias %q, want %q", br.Attrs().Alias, owner)
			}
			if br.Attrs().Flags&net.FlagUp == 0 {
				t.Error("bridge is down")
			}
			gw, _ := tt.spec.gateway()
			addrs, _ := netlink.AddrList(br, netlink.FAMILY_V4)
			if len(addrs) != 1 || addrs[0].IPNet.String() != gw.String() {
				t.Errorf("addresses %v, want only %s", addrs, gw)
			}
			if st.Gateway != gw.String() {
				t.Errorf("State.Gateway %q", st.Gateway)
			}
			if fwd, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); strings.TrimSpace(string(fwd)) != "1" {
				t.Errorf("ip_forward = %q", fwd)
			}

			// Rules: exactly the spec's, all in kiln's chains, one jump each.
			lines := ownerLines(t, owner)
			if want := len(rulesFor(tt.spec, st.Bridge, d.GuestPorts)); len(lines) != want {
				t.Errorf("%d rules with owner %s, want %d:\n%s", len(lines), owner, want, strings.Join(lines, "\n"))
			}
			for _, l := range lines {
				if !strings.Contains(l, " -A KILN-") {
					t.Errorf("rule outside kiln's chains: %s", l)
				}
			}
			all := allRules(t)
			for _, c := range Chains {
				if n := count(all, "-A "+c.From+" -m comment --comment kiln -j "+c.Name); n != 1 {
					t.Errorf("%d jumps %s -> %s, want 1", n, c.From, c.Name)
				}
			}
			if got := count(lines, "MASQUERADE"); got != map[bool]int{true: 1}[tt.spec.NAT] || st.NAT != tt.spec.NAT {
				t.Errorf("MASQUERADE rules %d, State.NAT %v, spec NAT %v", got, st.NAT, tt.spec.NAT)
			}

			dm := d.dnsmasq(tt.spec)
			if !tt.spec.DHCP {
				if st.DnsmasqPID != 0 {
					t.Errorf("dnsmasq %d runs without DHCP", st.DnsmasqPID)
				}
				if _, err := os.Stat(d.Dir(tt.spec)); !os.IsNotExist(err) {
					t.Errorf("network dir exists without DHCP: %v", err)
				}
				return
			}
			if st.DnsmasqPID == 0 || !st.DHCP {
				t.Fatalf("dnsmasq not running: %+v", st)
			}
			if comm, _ := os.ReadFile("/proc/" + strconv.Itoa(st.DnsmasqPID) + "/comm"); strings.TrimSpace(string(comm)) != "dnsmasq" {
				t.Errorf("pid %d is %q", st.DnsmasqPID, comm)
			}
			hosts, _ := os.ReadFile(dm.path("dnsmasq.hosts"))
			var want strings.Builder
			for _, h := range sortedHosts(tt.spec.Hosts) {
				want.WriteString(strings.TrimSuffix(h.MAC+","+h.IP+","+h.Hostname, ",") + "\n")
			}
			if string(hosts) != want.String() {
				t.Errorf("hosts file:\n%s\nwant:\n%s", hosts, want.String())
			}
			conf, _ := dm.confPath()
			b, _ := os.ReadFile(conf)
			for _, line := range []string{"interface=" + st.Bridge, "bind-interfaces", "except-interface=lo", "dhcp-range=" + strings.Split(tt.spec.CIDR, "/")[0] + ",static,"} {
				if !strings.Contains(string(b), line) {
					t.Errorf("dnsmasq config lacks %q:\n%s", line, b)
				}
			}
			if hasDNS := !strings.Contains(string(b), "port=0"); hasDNS != (len(tt.spec.DNS) > 0) {
				t.Errorf("dnsmasq DNS served = %v, spec DNS %v", hasDNS, tt.spec.DNS)
			}
		})
	}
}

func TestCreateIsIdempotent(t *testing.T) {
	d := newDriver(t)
	spec := lanSpec("idem")
	first := create(t, d, spec)
	before := allRules(t)
	for i := range 3 {
		st, err := d.Create(context.Background(), spec)
		if err != nil {
			t.Fatalf("Create #%d: %v", i+2, err)
		}
		if st.DnsmasqPID != first.DnsmasqPID {
			t.Errorf("Create #%d restarted dnsmasq: pid %d -> %d", i+2, first.DnsmasqPID, st.DnsmasqPID)
		}
	}
	if after := allRules(t); !slices.Equal(before, after) {
		t.Errorf("rules changed on re-create:\nbefore:\n%s\nafter:\n%s", strings.Join(before, "\n"), strings.Join(after, "\n"))
	}
	links, _ := netlink.LinkList()
	n := 0
	for _, l := range links {
		if l.Attrs().Alias == executors.Owner(spec.Stack, spec.Address) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d links tagged with the owner, want 1", n)
	}
	// A second driver (a restarted agent) adopts the same network.
	d2 := &Driver{DataDir: d.DataDir}
	st, err := d2.Read(context.Background(), spec)
	if err != nil || len(st.Drift(spec)) > 0 {
		t.Errorf("fresh driver Read: %+v, %v, drift %v", st, err, st.Drift(spec))
	}
}

func TestDriftIsSeenAndRepaired(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(t *testing.T, d *Driver, st State, spec Spec)
		want   string // in Drift; "" means Read returns ErrNotFound
	}{
		{"bridge deleted", func(t *testing.T, d *Driver, st State, spec Spec) {
			l, _ := netlink.LinkByName(st.Bridge)
			if err := netlink.LinkDel(l); err != nil {
				t.Fatal(err)
			}
		}, ""},
		{"dnsmasq killed", func(t *testing.T, d *Driver, st State, spec Spec) {
			if err := syscall.Kill(st.DnsmasqPID, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			waitGone(t, st.DnsmasqPID)
		}, "dnsmasq is not running"},
		{"gateway removed", func(t *testing.T, d *Driver, st State, spec Spec) {
			run(t, "ip", "addr", "flush", "dev", st.Bridge)
		}, "lacks gateway"},
		{"bridge down", func(t *testing.T, d *Driver, st State, spec Spec) {
			run(t, "ip", "link", "set", st.Bridge, "down")
		}, "is down"},
		{"masquerade deleted", func(t *testing.T, d *Driver, st State, spec Spec) {
			r := masquerade(spec.CIDR, st.Bridge)
			run(t, append([]string{"iptables", "-w", "-t", "nat", "-D", ChainPostrouting}, withOwner(r.Spec, spec.owner())...)...)
		}, "NAT is false"},
		{"hosts file edited", func(t *testing.T, d *Driver, st State, spec Spec) {
			if err := os.WriteFile(d.dnsmasq(spec).path("dnsmasq.hosts"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "DHCP hosts differ"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDriver(t)
			spec := lanSpec("drift")
			st := create(t, d, spec)
			rules := ownerLines(t, spec.owner())
			tt.break_(t, d, st, spec)

			got, err := d.Read(context.Background(), spec)
			if tt.want == "" {
				if !errors.Is(err, executors.ErrNotFound) {
					t.Fatalf("Read after %s: %v, want ErrNotFound", tt.name, err)
				}
			} else {
				if err != nil {
					t.Fatalf("Read: %v", err)
				}
				drift := strings.Join(got.Drift(spec), "; ")
				if !strings.Contains(drift, tt.want) {
					t.Fatalf("drift %q does not say %q", drift, tt.want)
				}
			}

			fixed, err := d.Create(context.Background(), spec)
			if err != nil {
				t.Fatalf("repairing Create: %v", err)
			}
			if drift := fixed.Drift(spec); len(drift) > 0 {
				t.Errorf("drift after repair: %v", drift)
			}
			if after := ownerLines(t, spec.owner()); !slices.Equal(rules, after) {
				t.Errorf("rules after repair:\n%s\nwant:\n%s", strings.Join(after, "\n"), strings.Join(rules, "\n"))
			}
		})
	}
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	for range 250 {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil || zombie(b) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("process %d does not die", pid)
}

func TestUpdate(t *testing.T) {
	d := newDriver(t)
	spec := lanSpec("upd")
	st := create(t, d, spec)
	ctx := context.Background()
	dm := d.dnsmasq(spec)

	// Hosts: the file is rewritten and dnsmasq re-reads it (SIGHUP), same pid.
	spec.Hosts = append(spec.Hosts, Host{MAC: "52:54:00:00:00:12", IP: "10.20.0.12", Hostname: "web-2"})
	got, err := d.Update(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if got.DnsmasqPID != st.DnsmasqPID {
		t.Errorf("hosts change restarted dnsmasq: %d -> %d", st.DnsmasqPID, got.DnsmasqPID)
	}
	if len(got.Hosts) != 3 || got.Hosts[2].Hostname != "web-2" {
		t.Errorf("hosts after update: %+v", got.Hosts)
	}
	testwait.For(t, 5*time.Second, "dnsmasq to re-read its hosts file", func() bool {
		log, _ := os.ReadFile(dm.path("dnsmasq.log"))
		return strings.Count(string(log), "read "+dm.path("dnsmasq.hosts")) >= 2
	})

	// NAT off and on again.
	spec.NAT = false
	if got, err = d.Update(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if got.NAT || count(ownerLines(t, spec.owner()), "MASQUERADE") != 0 {
		t.Errorf("NAT off: State.NAT %v, rules:\n%s", got.NAT, strings.Join(ownerLines(t, spec.owner()), "\n"))
	}
	spec.NAT = true
	if got, err = d.Update(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if !got.NAT || count(ownerLines(t, spec.owner()), "MASQUERADE") != 1 {
		t.Errorf("NAT on: State.NAT %v", got.NAT)
	}

	// DNS: a new configuration, so a new dnsmasq that serves port 53.
	spec.DNS = []string{"192.0.2.1"}
	if got, err = d.Update(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if got.DnsmasqPID == st.DnsmasqPID || !got.DHCP {
		t.Errorf("DNS change: pid %d -> %d, DHCP %v", st.DnsmasqPID, got.DnsmasqPID, got.DHCP)
	}
	if out := run(t, "ss", "-lnu"); !strings.Contains(out, "10.20.0.1:53") {
		t.Errorf("dnsmasq does not serve DNS on the gateway:\n%s", out)
	}
	if confs, _ := filepath.Glob(dm.path("dnsmasq-*.conf")); len(confs) != 1 {
		t.Errorf("config files %v, want one", confs)
	}

	// DHCP off: dnsmasq and its files go.
	spec.DHCP = false
	if got, err = d.Update(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if got.DnsmasqPID != 0 {
		t.Errorf("dnsmasq %d still runs with DHCP off", got.DnsmasqPID)
	}
	if _, err := os.Stat(d.Dir(spec)); !os.IsNotExist(err) {
		t.Errorf("network dir left with DHCP off: %v", err)
	}
	if drift := got.Drift(spec); len(drift) > 0 {
		t.Errorf("drift: %v", drift)
	}

	// Update of a network that is not there.
	missing := lanSpec("nobody")
	if _, err := d.Update(ctx, missing); !errors.Is(err, executors.ErrNotFound) {
		t.Errorf("Update of a missing network: %v, want ErrNotFound", err)
	}
	if _, err := netlink.LinkByName(BridgeName(missing.Stack, missing.Address)); err == nil {
		t.Error("Update made a bridge")
	}
}

func TestDelete(t *testing.T) {
	d := newDriver(t)
	ctx := context.Background()
	keep := create(t, d, Spec{Stack: "del", Address: "network.keep", CIDR: "10.31.0.0/24", NAT: true, DHCP: true})
	spec := lanSpec("del")
	st, err := d.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	keepRules := ownerLines(t, executors.Owner("del", "network.keep"))

	for i := range 2 { // the second delete finds nothing and succeeds
		if err := d.Delete(ctx, spec); err != nil {
			t.Fatalf("Delete #%d: %v", i+1, err)
		}
	}
	if _, err := netlink.LinkByName(st.Bridge); err == nil {
		t.Error("bridge left")
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(st.DnsmasqPID)); err == nil {
		if _, ours := d.dnsmasq(spec).isOurs(st.DnsmasqPID); ours {
			t.Error("dnsmasq left running")
		}
	}
	if left := ownerLines(t, spec.owner()); len(left) > 0 {
		t.Errorf("rules left:\n%s", strings.Join(left, "\n"))
	}
	if _, err := os.Stat(d.Dir(spec)); !os.IsNotExist(err) {
		t.Errorf("files left in %s", d.Dir(spec))
	}
	if _, err := d.Read(ctx, spec); !errors.Is(err, executors.ErrNotFound) {
		t.Errorf("Read after Delete: %v, want ErrNotFound", err)
	}
	// The other network is untouched.
	if got := ownerLines(t, executors.Owner("del", "network.keep")); !slices.Equal(got, keepRules) {
		t.Errorf("other network's rules changed:\n%s", strings.Join(got, "\n"))
	}
	if st, err := d.Read(ctx, Spec{Stack: "del", Address: "network.keep", CIDR: "10.31.0.0/24", NAT: true, DHCP: true}); err != nil || st.DnsmasqPID != keep.DnsmasqPID {
		t.Errorf("other network after delete: %+v, %v", st, err)
	}
}

func TestForeignBridgeIsLeftAlone(t *testing.T) {
	d := newDriver(t)
	spec := lanSpec("foreign")
	name := BridgeName(spec.Stack, spec.Address)
	la := netlink.NewLinkAttrs()
	la.Name = name
	br := &netlink.Bridge{LinkAttrs: la}
	if err := netlink.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetAlias(br, "kiln:someone/network.else"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(name); err == nil {
			netlink.LinkDel(l)
		}
	})
	ctx := context.Background()
	if _, err := d.Create(ctx, spec); err == nil || !strings.Contains(err.Error(), "belongs to") {
		t.Errorf("Create over a foreign bridge: %v", err)
	}
	if err := d.Delete(ctx, spec); err == nil {
		t.Error("Delete removed a foreign bridge")
	}
	if _, err := netlink.LinkByName(name); err != nil {
		t.Errorf("foreign bridge gone: %v", err)
	}
}

func TestSpecValidate(t *testing.T) {
	ok := lanSpec("v")
	tests := []struct {
		name   string
		mutate func(*Spec)
		err    string
	}{
		{"valid", func(*Spec) {}, ""},
		{"ipv6", func(s *Spec) { s.CIDR = "fd00::/64" }, "not an IPv4 CIDR"},
		{"too small", func(s *Spec) { s.CIDR = "10.0.0.0/31" }, "no room"},
		{"host outside", func(s *Spec) { s.Hosts[0].IP = "10.99.0.5" }, "not a guest address"},
		{"host is gateway", func(s *Spec) { s.Hosts[0].IP = "10.20.0.1" }, "not a guest address"},
		{"broadcast", func(s *Spec) { s.Hosts[0].IP = "10.20.0.255" }, "not a guest address"},
		{"bad mac", func(s *Spec) { s.Hosts[0].MAC = "nope" }, "not a MAC"},
		{"bad hostname", func(s *Spec) { s.Hosts[0].Hostname = "a,b" }, "not a valid hostname"},
		{"duplicate", func(s *Spec) { s.Hosts[1].IP = s.Hosts[0].IP }, "twice"},
		{"bad dns", func(s *Spec) { s.DNS = []string{"dns.example"} }, "not an IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ok
			s.Hosts = slices.Clone(ok.Hosts)
			tt.mutate(&s)
			err := s.Validate()
			if (tt.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.err)) {
				t.Errorf("Validate() = %v, want error containing %q", err, tt.err)
			}
		})
	}
}
