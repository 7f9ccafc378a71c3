package agent

import (
	"slices"

	"github.com/kiln-dev/kiln/executors/host"
	"github.com/kiln-dev/kiln/executors/image"
)

// HostPolicy is what the operator of a host lets the templates of the
// stacks placed on it make the agent do there (host.Policy); PortRange an
// inclusive range of ports.
type (
	HostPolicy = host.Policy
	PortRange  = host.PortRange
)

// DefaultHostPorts is a remote agent's range of host ports.
var DefaultHostPorts = host.DefaultHostPorts

// ParsePortRange parses "LO-HI" (or a single port).
func ParsePortRange(s string) (PortRange, error) { return host.ParsePortRange(s) }

// EmbeddedPolicy is the policy of the embedded default (and of a test
// agent; host.EmbeddedPolicy).
func EmbeddedPolicy() HostPolicy { return host.EmbeddedPolicy() }

// imagePolicy is the part of p the image cache enforces.
func imagePolicy(p HostPolicy) image.Policy {
	return image.Policy{AllowDirs: p.AllowLocalImages, AllowInsecureHTTP: p.AllowInsecureHTTP, AllowLocalSources: p.AllowLocalSources}
}

// SetPolicy sets the host policy of the real drivers.
func (r *Real) SetPolicy(p HostPolicy) error {
	r.pmu.Lock()
	defer r.pmu.Unlock()
	if err := r.h.SetPolicy(p); err != nil {
		return err
	}
	if r.images != nil {
		r.images.SetPolicy(imagePolicy(p))
	}
	return nil
}

// Policy is the host policy of the real drivers.
func (r *Real) Policy() HostPolicy { return r.h.Policy() }

// ReserveHostPorts adds ports that no port forward of the drivers d may use
// (the ports of a kiln server running in the same process, known once it
// listens). It does nothing for drivers that are not the real ones.
func ReserveHostPorts(d Drivers, ports ...int) {
	r, err := realOf(d)
	if err != nil {
		return
	}
	r.h.Reserve(ports...)
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
	return p.Ports(), slices.Compact(p.ReservedPorts), true
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
