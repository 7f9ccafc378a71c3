package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/kiln-dev/kiln/executors"
	"github.com/kiln-dev/kiln/executors/image"
	"github.com/kiln-dev/kiln/executors/kinds"
	"github.com/kiln-dev/kiln/executors/network"
	"github.com/kiln-dev/kiln/executors/server"
	"github.com/kiln-dev/kiln/executors/volume"
	"github.com/kiln-dev/kiln/spec"
)

// realServer serves the server kind: libvirt domains. Its id is the domain
// name. Each of its NICs is registered as a fixed DHCP host of its network
// (see networkFor and RegistryDir) before the domain is made, and taken off
// when it is deleted.
type realServer struct{ r *Real }

// Hostname is the hostname of a server (kinds.Hostname).
func Hostname(scope, phys string) string { return kinds.Hostname(scope, phys) }

// resolved are the values a server's spec was made from where the action
// held them unknown.
type resolved struct {
	image   string
	volumes []string
	nics    []nicInfo
}

// nicInfo is what a server learns of one of its NICs.
type nicInfo struct {
	name string // network name
	nic  server.NIC
	ip   string
	// leases is the lease file of the network's dnsmasq ("" without DHCP).
	leases string
}

// attach registers the server's NIC on network b as a fixed DHCP host
// (allocating an address when the block gives none) and tells dnsmasq.
func (r *Real) attach(ctx context.Context, a executors.Instance, phys string, b kinds.NetworkBlock) (nicInfo, error) {
	rec, err := r.networkFor(a, b.Name)
	if err != nil {
		return nicInfo{}, err
	}
	defer r.lock(rec.ID)()
	// Read again under the lock: another server may have just registered.
	rec, ok, err := r.reg.Get("network", rec.ID)
	if err != nil {
		return nicInfo{}, err
	}
	if !ok {
		return nicInfo{}, fmt.Errorf("%s: network %s is gone", a.Address, b.Name)
	}
	gw, err := network.Gateway(rec.CIDR)
	if err != nil {
		return nicInfo{}, fmt.Errorf("%s: network %s: %w", a.Address, b.Name, err)
	}
	name := server.Name(a.Stack, phys)
	netAddr := "network." + b.Name
	mac := server.MAC(a.Stack, phys, netAddr)
	ip, err := network.PickAddress(gw, rec.NetSpec().Hosts, mac, b.Address)
	if err != nil {
		return nicInfo{}, fmt.Errorf("%s: network %s: %w", a.Address, b.Name, err)
	}
	entry := hostEntry{Server: name, MAC: mac, IP: ip.String(), Hostname: Hostname(a.Stack, phys)}
	changed := true
	hosts := rec.Hosts[:0:0]
	for _, h := range rec.Hosts {
		if h.MAC == mac {
			changed = h != entry
			continue
		}
		hosts = append(hosts, h)
	}
	rec.Hosts = append(hosts, entry)
	if changed {
		if err := r.reg.Put(rec); err != nil {
			return nicInfo{}, err
		}
	}
	// Always hand dnsmasq the list: a repeated create repairs it too.
	if _, err := r.net.Update(ctx, rec.NetSpec()); err != nil {
		return nicInfo{}, fmt.Errorf("%s: DHCP host on network %s: %w", a.Address, b.Name, err)
	}
	nic := server.NIC{
		Network: netAddr,
		Bridge:  rec.ID,
		Address: netip.PrefixFrom(ip, gw.Bits()).String(),
		Gateway: gw.Addr().String(),
		MAC:     mac,
		DHCP:    rec.DHCP,
	}
	if len(rec.DNS) > 0 {
		// dnsmasq serves DNS on the gateway when the network has resolvers.
		nic.DNS = []string{gw.Addr().String()}
	}
	info := nicInfo{name: b.Name, nic: nic, ip: ip.String()}
	if rec.DHCP {
		info.leases = r.net.LeaseFile(rec.NetSpec())
	}
	return info, nil
}

// detach takes the server's hosts off every network that lists them.
func (r *Real) detach(ctx context.Context, name string) error {
	recs, err := r.reg.List("network")
	if err != nil {
		return err
	}
	for _, rec := range recs {
		if !hasHost(rec, name) {
			continue
		}
		err := func() error {
			defer r.lock(rec.ID)()
			rec, ok, err := r.reg.Get("network", rec.ID)
			if err != nil || !ok {
				return err
			}
			var hosts []hostEntry
			for _, h := range rec.Hosts {
				if h.Server != name {
					hosts = append(hosts, h)
				}
			}
			rec.Hosts = hosts
			if err := r.reg.Put(rec); err != nil {
				return err
			}
			if _, err := r.net.Update(ctx, rec.NetSpec()); err != nil && !errors.Is(err, executors.ErrNotFound) {
				return fmt.Errorf("server %s: DHCP hosts of %s: %w", name, rec.ID, err)
			}
			return nil
		}()
		if err != nil {
			return err
		}
	}
	return nil
}

