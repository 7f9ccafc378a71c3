package agent

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/kiln-dev/kiln/executors"
	"github.com/kiln-dev/kiln/executors/image"
	"github.com/kiln-dev/kiln/executors/portforward"
)

// HostPolicy is what the operator of a host lets the templates of the
// stacks placed on it make the agent do there. Templates are untrusted
// input (any member of any project), the agent runs as root: it refuses,
// when the action runs, what the policy does not allow, with an error that
// names the resource, the attribute and the flag that would allow it.
//
// The zero HostPolicy is a remote agent's default: no local paths, no
// http:// without a sha256, no source on this host or its link, host ports
// DefaultHostPorts.
type HostPolicy struct {
	// AllowLocalImages are the directories the local paths of templates
	// (image source, server kernel and initrd) must lie under, symbolic
	// links resolved (-allow-local-images).
	AllowLocalImages []string
	// AllowInsecureHTTP lets http:// sources without a sha256 be fetched
	// (-allow-insecure-http).
	AllowInsecureHTTP bool
	// AllowLocalSources lets sources be fetched from loopback,
	// link-local and this host's own addresses (-allow-local-sources).
	AllowLocalSources bool
	// HostPorts are the host ports port forwards may use (-host-ports);
	// the zero range is DefaultHostPorts.
	HostPorts PortRange
	// ReservedPorts are never forwarded, inside the range or not: the
	// ports of the kiln server in the same process, the ready-signal port.
	ReservedPorts []int
}

// PortRange is an inclusive range of ports.
type PortRange struct{ Lo, Hi int }

// DefaultHostPorts is a remote agent's range of host ports.
var DefaultHostPorts = PortRange{Lo: 10000, Hi: 60000}

func (r PortRange) String() string { return fmt.Sprintf("%d-%d", r.Lo, r.Hi) }

// Contains reports whether port is in the range.
func (r PortRange) Contains(port int) bool { return port >= r.Lo && port <= r.Hi }

// ParsePortRange parses "LO-HI" (or a single port).
func ParsePortRange(s string) (PortRange, error) {
	lo, hi, found := strings.Cut(strings.TrimSpace(s), "-")
	if !found {
		hi = lo
	}
	a, err1 := strconv.Atoi(strings.TrimSpace(lo))
	b, err2 := strconv.Atoi(strings.TrimSpace(hi))
	if err1 != nil || err2 != nil || a < 1 || b > 65535 || a > b {
		return PortRange{}, fmt.Errorf("port range %q: want LO-HI with 1 <= LO <= HI <= 65535", s)
	}
	return PortRange{Lo: a, Hi: b}, nil
}

// EmbeddedPolicy is the policy of the embedded default (and of a test
// agent): its templates come from the user who runs kiln on this host, with
// that user's rights, so local paths anywhere and sources on loopback (a
// test or demo serving an image on 127.0.0.1) are allowed; http:// without
// a sha256 is still refused. Host ports: the unprivileged ones below the
// kernel's ephemeral range (1024-32767 by default), so that the embedded
// server's own ports, which the kernel picks there, are never forwarded.
func EmbeddedPolicy() HostPolicy {
	return HostPolicy{AllowLocalImages: []string{"/"}, AllowLocalSources: true, HostPorts: PortRange{Lo: 1024, Hi: ephemeralLow() - 1}}
}

// ephemeralLow is the first port of the kernel's ephemeral range.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 1024 {
				return n
			}
		}
	}
	return 32768
}

func (p HostPolicy) hostPorts() PortRange {
	if p.HostPorts == (PortRange{}) {
		return DefaultHostPorts
	}
	return p.HostPorts
}

func (p HostPolicy) image() image.Policy {
	return image.Policy{AllowDirs: p.AllowLocalImages, AllowInsecureHTTP: p.AllowInsecureHTTP, AllowLocalSources: p.AllowLocalSources}
}

