// Package network is the executor of kiln's network resource: a Linux bridge
// made through netlink with the network's gateway address on it, a dnsmasq
// per network serving a fixed address to each server's MAC, and iptables
// rules (MASQUERADE for NAT, forwarding, isolation from the other networks)
// in kiln's own chains, each tagged with the network's owner.
//
// Everything happens in the network namespace of the calling process.
// Only IPv4 is handled.
package network

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/kiln-dev/kiln/executors"
	"github.com/kiln-dev/kiln/executors/kinds"
	"github.com/kiln-dev/kiln/executors/records"
	"github.com/vishvananda/netlink"
)

// Spec is the desired state of one network.
type Spec struct {
	Stack   string
	Address string // resource address, "network.lan"
	CIDR    string // "10.20.0.0/24"; the gateway is its first host
	NAT     bool   // MASQUERADE egress through the host
	DHCP    bool   // run dnsmasq handing out Hosts' fixed addresses
	// DNS lists upstream resolvers. When it is not empty dnsmasq also
	// serves DNS on the gateway address (forwarding to them) and hands the
	// gateway out as the resolver; when empty dnsmasq serves no DNS.
	DNS   []string
	Hosts []Host
}

// Host is a fixed DHCP address for one MAC.
type Host struct {
	MAC      string
	IP       string
	Hostname string
}

// State is what is really on the host for a network.
type State struct {
	Bridge  string // the bridge's name
	Owner   string // the owner tag in the bridge's alias
	Gateway string // the gateway address with its prefix when it is on the bridge, else ""
	Up      bool   // the bridge is up
	// DnsmasqPID is the pid of a dnsmasq running for this network (0: none).
	DnsmasqPID int
	// DHCP is true when that dnsmasq runs the configuration the spec wants.
	DHCP  bool
	Hosts []Host // the hosts file dnsmasq reads
	NAT   bool   // the MASQUERADE rule is present
	// Firewall is true when the network's rules are exactly those the spec wants.
	Firewall bool
}

// Drift lists, one sentence each, how st differs from what spec wants.
// Empty means in sync.
func (st State) Drift(spec Spec) []string {
	var d []string
	gw, err := spec.gateway()
	if err == nil && st.Gateway != gw.String() {
		d = append(d, fmt.Sprintf("bridge %s lacks gateway address %s", st.Bridge, gw))
	}
	if !st.Up {
		d = append(d, fmt.Sprintf("bridge %s is down", st.Bridge))
	}
	if spec.DHCP && !st.DHCP {
		if st.DnsmasqPID == 0 {
			d = append(d, "dnsmasq is not running")
		} else {
			d = append(d, "dnsmasq runs an old configuration")
		}
	}
	if !spec.DHCP && st.DnsmasqPID != 0 {
		d = append(d, "dnsmasq runs but DHCP is off")
	}
	if spec.DHCP && !slices.Equal(st.Hosts, sortedHosts(spec.Hosts)) {
		d = append(d, "DHCP hosts differ")
	}
	if spec.NAT != st.NAT {
		d = append(d, fmt.Sprintf("NAT is %v, want %v", st.NAT, spec.NAT))
	}
	if !st.Firewall {
		d = append(d, "iptables rules differ")
	}
	return d
}

// Driver makes networks. The zero value is not usable: set DataDir.
type Driver struct {
	// DataDir holds each network's dnsmasq files under networks/<name>/.
	DataDir string
	// IPTables defaults to the system's IPv4 iptables (NewIPTables).
	IPTables IPTables
	// Dnsmasq is the dnsmasq binary; "" looks it up in PATH.
	Dnsmasq string
	// GuestPorts are the TCP ports of the host that guests may reach on
	// their network's gateway (the ready-signal listener). Everything else
	// a guest sends to the host itself (besides DHCP and DNS) is refused,
	// so no template can make a guest reach the host's own services: SSH,
	// kiln's API and its unauthenticated raft port.
	GuestPorts []int

	once sync.Once
	ipt  IPTables
	err  error
}

func (d *Driver) iptables() (IPTables, error) {
	d.once.Do(func() {
		if d.IPTables != nil {
			d.ipt = d.IPTables
			return
		}
		d.ipt, d.err = NewIPTables()
	})
	return d.ipt, d.err
}

// BridgePrefix starts the name of every bridge kiln makes; iptables matches
// all of them with "kb-+".
const BridgePrefix = kinds.BridgePrefix

// BridgeName is the bridge's name for a network (kinds.BridgeName): at most
// 15 bytes (the kernel's limit), readable, deterministic.
func BridgeName(stack, address string) string { return kinds.BridgeName(stack, address) }

