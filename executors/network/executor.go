package network

import (
	"context"
	"fmt"

	"github.com/kiln-dev/kiln/executors"
	"github.com/kiln-dev/kiln/executors/host"
	"github.com/kiln-dev/kiln/executors/kinds"
	"github.com/kiln-dev/kiln/executors/records"
)

// Executor is the network kind's executor (executors.Executor): a bridge,
// dnsmasq and iptables rules. Its id is the bridge's name. The network's
// record (executors/records) holds its configuration and the DHCP hosts
// the servers on it registered, so every create and update hands dnsmasq
// the full host list.
type Executor struct {
	Host   *host.Host
	Driver *Driver
}

var _ executors.Executor[kinds.NetworkAttrs] = Executor{}

// netConfig fills rec's configuration from the request's attributes.
func netConfig(req executors.Request[kinds.NetworkAttrs], rec *records.Record) error {
	if err := req.SpecErr; err != nil {
		return err
	}
	at := req.Spec
	rec.CIDR, rec.NAT, rec.DHCP, rec.DNS = at.CIDR, at.NAT, at.DHCP, at.DNS
	return nil
}

func (e Executor) result(a executors.Instance, rec records.Record, st State) executors.Result {
	c := map[string]any{"id": rec.ID, "bridge": st.Bridge}
	if gw, err := Gateway(rec.CIDR); err == nil {
		c["gateway"] = gw.Addr().String()
	}
	return executors.Result{PhysicalName: st.Bridge, Attrs: e.Host.WithComputed(a, c)}
}

func (e Executor) apply(ctx context.Context, req executors.Request[kinds.NetworkAttrs], phys string, create bool) (executors.Result, error) {
	a := req.Instance
	id := BridgeName(a.Stack, phys)
	defer e.Host.Lock(id)()
	rec, _, err := e.Host.Records.Get("network", id)
	if err != nil {
		return executors.Result{}, err
	}
	rec.Kind, rec.ID, rec.Stack, rec.Phys = "network", id, a.Stack, phys
	if err := netConfig(req, &rec); err != nil {
		return executors.Result{}, err
	}
	if err := e.Host.Records.Put(rec); err != nil {
		return executors.Result{}, err
	}
	var st State
	if create {
		st, err = e.Driver.Create(ctx, SpecOf(rec))
	} else {
		st, err = e.Driver.Update(ctx, SpecOf(rec))
	}
	if err != nil {
		return executors.Result{}, fmt.Errorf("%s: %w", a.Address, err)
	}
	return e.result(a, rec, st), nil
}

// Create makes the network of the action's generation.
func (e Executor) Create(ctx context.Context, req executors.Request[kinds.NetworkAttrs]) (executors.Result, error) {
	a := req.Instance
	return e.apply(ctx, req, host.PhysAddress(a.Address, a.Generation), true)
}

// Update changes the existing network in place.
func (e Executor) Update(ctx context.Context, req executors.Request[kinds.NetworkAttrs]) (executors.Result, error) {
	a := req.Instance
	phys, err := e.Host.Target("network", a)
	if err != nil {
		return executors.Result{}, err
	}
	return e.apply(ctx, req, phys, false)
}

// Delete removes the network and its record.
func (e Executor) Delete(ctx context.Context, req executors.Request[kinds.NetworkAttrs]) error {
	a := req.Instance
	phys, gone, err := host.Existing(e.Host.Target("network", a))
	if gone || err != nil {
		return err
	}
	id := BridgeName(a.Stack, phys)
	defer e.Host.Lock(id)()
	if err := e.Driver.Delete(ctx, Spec{Stack: a.Stack, Address: phys}); err != nil {
		return fmt.Errorf("%s: %w", a.Address, err)
	}
	return e.Host.Records.Del("network", id)
}

// Read returns the network as the host has it: exists is false when its
// bridge is gone; nat and dhcp say what is really running.
func (e Executor) Read(ctx context.Context, req executors.Request[kinds.NetworkAttrs]) (executors.Result, bool, error) {
	a := req.Instance
	phys, gone, err := host.Existing(e.Host.Target("network", a))
	if gone || err != nil {
		return executors.Result{}, false, err
	}
	id := BridgeName(a.Stack, phys)
	rec, ok, err := e.Host.Records.Get("network", id)
	if err != nil {
		return executors.Result{}, false, err
	}
	if !ok {
		rec = records.Record{Kind: "network", ID: id, Stack: a.Stack, Phys: phys}
		if err := netConfig(req, &rec); err != nil {
			return executors.Result{}, false, err
		}
	}
	st, err := e.Driver.Read(ctx, SpecOf(rec))
	if gone, err := host.Absent(err); gone || err != nil {
		return executors.Result{}, false, err
	}
	obj := e.result(a, rec, st)
	obj.Attrs["nat"] = st.NAT
	// dhcp is on when dnsmasq runs: the configuration the record wants
	// when DHCP is on, any at all when it is off.
	obj.Attrs["dhcp"] = st.DHCP || (!rec.DHCP && st.DnsmasqPID != 0)
	return obj, true, nil
}
