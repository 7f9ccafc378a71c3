package agent

import (
	"context"
	"fmt"
	"strings"

	"github.com/kiln-dev/kiln/executors"
	"github.com/kiln-dev/kiln/executors/kinds"
	"github.com/kiln-dev/kiln/executors/network"
	"github.com/kiln-dev/kiln/spec"
)

// realNetwork serves the network kind: a bridge, dnsmasq and iptables rules.
// Its id is the bridge's name. The network's record (see RegistryDir) holds
// its configuration and the DHCP hosts the servers on it registered, so
// every create and update hands dnsmasq the full host list.
type realNetwork struct{ r *Real }

// netConfig fills rec's configuration from the request's attributes.
func netConfig(req executors.Request[kinds.NetworkAttrs], rec *record) error {
	if err := req.SpecErr; err != nil {
		return err
	}
	at := req.Spec
	rec.CIDR, rec.NAT, rec.DHCP, rec.DNS = at.CIDR, at.NAT, at.DHCP, at.DNS
	return nil
}

func networkObject(a executors.Instance, rec record, st network.State) Object {
	c := map[string]any{"id": rec.ID, "bridge": st.Bridge}
	if gw, err := network.Gateway(rec.CIDR); err == nil {
		c["gateway"] = gw.Addr().String()
	}
	return Object{PhysicalName: st.Bridge, Attrs: withComputed(a, c)}
}

func (k realNetwork) apply(ctx context.Context, req executors.Request[kinds.NetworkAttrs], phys string, create bool) (Object, error) {
	a := req.Instance
	id := network.BridgeName(a.Stack, phys)
	defer k.r.lock(id)()
	rec, _, err := k.r.reg.Get("network", id)
	if err != nil {
		return Object{}, err
	}
	rec.Kind, rec.ID, rec.Stack, rec.Phys = "network", id, a.Stack, phys
	if err := netConfig(req, &rec); err != nil {
		return Object{}, err
	}
	if err := k.r.reg.Put(rec); err != nil {
		return Object{}, err
	}
	var st network.State
	if create {
		st, err = k.r.net.Create(ctx, rec.NetSpec())
	} else {
		st, err = k.r.net.Update(ctx, rec.NetSpec())
	}
	if err != nil {
		return Object{}, fmt.Errorf("%s: %w", a.Address, err)
	}
	return networkObject(a, rec, st), nil
}

func (k realNetwork) Create(ctx context.Context, req executors.Request[kinds.NetworkAttrs]) (Object, error) {
	a := req.Instance
	return k.apply(ctx, req, physAddress(a.Address, a.Generation), true)
}

func (k realNetwork) Update(ctx context.Context, req executors.Request[kinds.NetworkAttrs]) (Object, error) {
	a := req.Instance
	phys, err := k.r.target(spec.KindNetwork, a)
	if err != nil {
		return Object{}, err
	}
	return k.apply(ctx, req, phys, false)
}

func (k realNetwork) Delete(ctx context.Context, req executors.Request[kinds.NetworkAttrs]) error {
	a := req.Instance
	phys, gone, err := existing(k.r.target(spec.KindNetwork, a))
	if gone || err != nil {
		return err
	}
	id := network.BridgeName(a.Stack, phys)
	defer k.r.lock(id)()
	if err := k.r.net.Delete(ctx, network.Spec{Stack: a.Stack, Address: phys}); err != nil {
		return fmt.Errorf("%s: %w", a.Address, err)
	}
	return k.r.reg.Del("network", id)
}

// Read returns the network as the host has it: exists is false when its
// bridge is gone; nat and dhcp say what is really running.
func (k realNetwork) Read(ctx context.Context, req executors.Request[kinds.NetworkAttrs]) (Object, bool, error) {
	a := req.Instance
	phys, gone, err := existing(k.r.target(spec.KindNetwork, a))
	if gone || err != nil {
		return Object{}, false, err
	}
	id := network.BridgeName(a.Stack, phys)
	rec, ok, err := k.r.reg.Get("network", id)
	if err != nil {
		return Object{}, false, err
	}
	if !ok {
		rec = record{Kind: "network", ID: id, Stack: a.Stack, Phys: phys}
		if err := netConfig(req, &rec); err != nil {
			return Object{}, false, err
		}
	}
	st, err := k.r.net.Read(ctx, rec.NetSpec())
	if gone, err := absent(err); gone || err != nil {
		return Object{}, false, err
	}
	obj := networkObject(a, rec, st)
	obj.Attrs["nat"] = st.NAT
	// dhcp is on when dnsmasq runs: the configuration the record wants
	// when DHCP is on, any at all when it is off.
	obj.Attrs["dhcp"] = st.DHCP || (!rec.DHCP && st.DnsmasqPID != 0)
	return obj, true, nil
}

// networkFor finds the record of the network a server's network block
// names: the id the dependency reported when the action carries it, else
// the stack's one instance of network.<name> on this host.
func (r *Real) networkFor(a executors.Instance, name string) (record, error) {
	addr := "network." + name
	if dep, ok := a.Deps[addr]; ok {
		if id, ok := dep["id"].(string); ok && id != "" {
			rec, found, err := r.reg.Get("network", id)
			if err != nil {
				return record{}, err
			}
			if found {
				return rec, nil
			}
			return record{}, fmt.Errorf("%s: network %s (%s) is not on this host", a.Address, addr, id)
		}
	}
	recs, err := r.reg.List("network")
	if err != nil {
		return record{}, err
	}
	var match []record
	for _, rec := range recs {
		if rec.Stack == a.Stack && baseAddress(rec.Phys) == addr {
			match = append(match, rec)
		}
	}
	switch len(match) {
	case 0:
		return record{}, fmt.Errorf("%s: network %s of stack %s is not on this host", a.Address, addr, a.Stack)
	case 1:
		return match[0], nil
	}
	ids := make([]string, len(match))
	for i, m := range match {
		ids[i] = m.ID
	}
	return record{}, fmt.Errorf("%s: network %s has several instances on this host (%s) and the action does not say which", a.Address, addr, strings.Join(ids, ", "))
}