// Dir is where the network's dnsmasq files live.
func (d *Driver) Dir(spec Spec) string {
	return filepath.Join(d.DataDir, "networks", executors.PhysicalName(spec.Stack, spec.Address, 64))
}

// LeaseFile is the network's dnsmasq lease file: a line
// "EXPIRY MAC IP HOSTNAME CLIENT-ID" per lease given.
func (d *Driver) LeaseFile(spec Spec) string {
	return filepath.Join(d.Dir(spec), "dnsmasq.leases")
}

func (s Spec) owner() string { return executors.Owner(s.Stack, s.Address) }

func (s Spec) prefix() (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s.CIDR)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("network %s: cidr %q is not an IPv4 CIDR", s.Address, s.CIDR)
	}
	if p.Bits() > 30 {
		return netip.Prefix{}, fmt.Errorf("network %s: cidr %s has no room for a gateway and a guest", s.Address, s.CIDR)
	}
	return p.Masked(), nil
}

// gateway is the first host address, with the network's prefix length.
func (s Spec) gateway() (netip.Prefix, error) {
	p, err := s.prefix()
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(p.Addr().Next(), p.Bits()), nil
}

var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

// Validate checks a spec before anything is made.
func (s Spec) Validate() error {
	if s.Stack == "" || s.Address == "" {
		return errors.New("network: stack and address are required")
	}
	p, err := s.prefix()
	if err != nil {
		return err
	}
	gw, _ := s.gateway()
	seenMAC := map[string]bool{}
	seenIP := map[netip.Addr]bool{}
	for _, h := range s.Hosts {
		mac, err := net.ParseMAC(h.MAC)
		if err != nil || len(mac) != 6 {
			return fmt.Errorf("network %s: host MAC %q is not a MAC address", s.Address, h.MAC)
		}
		ip, err := netip.ParseAddr(h.IP)
		if err != nil || !p.Contains(ip) || ip == gw.Addr() || ip == p.Addr() || ip == lastAddr(p) {
			return fmt.Errorf("network %s: host %s address %q is not a guest address of %s", s.Address, h.MAC, h.IP, p)
		}
		if h.Hostname != "" && !hostnameRE.MatchString(h.Hostname) {
			return fmt.Errorf("network %s: host %s hostname %q is not a valid hostname", s.Address, h.MAC, h.Hostname)
		}
		if seenMAC[mac.String()] || seenIP[ip] {
			return fmt.Errorf("network %s: host %s %s appears twice", s.Address, h.MAC, h.IP)
		}
		seenMAC[mac.String()], seenIP[ip] = true, true
	}
	for _, ns := range s.DNS {
		if _, err := netip.ParseAddr(ns); err != nil {
			return fmt.Errorf("network %s: dns server %q is not an IP address", s.Address, ns)
		}
	}
	return nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	v := binary.BigEndian.Uint32(a[:]) | (1<<(32-p.Bits()) - 1)
	binary.BigEndian.PutUint32(a[:], v)
	return netip.AddrFrom4(a)
}

// bridgeMAC is a fixed, locally administered MAC for the bridge, so the
// gateway's MAC does not change as guests come and go.
func bridgeMAC(owner string) net.HardwareAddr {
	sum := sha256.Sum256([]byte(owner))
	return net.HardwareAddr{0x02, sum[0], sum[1], sum[2], sum[3], sum[4]}
}

// Read returns what is on the host for spec's network; an error wrapping
// executors.ErrNotFound when its bridge is absent.
func (d *Driver) Read(ctx context.Context, spec Spec) (State, error) {
	return d.read(ctx, spec, false)
}

// read is Read; synced says the network's rules were just made exactly
// spec's (SyncRules succeeded), so they are not read again.
func (d *Driver) read(ctx context.Context, spec Spec, synced bool) (State, error) {
	st := State{Bridge: BridgeName(spec.Stack, spec.Address)}
	if err := spec.Validate(); err != nil {
		return st, err
	}
	link, err := netlink.LinkByName(st.Bridge)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return st, fmt.Errorf("network %s: bridge %s: %w", spec.Address, st.Bridge, executors.ErrNotFound)
		}
		return st, fmt.Errorf("network %s: bridge %s: %w", spec.Address, st.Bridge, err)
	}
	st.Owner = link.Attrs().Alias
	if st.Owner != spec.owner() && st.Owner != "" {
		return st, fmt.Errorf("network %s: bridge %s belongs to %s", spec.Address, st.Bridge, st.Owner)
	}
	st.Up = link.Attrs().Flags&net.FlagUp != 0
	gw, _ := spec.gateway()
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return st, fmt.Errorf("network %s: addresses of %s: %w", spec.Address, st.Bridge, err)
	}
	for _, a := range addrs {
		if ones, _ := a.Mask.Size(); a.IP.String() == gw.Addr().String() && ones == gw.Bits() {
			st.Gateway = gw.String()
		}
	}

	dm := d.dnsmasq(spec)
	pid, conf, err := dm.running()
	if err != nil {
		return st, err
	}
	st.DnsmasqPID = pid
	if spec.DHCP {
		want, err := dm.confPath()
		if err != nil {
			return st, err
		}
		st.DHCP = pid != 0 && conf == want
	}
	if st.Hosts, err = dm.readHosts(); err != nil {
		return st, err
	}

	if synced {
		st.NAT, st.Firewall = spec.NAT, true
		return st, nil
	}
	ipt, err := d.iptables()
	if err != nil {
		return st, err
	}
	if st.NAT, st.Firewall, err = checkRules(ipt, spec.owner(), rulesFor(spec, st.Bridge, d.GuestPorts), spec.NAT); err != nil {
		return st, fmt.Errorf("network %s: %w", spec.Address, err)
	}
	return st, nil
}

