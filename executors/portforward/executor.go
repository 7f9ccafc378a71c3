package portforward

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"github.com/kiln-dev/kiln/executors"
	"github.com/kiln-dev/kiln/executors/host"
	"github.com/kiln-dev/kiln/executors/kinds"
	"github.com/kiln-dev/kiln/executors/records"
)

// Executor is the port_forward kind's executor (executors.Executor): DNAT
// rules in kiln's chains, refused when the host's policy does not allow
// them (checkForward). Its id is a readable name made from stack and
// address; its record is written before its rules.
type Executor struct {
	Host   *host.Host
	Driver *Driver
}

var _ executors.Executor[kinds.PortForwardAttrs] = Executor{}

// Resolve takes a target still unknown from the address of the only
// server the port forward depends on.
func (e Executor) Resolve(a executors.Instance) map[string]any {
	if _, ok := a.Attrs["target"].(string); !ok {
		if dep, ok := host.DepOfKind(a, "server"); ok {
			if t, ok := dep["address"].(string); ok && t != "" {
				return map[string]any{"target": t}
			}
		}
	}
	return nil
}

// spec is the executor's spec of the port forward at phys; with full, its
// rules too.
func (e Executor) spec(req executors.Request[kinds.PortForwardAttrs], phys string, full bool) (Spec, error) {
	s := Spec{Stack: req.Stack, Address: phys}
	if !full {
		return s, nil
	}
	if err := req.SpecErr; err != nil {
		return s, err
	}
	at := req.Spec
	s.HostPort, s.TargetPort, s.Protocol, s.Target = int(at.HostPort), int(at.TargetPort), at.Protocol, at.Target
	return s, nil
}

func (e Executor) apply(ctx context.Context, req executors.Request[kinds.PortForwardAttrs], phys string) (executors.Result, error) {
	a := req.Instance
	s, err := e.spec(req, phys, true)
	if err != nil {
		return executors.Result{}, err
	}
	if err := e.checkForward(a, s); err != nil {
		return executors.Result{}, err
	}
	id := kinds.PortForwardID(a.Stack, phys)
	if err := e.Host.Records.Put(records.Record{Kind: "port_forward", ID: id, Stack: a.Stack, Phys: phys}); err != nil {
		return executors.Result{}, err
	}
	if _, err := e.Driver.Create(ctx, s); err != nil {
		return executors.Result{}, fmt.Errorf("%s: %w", a.Address, err)
	}
	obj := executors.Result{PhysicalName: id, Attrs: e.Host.WithComputed(a, map[string]any{"id": id})}
	obj.Attrs["target"] = s.Target
	return obj, nil
}

// Create puts the rules of the action's generation in place.
func (e Executor) Create(ctx context.Context, req executors.Request[kinds.PortForwardAttrs]) (executors.Result, error) {
	a := req.Instance
	return e.apply(ctx, req, host.PhysAddress(a.Address, a.Generation))
}

// Update puts the rules of the existing instance in place as the
// attributes want them.
func (e Executor) Update(ctx context.Context, req executors.Request[kinds.PortForwardAttrs]) (executors.Result, error) {
	a := req.Instance
	phys, err := e.Host.Target("port_forward", a)
	if err != nil {
		return executors.Result{}, err
	}
	return e.apply(ctx, req, phys)
}

// Delete removes the rules and the record.
func (e Executor) Delete(ctx context.Context, req executors.Request[kinds.PortForwardAttrs]) error {
	a := req.Instance
	phys, gone, err := host.Existing(e.Host.Target("port_forward", a))
	if gone || err != nil {
		return err
	}
	s, _ := e.spec(req, phys, false)
	if err := e.Driver.Delete(ctx, s); err != nil {
		return fmt.Errorf("%s: %w", a.Address, err)
	}
	return e.Host.Records.Del("port_forward", kinds.PortForwardID(a.Stack, phys))
}

// Read says the port forward exists when all its rules are there as the
// attributes want them (a create repairs the rest); for a delete, when any
// of its rules is left.
func (e Executor) Read(ctx context.Context, req executors.Request[kinds.PortForwardAttrs]) (executors.Result, bool, error) {
	a := req.Instance
	phys, gone, err := host.Existing(e.Host.Target("port_forward", a))
	if gone || err != nil {
		return executors.Result{}, false, err
	}
	s, err := e.spec(req, phys, true)
	if err != nil {
		return executors.Result{}, false, err
	}
	st, err := e.Driver.Read(ctx, s)
	if gone, err := host.Absent(err); gone || err != nil {
		return executors.Result{}, false, err
	}
	if a.Op != executors.OpDelete && !st.Exact {
		return executors.Result{}, false, nil
	}
	id := kinds.PortForwardID(a.Stack, phys)
	obj := executors.Result{PhysicalName: id, Attrs: e.Host.WithComputed(a, map[string]any{"id": id})}
	obj.Attrs["target"] = s.Target
	return obj, true, nil
}

// checkForward refuses a port forward the policy does not allow: a host
// port outside the range or reserved, a target that is not the address of
// one of the stack's servers on this host, a host port another stack's
// rules hold.
func (e Executor) checkForward(a executors.Instance, s Spec) error {
	p := e.Host.Policy()
	rng := p.Ports()
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
	ok, err := e.Host.StackAddress(a.Stack, target)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s: attribute \"target\": %s is not the address of a server of stack %s on this host; a port forward reaches only its own stack's servers (use server.NAME.address)", a.Address, target, a.Stack)
	}
	holders, err := e.Driver.Holders(s.Protocol, s.HostPort)
	if err != nil {
		return fmt.Errorf("%s: %w", a.Address, err)
	}
	mine := s.Owner()
	for _, h := range holders {
		if h == mine {
			continue
		}
		if same, err := e.sameStackForward(a.Stack, h); err != nil {
			return err
		} else if !same {
			return fmt.Errorf("%s: attribute \"host_port\": %s/%d is already forwarded on this host by another stack", a.Address, s.Proto(), s.HostPort)
		}
	}
	return nil
}

// sameStackForward reports whether the rules owned by owner are a port
// forward of the stack (the other generation of a replace).
func (e Executor) sameStackForward(stack, owner string) (bool, error) {
	recs, err := e.Host.Records.List("port_forward")
	if err != nil {
		return false, err
	}
	for _, rec := range recs {
		if (Spec{Stack: rec.Stack, Address: rec.Phys}).Owner() == owner {
			return rec.Stack == stack, nil
		}
	}
	return false, nil
}