func hasHost(rec record, server string) bool {
	for _, h := range rec.Hosts {
		if h.Server == server {
			return true
		}
	}
	return false
}

// target finds the physical address of the server an action is about; for
// an id the registry does not know, from the domain's kiln metadata.
func (k realServer) target(ctx context.Context, a executors.Instance) (string, error) {
	phys, err := k.r.target(spec.KindServer, a)
	if err == nil || isLegacy(err) {
		return phys, err
	}
	list, lerr := k.r.srv.List(ctx)
	if lerr != nil {
		return "", err
	}
	for _, s := range list {
		if s.Name == a.ID && s.Stack == a.Stack {
			return s.Address, nil
		}
		if s.Name == a.ID {
			if lerr := legacyInstance(spec.KindServer, a, record{Stack: s.Stack}, true); lerr != nil {
				return "", lerr
			}
		}
	}
	return "", err
}

// resolve takes an image, or a single volume, still unknown from the only
// dependency of that kind.
func (k realServer) resolve(a executors.Instance) map[string]any {
	resolve := map[string]any{}
	if v, ok := a.Attrs["image"]; ok && spec.IsUnknown(v) {
		if id := depID(a, "image"); id != "" {
			resolve["image"] = id
		}
	}
	if l, ok := a.Attrs["volumes"].([]any); ok && len(l) == 1 && spec.IsUnknown(l[0]) {
		if id := depID(a, "volume"); id != "" {
			resolve["volumes"] = []any{id}
		}
	}
	return resolve
}

// spec turns the action into the executor's spec, registering the NICs
// and starting the ready URL listener a signal check needs.
func (k realServer) spec(ctx context.Context, req executors.Request[kinds.ServerAttrs], phys string) (server.Spec, resolved, error) {
	a, at := req.Instance, req.Spec
	var res resolved
	s := server.Spec{Stack: a.Stack, Address: phys, Hostname: Hostname(a.Stack, phys)}
	err := req.SpecErr
	if err != nil {
		return s, res, err
	}
	if err := k.specImage(ctx, a, at.Image, &s); err != nil {
		return s, res, err
	}
	res.image = at.Image
	s.CPUs, s.Memory, s.Disk = int(at.CPUs), at.Memory, at.Disk
	if err := k.specBoot(a, at, &s); err != nil {
		return s, res, err
	}
	res.volumes = at.Volumes
	if err := k.specVolumes(a, at.Volumes, &s); err != nil {
		return s, res, err
	}
	if res.nics, err = k.specNICs(ctx, a, phys, at.Networks, &s); err != nil {
		return s, res, err
	}
	if s.Ready, err = k.ready(a, at.Ready, phys, res.nics); err != nil {
		return s, res, err
	}
	if len(res.nics) > 0 && k.r.signals != nil {
		s.ReadyURL = k.r.signals.URL(res.nics[0].nic.Gateway, server.Name(a.Stack, phys))
	}
	if err := k.listen(s); err != nil {
		return s, res, fmt.Errorf("%s: %w", a.Address, err)
	}
	s.Progress = serverProgress(ctx, a.Address)
	return s, res, nil
}

// specImage sets the server's image (sum), fetching it into this host's
// cache when the image resource says where from.
func (k realServer) specImage(ctx context.Context, a executors.Instance, sum string, s *server.Spec) error {
	if err := ownImage(a, sum); err != nil {
		return err
	}
	img, err := k.r.images.Read(ctx, sum)
	if errors.Is(err, executors.ErrNotFound) {
		// Not cached here (yet): fetch it as the image resource says.
		dep, ok := depOfKind(a, "image")
		src, _ := dep["source"].(string)
		if !ok || src == "" || dep["id"] != sum {
			return fmt.Errorf("%s: image %s is not in this host's cache", a.Address, sum)
		}
		img, err = k.r.images.Create(ctx, image.Template{Source: src, SHA256: sum}, fetchProgress(ctx, a.Address))
	}
	if err != nil {
		var pe *image.PolicyError
		if errors.As(err, &pe) {
			return fmt.Errorf("%s: image: %w (%s)", a.Address, err, flagOf(pe.Rule))
		}
		return fmt.Errorf("%s: image: %w", a.Address, err)
	}
	s.Image, s.ImageFormat = img.Path, img.Format
	return nil
}

