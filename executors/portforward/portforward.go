// Package portforward is the executor of kiln's port_forward resource: DNAT
// from a port of the host to target:target_port, for traffic that arrives
// from outside (KILN-PREROUTING) and for traffic from the host itself
// (KILN-OUTPUT), plus the accept in KILN-FORWARD. Every rule is in kiln's
// chains (see package network) and commented with the owner.
//
// Only packets addressed to one of the host's own addresses are forwarded
// (-m addrtype --dst-type LOCAL), so a guest talking to port 8080 of some
// other machine is never redirected.
//
// Loopback: connecting to 127.0.0.1:host_port from the host works too. The
// DNAT keeps the source 127.0.0.1, which the kernel only routes out of a
// non-loopback device with net.ipv4.conf.<dev>.route_localnet=1, so Create
// sets it on the device that routes to the target (the network's bridge,
// not "all"), and a MASQUERADE in KILN-POSTROUTING gives the packets a
// source the guest can answer. route_localnet is never turned off again: the
// bridge's other forwards may rely on it, and the bridge goes with its
// network.
//
// Not handled: a guest reaching a forward of its own network through the
// host's address (hairpin NAT).
package portforward

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/kiln-dev/kiln/executors"
	"github.com/kiln-dev/kiln/executors/network"
	"github.com/vishvananda/netlink"
)

// Spec is one port forward.
type Spec struct {
	Stack      string
	Address    string // resource address, "port_forward.http"
	HostPort   int
	Protocol   string // "tcp" (default) or "udp"
	Target     string // an IPv4 address, usually a guest's
	TargetPort int
}

// State is what is on the host for a port forward.
type State struct {
	Rules int // rules tagged with the owner
	// Exact is true when the rules are exactly those the spec wants.
	Exact bool
	// Loopback is true when route_localnet is on for the device that
	// routes to the target, so 127.0.0.1:host_port is forwarded too.
	Loopback bool
}

// Drift lists how st differs from the spec it was read for.
func (st State) Drift() []string {
	var d []string
	if !st.Exact {
		d = append(d, "iptables rules differ")
	}
	if !st.Loopback {
		d = append(d, "route_localnet is off on the target's device")
	}
	return d
}

// Driver makes port forwards.
type Driver struct {
	// IPTables defaults to the system's IPv4 iptables.
	IPTables network.IPTables

	once sync.Once
	ipt  network.IPTables
	err  error
}

func (d *Driver) iptables() (network.IPTables, error) {
	d.once.Do(func() {
		if d.IPTables != nil {
			d.ipt = d.IPTables
			return
		}
		d.ipt, d.err = network.NewIPTables()
	})
	return d.ipt, d.err
}

func (s Spec) owner() string { return executors.Owner(s.Stack, s.Address) }

// Owner is the comment that tags the port forward's rules.
func (s Spec) Owner() string { return s.owner() }

// Proto is the protocol, "tcp" when not set.
func (s Spec) Proto() string { return s.proto() }

func (s Spec) proto() string {
	if s.Protocol == "" {
		return "tcp"
	}
	return s.Protocol
}

// Validate checks a spec before anything is made.
func (s Spec) Validate() error {
	if s.Stack == "" || s.Address == "" {
		return errors.New("port_forward: stack and address are required")
	}
	if p := s.proto(); p != "tcp" && p != "udp" {
		return fmt.Errorf("port_forward %s: protocol %q is neither tcp nor udp", s.Address, s.Protocol)
	}
	for _, p := range []struct {
		name string
		port int
	}{{"host_port", s.HostPort}, {"target_port", s.TargetPort}} {
		if p.port < 1 || p.port > 65535 {
			return fmt.Errorf("port_forward %s: %s %d is not a port (1-65535)", s.Address, p.name, p.port)
		}
	}
	a, err := netip.ParseAddr(s.Target)
	if err != nil || !a.Is4() || a.IsLoopback() || a.IsUnspecified() {
		return fmt.Errorf("port_forward %s: target %q is not an IPv4 guest address", s.Address, s.Target)
	}
	return nil
}

// Rules is the port forward's iptables rules, without the owner comment.
func (s Spec) Rules() []network.Rule {
	p, hp, tp := s.proto(), strconv.Itoa(s.HostPort), strconv.Itoa(s.TargetPort)
	dest := net.JoinHostPort(s.Target, tp)
	dnat := []string{"-p", p, "-m", "addrtype", "--dst-type", "LOCAL", "-m", p, "--dport", hp, "-j", "DNAT", "--to-destination", dest}
	return []network.Rule{
		{Table: "nat", Chain: network.ChainPrerouting, Spec: dnat},
		{Table: "nat", Chain: network.ChainOutput, Spec: dnat},
		{Table: "nat", Chain: network.ChainPostrouting, Spec: []string{"-s", "127.0.0.0/8", "-d", s.Target + "/32", "-p", p, "-m", p, "--dport", tp, "-j", "MASQUERADE"}},
		{Table: "filter", Chain: network.ChainForward, Spec: []string{"-d", s.Target + "/32", "-p", p, "-m", p, "--dport", tp, "-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT"}},
	}
}