// Create makes the network, or adopts and repairs what already exists: the
// bridge, its gateway address, the iptables rules and dnsmasq. Repeating it
// changes nothing. The state it returns is read from the host, but for the
// iptables rules: SyncRules has just made them exactly the spec's in one
// transaction, so they are not listed again.
func (d *Driver) Create(ctx context.Context, spec Spec) (State, error) {
	if err := d.apply(ctx, spec, true); err != nil {
		st, _ := d.Read(ctx, spec)
		return st, err
	}
	return d.read(ctx, spec, true)
}

// Update brings an existing network to spec: hosts (dnsmasq re-reads its
// hosts file on SIGHUP), DNS (dnsmasq restarts), NAT and DHCP toggles, and
// repairs whatever else drifted. The network must exist (ErrNotFound).
func (d *Driver) Update(ctx context.Context, spec Spec) (State, error) {
	if err := d.apply(ctx, spec, false); err != nil {
		st, _ := d.Read(ctx, spec)
		return st, err
	}
	return d.read(ctx, spec, true)
}

func (d *Driver) apply(ctx context.Context, spec Spec, create bool) error {
	if err := spec.Validate(); err != nil {
		return err
	}
	if d.DataDir == "" {
		return errors.New("network: driver has no DataDir")
	}
	ipt, err := d.iptables()
	if err != nil {
		return err
	}
	name := BridgeName(spec.Stack, spec.Address)
	made, err := ensureBridge(spec, name, create)
	if err != nil {
		return err
	}
	if err := enableForwarding(); err != nil {
		return fmt.Errorf("network %s: %w", spec.Address, err)
	}
	if err := SyncRules(ipt, spec.owner(), rulesFor(spec, name, d.GuestPorts), false); err != nil {
		return fmt.Errorf("network %s: %w", spec.Address, err)
	}
	dm := d.dnsmasq(spec)
	if !spec.DHCP {
		return dm.remove(ctx)
	}
	if made {
		// A dnsmasq that outlived its bridge listens on a dead interface.
		if err := dm.stop(ctx); err != nil {
			return err
		}
	}
	return dm.ensure(ctx)
}