// Check says what is wrong with a policy.
func (p HostPolicy) Check() error {
	for _, d := range p.AllowLocalImages {
		if !strings.HasPrefix(d, "/") {
			return fmt.Errorf("-allow-local-images %q: want an absolute directory", d)
		}
	}
	if r := p.HostPorts; r != (PortRange{}) && (r.Lo < 1 || r.Hi > 65535 || r.Lo > r.Hi) {
		return fmt.Errorf("-host-ports %s: want LO-HI with 1 <= LO <= HI <= 65535", r)
	}
	return nil
}

// flagOf is the agent flag that allows what a rule of the image policy
// refused.
func flagOf(rule string) string {
	switch rule {
	case image.RuleLocalPath:
		return "the agent's -allow-local-images DIR allows local paths under DIR"
	case image.RuleInsecureHTTP:
		return "set sha256, use https://, or start the agent with -allow-insecure-http"
	case image.RuleLocalSource:
		return "the agent's -allow-local-sources allows sources on this host and its link"
	}
	return "no flag allows it"
}

// policyErr turns an image policy refusal into an error naming the
// resource, the attribute and the flag; other errors are wrapped with the
// address.
func policyErr(a executors.Instance, attr string, err error) error {
	var pe *image.PolicyError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: attribute %q: %w (%s)", a.Address, attr, err, flagOf(pe.Rule))
	}
	return fmt.Errorf("%s: %w", a.Address, err)
}

// SetPolicy sets the host policy of the real drivers.
func (r *Real) SetPolicy(p HostPolicy) error {
	if err := p.Check(); err != nil {
		return err
	}
	r.pmu.Lock()
	defer r.pmu.Unlock()
	r.policy = p
	if r.images != nil {
		r.images.SetPolicy(p.image())
	}
	return nil
}

// Policy is the host policy of the real drivers.
func (r *Real) Policy() HostPolicy {
	r.pmu.Lock()
	defer r.pmu.Unlock()
	p := r.policy
	p.AllowLocalImages = slices.Clone(p.AllowLocalImages)
	p.ReservedPorts = slices.Clone(p.ReservedPorts)
	return p
}

// ReserveHostPorts adds ports that no port forward of the drivers d may use
// (the ports of a kiln server running in the same process, known once it
// listens). It does nothing for drivers that are not the real ones.
func ReserveHostPorts(d Drivers, ports ...int) {
	r, err := realOf(d)
	if err != nil {
		return
	}
	r.pmu.Lock()
	defer r.pmu.Unlock()
	for _, p := range ports {
		if p > 0 && !slices.Contains(r.policy.ReservedPorts, p) {
			r.policy.ReservedPorts = append(r.policy.ReservedPorts, p)
		}
	}
}

// HostPorts is the host-port policy of the drivers d, as the agent reports
// it to the servers (which refuse at plan time a host port no agent the
// stack could use allows): the range port forwards may use and the
// reserved ports, sorted. ok is false for drivers that are not the real
// ones (they forward nothing on the host, so they say nothing).
func HostPorts(d Drivers) (rng PortRange, reserved []int, ok bool) {
	r, err := realOf(d)
	if err != nil {
		return PortRange{}, nil, false
	}
	p := r.Policy()
	slices.Sort(p.ReservedPorts)
	return p.hostPorts(), slices.Compact(p.ReservedPorts), true
}

// SetHostPolicy sets the policy of the drivers d when they are the real
// ones.
func SetHostPolicy(d Drivers, p HostPolicy) error {
	r, err := realOf(d)
	if err != nil {
		return nil
	}
	return r.SetPolicy(p)
}

// checkLocal checks a local path attribute (kernel, initrd) against the
// policy and returns its real path.
func (r *Real) checkLocal(a executors.Instance, attr, path string) (string, error) {
	if path == "" {
		return "", nil
	}
	real, err := r.Policy().image().CheckLocalPath(path)
	if err != nil {
		return "", policyErr(a, attr, err)
	}
	return real, nil
}