// Read returns the port forward's state; an error wrapping
// executors.ErrNotFound when none of its rules is there.
func (d *Driver) Read(ctx context.Context, spec Spec) (State, error) {
	var st State
	if err := spec.Validate(); err != nil {
		return st, err
	}
	ipt, err := d.iptables()
	if err != nil {
		return st, err
	}
	st.Rules, st.Exact, err = network.CheckRules(ipt, spec.owner(), spec.Rules())
	if err != nil {
		return st, fmt.Errorf("port_forward %s: %w", spec.Address, err)
	}
	if st.Rules == 0 {
		return st, fmt.Errorf("port_forward %s: %w", spec.Address, executors.ErrNotFound)
	}
	if dev, err := routeDevice(spec.Target); err == nil {
		st.Loopback = readSysctl("net/ipv4/conf/"+dev+"/route_localnet") == "1"
	}
	return st, nil
}

// Create adds the port forward's rules (at the top of kiln's chains, above
// the networks' isolation rules) or repairs them; repeating it changes
// nothing.
func (d *Driver) Create(ctx context.Context, spec Spec) (State, error) {
	if err := spec.Validate(); err != nil {
		return State{}, err
	}
	ipt, err := d.iptables()
	if err != nil {
		return State{}, err
	}
	if err := network.SyncRules(ipt, spec.owner(), spec.Rules(), true); err != nil {
		st, _ := d.Read(ctx, spec)
		return st, fmt.Errorf("port_forward %s: %w", spec.Address, err)
	}
	dev, err := routeDevice(spec.Target)
	if err != nil {
		st, _ := d.Read(ctx, spec)
		return st, fmt.Errorf("port_forward %s: %w", spec.Address, err)
	}
	if dev != "lo" {
		if err := writeSysctl("net/ipv4/conf/"+dev+"/route_localnet", "1"); err != nil {
			st, _ := d.Read(ctx, spec)
			return st, fmt.Errorf("port_forward %s: %w", spec.Address, err)
		}
	}
	return d.Read(ctx, spec)
}

// Update makes the port forward what spec says; its rules are replaced.
func (d *Driver) Update(ctx context.Context, spec Spec) (State, error) {
	return d.Create(ctx, spec)
}

// Delete removes every rule of the port forward. Deleting one that is gone
// succeeds.
func (d *Driver) Delete(ctx context.Context, spec Spec) error {
	if spec.Stack == "" || spec.Address == "" {
		return errors.New("port_forward: stack and address are required")
	}
	ipt, err := d.iptables()
	if err != nil {
		return err
	}
	if err := network.SyncRules(ipt, spec.owner(), nil, true); err != nil {
		return fmt.Errorf("port_forward %s: %w", spec.Address, err)
	}
	return nil
}

// routeDevice is the name of the device the kernel routes target through.
func routeDevice(target string) (string, error) {
	routes, err := netlink.RouteGet(net.ParseIP(target))
	if err != nil || len(routes) == 0 {
		return "", fmt.Errorf("no route to target %s: %v", target, err)
	}
	l, err := netlink.LinkByIndex(routes[0].LinkIndex)
	if err != nil {
		return "", fmt.Errorf("device routing to %s: %w", target, err)
	}
	return l.Attrs().Name, nil
}

func readSysctl(name string) string {
	b, _ := os.ReadFile("/proc/sys/" + name)
	return strings.TrimSpace(string(b))
}

func writeSysctl(name, value string) error {
	if readSysctl(name) == value {
		return nil
	}
	if err := os.WriteFile("/proc/sys/"+name, []byte(value+"\n"), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", strings.ReplaceAll(name, "/", "."), value, err)
	}
	return nil
}

// Holders returns the owners of the DNAT rules in KILN-PREROUTING that
// forward a host port (protocol "" is tcp), sorted, without repeats.
func (d *Driver) Holders(protocol string, port int) ([]string, error) {
	ipt, err := d.iptables()
	if err != nil {
		return nil, err
	}
	ok, err := ipt.ChainExists("nat", network.ChainPrerouting)
	if err != nil || !ok {
		return nil, err
	}
	lines, err := ipt.List("nat", network.ChainPrerouting)
	if err != nil {
		return nil, fmt.Errorf("iptables -t nat -S %s: %w", network.ChainPrerouting, err)
	}
	proto := Spec{Protocol: protocol}.proto()
	var out []string
	for _, l := range lines {
		f := strings.Fields(l)
		if !slices.Contains(f, "DNAT") || flagValue(f, "-p") != proto || flagValue(f, "--dport") != strconv.Itoa(port) {
			continue
		}
		if o := network.Comment(l); o != "" && !slices.Contains(out, o) {
			out = append(out, o)
		}
	}
	slices.Sort(out)
	return out, nil
}

// flagValue is the word after flag in an iptables -S line.
func flagValue(fields []string, flag string) string {
	if i := slices.Index(fields, flag); i >= 0 && i+1 < len(fields) {
		return fields[i+1]
	}
	return ""
}
