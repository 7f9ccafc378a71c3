package host

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Policy is what the operator of a host lets the templates of the stacks
// placed on it make the agent do there. Templates are untrusted input (any
// member of any project), the agent runs as root: the executors refuse,
// when the action runs, what the policy does not allow, with an error that
// names the resource, the attribute and the flag that would allow it.
//
// The zero Policy is a remote agent's default: no local paths, no http://
// without a sha256, no source on this host or its link, host ports
// DefaultHostPorts.
type Policy struct {
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
func EmbeddedPolicy() Policy {
	return Policy{AllowLocalImages: []string{"/"}, AllowLocalSources: true, HostPorts: PortRange{Lo: 1024, Hi: ephemeralLow() - 1}}
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

// Ports is the range of host ports port forwards may use.
func (p Policy) Ports() PortRange {
	if p.HostPorts == (PortRange{}) {
		return DefaultHostPorts
	}
	return p.HostPorts
}

// Check says what is wrong with a policy.
func (p Policy) Check() error {
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

// SetPolicy sets the host's policy.
func (h *Host) SetPolicy(p Policy) error {
	if err := p.Check(); err != nil {
		return err
	}
	h.pmu.Lock()
	defer h.pmu.Unlock()
	h.policy = p
	return nil
}

// Policy is the host's policy.
func (h *Host) Policy() Policy {
	h.pmu.Lock()
	defer h.pmu.Unlock()
	p := h.policy
	p.AllowLocalImages = slices.Clone(p.AllowLocalImages)
	p.ReservedPorts = slices.Clone(p.ReservedPorts)
	return p
}

// Reserve adds ports that no port forward may use.
func (h *Host) Reserve(ports ...int) {
	h.pmu.Lock()
	defer h.pmu.Unlock()
	for _, p := range ports {
		if p > 0 && !slices.Contains(h.policy.ReservedPorts, p) {
			h.policy.ReservedPorts = append(h.policy.ReservedPorts, p)
		}
	}
}