// specBoot sets what the guest boots with: user data, kernel, initrd and
// command line, SSH keys and CPU mode.
func (k realServer) specBoot(a executors.Instance, at kinds.ServerAttrs, s *server.Spec) error {
	s.UserData, s.Cmdline, s.SSHKeys, s.CPUMode = at.UserData, at.Cmdline, at.SSHKeys, at.CPUMode
	// QEMU reads the kernel and initrd as root: only from where the
	// operator allows, links resolved.
	var err error
	if s.Kernel, err = k.r.checkLocal(a, "kernel", at.Kernel); err != nil {
		return err
	}
	if s.Initrd, err = k.r.checkLocal(a, "initrd", at.Initrd); err != nil {
		return err
	}
	return nil
}

// specVolumes attaches the server's volumes (by id).
func (k realServer) specVolumes(a executors.Instance, ids []string, s *server.Spec) error {
	for _, id := range ids {
		// Only the stack's own volumes: the pool also holds other stacks'
		// volumes, and every server's root overlay and seed.
		if err := k.r.ownVolume(a, id); err != nil {
			return err
		}
		v, err := k.r.vols.Lookup(id)
		if err != nil {
			return fmt.Errorf("%s: volume %s: %w", a.Address, id, err)
		}
		s.Volumes = append(s.Volumes, v.Path)
	}
	return nil
}

// specNICs registers the server's NICs on their networks; on an error it
// returns the NICs registered so far.
func (k realServer) specNICs(ctx context.Context, a executors.Instance, phys string, blocks kinds.NetworkBlocks, s *server.Spec) ([]nicInfo, error) {
	var nics []nicInfo
	for _, b := range blocks {
		n, err := k.r.attach(ctx, a, phys, b)
		if err != nil {
			return nics, err
		}
		nics = append(nics, n)
		s.NICs = append(s.NICs, n.nic)
	}
	return nics, nil
}

// ready is the driver's check of the server's ready block
// (server.ReadyOf), with its NICs and, when it can reach one, its ready
// URL.
func (k realServer) ready(a executors.Instance, m *kinds.ReadyBlock, phys string, nics []nicInfo) (server.Ready, error) {
	var signalled func() time.Time
	if len(nics) > 0 && k.r.signals != nil {
		name := server.Name(a.Stack, phys)
		signalled = func() time.Time { return k.r.signals.Signalled(name) }
	}
	rn := make([]server.ReadyNIC, len(nics))
	for i, n := range nics {
		rn[i] = server.ReadyNIC{IP: n.ip, MAC: n.nic.MAC, LeaseFile: n.leases}
	}
	return server.ReadyOf(a.Address, m, rn, signalled)
}

// serverProgress sends the driver's "booting" and "ready after" lines as
// events of the action's stack.
func serverProgress(ctx context.Context, address string) server.Progress {
	emit, _ := ctx.Value(progressKey{}).(func(string))
	if emit == nil {
		return nil
	}
	return func(msg string) { emit(address + ": " + msg) }
}

func serverObject(a executors.Instance, s server.Server, res resolved) Object {
	nics := res.nics
	c := map[string]any{"id": s.Name}
	if res.image != "" {
		c["image"] = res.image
	}
	if res.volumes != nil {
		vols := make([]any, len(res.volumes))
		for i, v := range res.volumes {
			vols[i] = v
		}
		c["volumes"] = vols
	}
	addrs := map[string]any{}
	for i, n := range nics {
		if i == 0 {
			c["address"] = n.ip
		}
		addrs[n.name] = n.ip
	}
	c["addresses"] = addrs
	if len(s.MACs) > 0 {
		c["mac"] = s.MACs[0]
	}
	return Object{PhysicalName: s.Name, Attrs: withComputed(a, c), ReadyAfter: s.ReadyAfter}
}

func (k realServer) Create(ctx context.Context, req executors.Request[kinds.ServerAttrs]) (Object, error) {
	a := req.Instance
	phys := physAddress(a.Address, a.Generation)
	name := server.Name(a.Stack, phys)
	rec := record{Kind: "server", ID: name, Stack: a.Stack, Phys: phys,
		Files: []string{volume.Name(a.Stack, phys, volume.QCOW2), volume.BaseName(a.Stack, phys) + "-seed.iso"}}
	if err := k.r.reg.Put(rec); err != nil {
		return Object{}, err
	}
	s, res, err := k.spec(ctx, req, phys)
	if err != nil {
		return Object{}, err
	}
	got, err := k.r.srv.Create(ctx, s)
	if errors.Is(err, server.ErrKVMInternal) && k.r.kvmFailed(err) {
		// -accel auto: KVM cannot run this guest after all. The agent now
		// runs guests under TCG; make this one again, once.
		if derr := k.r.srv.Delete(ctx, a.Stack, phys); derr != nil {
			return Object{}, fmt.Errorf("%s: %w (and removing it to retry under TCG: %v)", a.Address, err, derr)
		}
		if s.Progress != nil {
			s.Progress("KVM cannot run this guest (KVM internal error); retrying once under TCG")
		}
		got, err = k.r.srv.Create(ctx, s)
	}
	if err != nil {
		return Object{}, fmt.Errorf("%s: %w", a.Address, err)
	}
	return serverObject(a, got, res), nil
}