// ensureBridge makes (or adopts) the bridge with its owner alias, fixed
// MAC and gateway address, and sets it up. made says it had to be made.
func ensureBridge(spec Spec, name string, create bool) (made bool, err error) {
	owner := spec.owner()
	gw, err := spec.gateway()
	if err != nil {
		return made, err
	}
	link, err := netlink.LinkByName(name)
	var nf netlink.LinkNotFoundError
	switch {
	case errors.As(err, &nf) && !create:
		return made, fmt.Errorf("network %s: bridge %s: %w", spec.Address, name, executors.ErrNotFound)
	case errors.As(err, &nf):
		la := netlink.NewLinkAttrs()
		la.Name = name
		la.HardwareAddr = bridgeMAC(owner)
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: la}); err != nil && !errors.Is(err, os.ErrExist) {
			return made, fmt.Errorf("network %s: add bridge %s: %w", spec.Address, name, err)
		}
		made = true
		if link, err = netlink.LinkByName(name); err != nil {
			return made, fmt.Errorf("network %s: bridge %s: %w", spec.Address, name, err)
		}
	case err != nil:
		return made, fmt.Errorf("network %s: bridge %s: %w", spec.Address, name, err)
	}
	if link.Type() != "bridge" {
		return made, fmt.Errorf("network %s: %s exists and is a %s, not a bridge", spec.Address, name, link.Type())
	}
	switch alias := link.Attrs().Alias; alias {
	case owner:
	case "": // just made (the kernel takes no alias at creation), or adopted
		if err := netlink.LinkSetAlias(link, owner); err != nil {
			return made, fmt.Errorf("network %s: tag bridge %s: %w", spec.Address, name, err)
		}
	default:
		return made, fmt.Errorf("network %s: bridge %s belongs to %s", spec.Address, name, alias)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return made, fmt.Errorf("network %s: addresses of %s: %w", spec.Address, name, err)
	}
	have := false
	for _, a := range addrs {
		ones, _ := a.Mask.Size()
		if a.IP.String() == gw.Addr().String() && ones == gw.Bits() {
			have = true
			continue
		}
		// kiln owns the bridge: an address it did not ask for (an old CIDR) goes.
		if err := netlink.AddrDel(link, &a); err != nil {
			return made, fmt.Errorf("network %s: remove old address %s from %s: %w", spec.Address, a.IPNet, name, err)
		}
	}
	if !have {
		addr, err := netlink.ParseAddr(gw.String())
		if err != nil {
			return made, err
		}
		if err := netlink.AddrAdd(link, addr); err != nil && !errors.Is(err, os.ErrExist) {
			return made, fmt.Errorf("network %s: gateway %s on %s: %w", spec.Address, gw, name, err)
		}
	}
	// kiln's networks are IPv4 only: without IPv6 on the bridge a guest
	// cannot reach the host's services over a link-local address either
	// (ip6tables has no rules of kiln's).
	if err := disableIPv6(name); err != nil {
		return made, fmt.Errorf("network %s: %w", spec.Address, err)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(link); err != nil {
			return made, fmt.Errorf("network %s: set %s up: %w", spec.Address, name, err)
		}
	}
	return made, nil
}

// Delete removes the network: dnsmasq and its files, the network's iptables
// rules and the bridge. Deleting a network that is gone succeeds.
func (d *Driver) Delete(ctx context.Context, spec Spec) error {
	if spec.Stack == "" || spec.Address == "" {
		return errors.New("network: stack and address are required")
	}
	name := BridgeName(spec.Stack, spec.Address)
	link, err := netlink.LinkByName(name)
	var nf netlink.LinkNotFoundError
	switch {
	case errors.As(err, &nf):
		link = nil
	case err != nil:
		return fmt.Errorf("network %s: bridge %s: %w", spec.Address, name, err)
	case link.Attrs().Alias != "" && link.Attrs().Alias != spec.owner():
		return fmt.Errorf("network %s: bridge %s belongs to %s, not deleting it", spec.Address, name, link.Attrs().Alias)
	}
	if d.DataDir != "" {
		if err := d.dnsmasq(spec).remove(ctx); err != nil {
			return err
		}
	}
	ipt, err := d.iptables()
	if err != nil {
		return err
	}
	if err := SyncRules(ipt, spec.owner(), nil, false); err != nil {
		return fmt.Errorf("network %s: %w", spec.Address, err)
	}
	if link != nil {
		if err := netlink.LinkDel(link); err != nil {
			var nf netlink.LinkNotFoundError
			if !errors.As(err, &nf) {
				return fmt.Errorf("network %s: delete bridge %s: %w", spec.Address, name, err)
			}
		}
	}
	return nil
}

// enableForwarding turns on IPv4 forwarding in the current namespace. It is
// never turned off again: other networks and the host may rely on it.
func enableForwarding() error {
	const path = "/proc/sys/net/ipv4/ip_forward"
	b, err := os.ReadFile(path)
	if err == nil && strings.TrimSpace(string(b)) == "1" {
		return nil
	}
	if err := os.WriteFile(path, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("enable ip_forward: %w", err)
	}
	return nil
}

// disableIPv6 turns IPv6 off on a bridge (a no-op when the kernel has no
// IPv6 at all).
func disableIPv6(bridge string) error {
	path := filepath.Join("/proc/sys/net/ipv6/conf", bridge, "disable_ipv6")
	cur, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ipv6 of %s: %w", bridge, err)
	}
	if strings.TrimSpace(string(cur)) == "1" {
		return nil
	}
	if err := os.WriteFile(path, []byte("1"), 0o644); err != nil {
		return fmt.Errorf("turn off ipv6 on %s: %w", bridge, err)
	}
	return nil
}

// SpecOf is the spec of the network whose record is rec: its configuration
// and the fixed DHCP hosts the servers on it registered.
func SpecOf(rec records.Record) Spec {
	s := Spec{Stack: rec.Stack, Address: rec.Phys, CIDR: rec.CIDR, NAT: rec.NAT, DHCP: rec.DHCP, DNS: rec.DNS}
	for _, h := range rec.Hosts {
		s.Hosts = append(s.Hosts, Host{MAC: h.MAC, IP: h.IP, Hostname: h.Hostname})
	}
	return s
}