// checkForward refuses a port forward the policy does not allow: a host
// port outside the range or reserved, a target that is not the address of
// one of the stack's servers on this host, a host port another stack's
// rules hold.
func (r *Real) checkForward(a executors.Instance, s portforward.Spec) error {
	p := r.Policy()
	rng := p.hostPorts()
	switch {
	case slices.Contains(p.ReservedPorts, s.HostPort):
		return fmt.Errorf("%s: attribute \"host_port\": %d is a port of kiln itself on this host (its API, raft or ready-signal port); pick another", a.Address, s.HostPort)
	case !rng.Contains(s.HostPort):
		return fmt.Errorf("%s: attribute \"host_port\": %d is outside the host ports this agent forwards (%s; the agent's -host-ports sets them)", a.Address, s.HostPort, rng)
	}
	target, err := netip.ParseAddr(s.Target)
	if err != nil {
		return fmt.Errorf("%s: attribute \"target\": %q is not an address", a.Address, s.Target)
	}
	ok, err := r.stackAddress(a.Stack, target)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s: attribute \"target\": %s is not the address of a server of stack %s on this host; a port forward reaches only its own stack's servers (use server.NAME.address)", a.Address, target, a.Stack)
	}
	holders, err := r.pf.Holders(s.Protocol, s.HostPort)
	if err != nil {
		return fmt.Errorf("%s: %w", a.Address, err)
	}
	mine := s.Owner()
	for _, h := range holders {
		if h == mine {
			continue
		}
		if same, err := r.sameStackForward(a.Stack, h); err != nil {
			return err
		} else if !same {
			return fmt.Errorf("%s: attribute \"host_port\": %s/%d is already forwarded on this host by another stack", a.Address, s.Proto(), s.HostPort)
		}
	}
	return nil
}

// stackAddress reports whether ip is the address of a server NIC of the
// stack, as the stack's networks on this host registered it.
func (r *Real) stackAddress(stack string, ip netip.Addr) (bool, error) {
	nets, err := r.reg.List("network")
	if err != nil {
		return false, err
	}
	for _, n := range nets {
		if n.Stack != stack {
			continue
		}
		for _, h := range n.Hosts {
			if a, err := netip.ParseAddr(h.IP); err == nil && a == ip.Unmap() {
				return true, nil
			}
		}
	}
	return false, nil
}

// sameStackForward reports whether the rules owned by owner are a port
// forward of the stack (the other generation of a replace).
func (r *Real) sameStackForward(stack, owner string) (bool, error) {
	recs, err := r.reg.List("port_forward")
	if err != nil {
		return false, err
	}
	for _, rec := range recs {
		if (portforward.Spec{Stack: rec.Stack, Address: rec.Phys}).Owner() == owner {
			return rec.Stack == stack, nil
		}
	}
	return false, nil
}

// ownVolume refuses a volume id that is not a volume of the action's stack
// on this host.
func (r *Real) ownVolume(a executors.Instance, id string) error {
	rec, ok, err := r.reg.Get("volume", id)
	if err != nil {
		return fmt.Errorf("%s: attribute \"volumes\": %q is not a volume of stack %s on this host (%v); a server attaches only its own stack's volumes (volume.NAME.id)", a.Address, id, a.Stack, err)
	}
	if !ok || rec.Stack != a.Stack {
		return fmt.Errorf("%s: attribute \"volumes\": %q is not a volume of stack %s on this host; a server attaches only its own stack's volumes (volume.NAME.id)", a.Address, id, a.Stack)
	}
	return nil
}

// ownImage refuses a server image that is not the id of one of the action's
// image dependencies. The image cache is shared by every stack of the host;
// an image resource of the stack proves its source delivers those bytes
// (image.Cache.Create), so a server boots only an image its own stack
// fetched, never one it names by another project's sha256.
func ownImage(a executors.Instance, sum string) error {
	for addr, dep := range a.Deps {
		if strings.HasPrefix(addr, "image.") && dep["id"] == sum {
			return nil
		}
	}
	return fmt.Errorf("%s: attribute \"image\": %q is not the id of an image of this stack; a server boots only its own stack's images (image.NAME.id)", a.Address, sum)
}