// listen starts the ready URL listener a signal check needs.
func (k realServer) listen(s server.Spec) error {
	if s.Ready.Kind != server.CheckSignal || len(s.NICs) == 0 {
		return nil
	}
	return k.r.signals.Listen(s.NICs[0].Gateway)
}

func (k realServer) Update(ctx context.Context, req executors.Request[kinds.ServerAttrs]) (Object, error) {
	a := req.Instance
	phys, err := k.target(ctx, a)
	if err != nil {
		return Object{}, err
	}
	s, res, err := k.spec(ctx, req, phys)
	if err != nil {
		return Object{}, err
	}
	got, err := k.r.srv.Update(ctx, s)
	if err != nil {
		return Object{}, fmt.Errorf("%s: %w", a.Address, err)
	}
	return serverObject(a, got, res), nil
}

func (k realServer) Delete(ctx context.Context, req executors.Request[kinds.ServerAttrs]) error {
	a := req.Instance
	phys, gone, err := existing(k.target(ctx, a))
	if gone || err != nil {
		return err
	}
	name := server.Name(a.Stack, phys)
	if err := k.r.srv.Delete(ctx, a.Stack, phys); err != nil {
		return fmt.Errorf("%s: %w", a.Address, err)
	}
	if err := k.r.detach(ctx, name); err != nil {
		return err
	}
	if k.r.signals != nil {
		k.r.signals.Forget(name)
	}
	return k.r.reg.Del("server", name)
}

// Read returns the domain as libvirt has it: cpus, memory and volumes are
// the real ones; exists is false when the domain is gone.
func (k realServer) Read(ctx context.Context, req executors.Request[kinds.ServerAttrs]) (Object, bool, error) {
	a := req.Instance
	phys, gone, err := existing(k.target(ctx, a))
	if gone || err != nil {
		return Object{}, false, err
	}
	s, err := k.r.srv.Read(ctx, a.Stack, phys)
	if gone, err := absent(err); gone || err != nil {
		return Object{}, false, err
	}
	// The addresses are those registered with the networks; a read fails
	// only on the attributes it needs (the ready block, to wait).
	at, aerr := req.Spec, req.SpecErr
	var nics []nicInfo
	for _, b := range at.Networks {
		rec, err := k.r.networkFor(a, b.Name)
		if err != nil {
			continue
		}
		for _, h := range rec.Hosts {
			if h.Server == s.Name {
				n := nicInfo{name: b.Name, ip: h.IP, nic: server.NIC{MAC: h.MAC, Gateway: rec.Gateway()}}
				if rec.DHCP {
					n.leases = k.r.net.LeaseFile(rec.NetSpec())
				}
				nics = append(nics, n)
			}
		}
	}
	if a.AwaitReady {
		// The read of a create or update an earlier leader left running:
		// the server is done only once its guest is ready.
		if err := kinds.For(aerr, "ready"); err != nil {
			return Object{}, false, err
		}
		r, err := k.ready(a, at.Ready, phys, nics)
		if err != nil {
			return Object{}, false, err
		}
		if r.Kind == server.CheckSignal {
			if err := k.r.signals.Listen(nics[0].nic.Gateway); err != nil {
				return Object{}, false, fmt.Errorf("%s: %w", a.Address, err)
			}
		}
		if s, err = k.r.srv.AwaitReady(ctx, a.Stack, phys, r, serverProgress(ctx, a.Address)); err != nil {
			return Object{}, false, fmt.Errorf("%s: %w", a.Address, err)
		}
	}
	obj := serverObject(a, s, resolved{nics: nics})
	obj.Attrs["cpus"] = int64(s.CPUs)
	obj.Attrs["memory"] = s.Memory
	if _, set := a.Attrs["volumes"]; set || len(s.Volumes) > 0 {
		vols := make([]any, 0, len(s.Volumes))
		for _, p := range s.Volumes {
			vols = append(vols, filepath.Base(p))
		}
		obj.Attrs["volumes"] = vols
	}
	return obj, true, nil
}
