package server

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/executors"
	"github.com/kiln-dev/kiln/executors/host"
	"github.com/kiln-dev/kiln/executors/image"
	"github.com/kiln-dev/kiln/executors/kinds"
	"github.com/kiln-dev/kiln/executors/network"
	"github.com/kiln-dev/kiln/executors/records"
	"github.com/kiln-dev/kiln/executors/volume"
)

// Executor is the server kind's executor (executors.Executor): libvirt
// domains. Its id is the domain name. Each of its NICs is registered as a
// fixed DHCP host of its network (see networkFor and executors/records)
// before the domain is made, and taken off when it is deleted.
type Executor struct {
	Host   *host.Host
	Driver *Driver
	// Images is the host's image cache: a server boots only an image of
	// its own stack, fetched here when it is not cached yet.
	Images *image.Cache
	Vols   *volume.Driver
	// Net is the network driver the NICs' DHCP hosts are handed to.
	Net *network.Driver
	// Signals serves the ready URLs of signal checks (nil: none).
	Signals *Signals
	// KVMFailed, when set, is told that a guest died of a KVM internal
	// error, and says whether to make it again (once) under TCG.
	KVMFailed func(cause error) bool
	// FetchProgress and Progress, when set, are the progress callbacks of
	// the fetch of an image and of a server's boot, by address.
	FetchProgress func(ctx context.Context, address string) image.Progress
	Progress      func(ctx context.Context, address string) Progress
}

var _ executors.Executor[kinds.ServerAttrs] = Executor{}

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
	nic  NIC
	ip   string
	// leases is the lease file of the network's dnsmasq ("" without DHCP).
	leases string
}

// attach registers the server's NIC on network b as a fixed DHCP host
// (allocating an address when the block gives none) and tells dnsmasq.
func (e Executor) attach(ctx context.Context, a executors.Instance, phys string, b kinds.NetworkBlock) (nicInfo, error) {
	rec, err := e.networkFor(a, b.Name)
	if err != nil {
		return nicInfo{}, err
	}
	defer e.Host.Lock(rec.ID)()
	// Read again under the lock: another server may have just registered.
	rec, ok, err := e.Host.Records.Get("network", rec.ID)
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
	name := Name(a.Stack, phys)
	netAddr := "network." + b.Name
	mac := MAC(a.Stack, phys, netAddr)
	ip, err := network.PickAddress(gw, network.SpecOf(rec).Hosts, mac, b.Address)
	if err != nil {
		return nicInfo{}, fmt.Errorf("%s: network %s: %w", a.Address, b.Name, err)
	}
	entry := records.Host{Server: name, MAC: mac, IP: ip.String(), Hostname: kinds.Hostname(a.Stack, phys)}
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
		if err := e.Host.Records.Put(rec); err != nil {
			return nicInfo{}, err
		}
	}
	// Always hand dnsmasq the list: a repeated create repairs it too.
	if _, err := e.Net.Update(ctx, network.SpecOf(rec)); err != nil {
		return nicInfo{}, fmt.Errorf("%s: DHCP host on network %s: %w", a.Address, b.Name, err)
	}
	nic := NIC{
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
		info.leases = e.Net.LeaseFile(network.SpecOf(rec))
	}
	return info, nil
}

// Detach takes the hosts of the server name (its domain name) off every
// network that lists them.
func (e Executor) Detach(ctx context.Context, name string) error {
	recs, err := e.Host.Records.List("network")
	if err != nil {
		return err
	}
	for _, rec := range recs {
		if !slices.ContainsFunc(rec.Hosts, func(h records.Host) bool { return h.Server == name }) {
			continue
		}
		err := func() error {
			defer e.Host.Lock(rec.ID)()
			rec, ok, err := e.Host.Records.Get("network", rec.ID)
			if err != nil || !ok {
				return err
			}
			var hosts []records.Host
			for _, h := range rec.Hosts {
				if h.Server != name {
					hosts = append(hosts, h)
				}
			}
			rec.Hosts = hosts
			if err := e.Host.Records.Put(rec); err != nil {
				return err
			}
			if _, err := e.Net.Update(ctx, network.SpecOf(rec)); err != nil && !errors.Is(err, executors.ErrNotFound) {
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

// target finds the physical address of the server an action is about; for
// an id the registry does not know, from the domain's kiln metadata.
func (e Executor) target(ctx context.Context, a executors.Instance) (string, error) {
	phys, err := e.Host.Target("server", a)
	if err == nil || host.IsLegacy(err) {
		return phys, err
	}
	list, lerr := e.Driver.List(ctx)
	if lerr != nil {
		return "", err
	}
	for _, s := range list {
		if s.Name == a.ID && s.Stack == a.Stack {
			return s.Address, nil
		}
		if s.Name == a.ID {
			if lerr := host.LegacyInstance("server", a, records.Record{Stack: s.Stack}, true); lerr != nil {
				return "", lerr
			}
		}
	}
	return "", err
}

// Resolve takes an image, or a single volume, still unknown from the only
// dependency of that kind.
func (e Executor) Resolve(a executors.Instance) map[string]any {
	resolve := map[string]any{}
	if v, ok := a.Attrs["image"]; ok && e.Host.Unknown(v) {
		if id := host.DepID(a, "image"); id != "" {
			resolve["image"] = id
		}
	}
	if l, ok := a.Attrs["volumes"].([]any); ok && len(l) == 1 && e.Host.Unknown(l[0]) {
		if id := host.DepID(a, "volume"); id != "" {
			resolve["volumes"] = []any{id}
		}
	}
	return resolve
}

// spec turns the action into the executor's spec, registering the NICs
// and starting the ready URL listener a signal check needs.
func (e Executor) spec(ctx context.Context, req executors.Request[kinds.ServerAttrs], phys string) (Spec, resolved, error) {
	a, at := req.Instance, req.Spec
	var res resolved
	s := Spec{Stack: a.Stack, Address: phys, Hostname: kinds.Hostname(a.Stack, phys)}
	err := req.SpecErr
	if err != nil {
		return s, res, err
	}
	if err := e.specImage(ctx, a, at.Image, &s); err != nil {
		return s, res, err
	}
	res.image = at.Image
	s.CPUs, s.Memory, s.Disk = int(at.CPUs), at.Memory, at.Disk
	if err := e.specBoot(a, at, &s); err != nil {
		return s, res, err
	}
	res.volumes = at.Volumes
	if err := e.specVolumes(a, at.Volumes, &s); err != nil {
		return s, res, err
	}
	if res.nics, err = e.specNICs(ctx, a, phys, at.Networks, &s); err != nil {
		return s, res, err
	}
	if s.Ready, err = e.ready(a, at.Ready, phys, res.nics); err != nil {
		return s, res, err
	}
	if len(res.nics) > 0 && e.Signals != nil {
		s.ReadyURL = e.Signals.URL(res.nics[0].nic.Gateway, Name(a.Stack, phys))
	}
	if err := e.listen(s); err != nil {
		return s, res, fmt.Errorf("%s: %w", a.Address, err)
	}
	s.Progress = e.progress(ctx, a.Address)
	return s, res, nil
}

// specImage sets the server's image (sum), fetching it into this host's
// cache when the image resource says where from.
func (e Executor) specImage(ctx context.Context, a executors.Instance, sum string, s *Spec) error {
	if err := host.OwnImage(a, sum); err != nil {
		return err
	}
	img, err := e.Images.Read(ctx, sum)
	if errors.Is(err, executors.ErrNotFound) {
		// Not cached here (yet): fetch it as the image resource says.
		dep, ok := host.DepOfKind(a, "image")
		src, _ := dep["source"].(string)
		if !ok || src == "" || dep["id"] != sum {
			return fmt.Errorf("%s: image %s is not in this host's cache", a.Address, sum)
		}
		img, err = e.Images.Create(ctx, image.Template{Source: src, SHA256: sum}, e.fetchProgress(ctx, a.Address))
	}
	if err != nil {
		var pe *image.PolicyError
		if errors.As(err, &pe) {
			return fmt.Errorf("%s: image: %w (%s)", a.Address, err, image.FlagOf(pe.Rule))
		}
		return fmt.Errorf("%s: image: %w", a.Address, err)
	}
	s.Image, s.ImageFormat = img.Path, img.Format
	return nil
}

// specBoot sets what the guest boots with: user data, kernel, initrd and
// command line, SSH keys and CPU mode.
func (e Executor) specBoot(a executors.Instance, at kinds.ServerAttrs, s *Spec) error {
	s.UserData, s.Cmdline, s.SSHKeys, s.CPUMode = at.UserData, at.Cmdline, at.SSHKeys, at.CPUMode
	// QEMU reads the kernel and initrd as root: only from where the
	// operator allows, links resolved.
	var err error
	if s.Kernel, err = e.CheckLocal(a, "kernel", at.Kernel); err != nil {
		return err
	}
	if s.Initrd, err = e.CheckLocal(a, "initrd", at.Initrd); err != nil {
		return err
	}
	return nil
}

// specVolumes attaches the server's volumes (by id).
func (e Executor) specVolumes(a executors.Instance, ids []string, s *Spec) error {
	for _, id := range ids {
		// Only the stack's own volumes: the pool also holds other stacks'
		// volumes, and every server's root overlay and seed.
		if err := e.Host.OwnVolume(a, id); err != nil {
			return err
		}
		v, err := e.Vols.Lookup(id)
		if err != nil {
			return fmt.Errorf("%s: volume %s: %w", a.Address, id, err)
		}
		s.Volumes = append(s.Volumes, v.Path)
	}
	return nil
}

// specNICs registers the server's NICs on their networks; on an error it
// returns the NICs registered so far.
func (e Executor) specNICs(ctx context.Context, a executors.Instance, phys string, blocks kinds.NetworkBlocks, s *Spec) ([]nicInfo, error) {
	var nics []nicInfo
	for _, b := range blocks {
		n, err := e.attach(ctx, a, phys, b)
		if err != nil {
			return nics, err
		}
		nics = append(nics, n)
		s.NICs = append(s.NICs, n.nic)
	}
	return nics, nil
}

// ready is the driver's check of the server's ready block
// (ReadyOf), with its NICs and, when it can reach one, its ready
// URL.
func (e Executor) ready(a executors.Instance, m *kinds.ReadyBlock, phys string, nics []nicInfo) (Ready, error) {
	var signalled func() time.Time
	if len(nics) > 0 && e.Signals != nil {
		name := Name(a.Stack, phys)
		signalled = func() time.Time { return e.Signals.Signalled(name) }
	}
	rn := make([]ReadyNIC, len(nics))
	for i, n := range nics {
		rn[i] = ReadyNIC{IP: n.ip, MAC: n.nic.MAC, LeaseFile: n.leases}
	}
	return ReadyOf(a.Address, m, rn, signalled)
}

// fetchProgress is the progress of the fetch of the image of the server
// at address (nil without FetchProgress).
func (e Executor) fetchProgress(ctx context.Context, address string) image.Progress {
	if e.FetchProgress == nil {
		return nil
	}
	return e.FetchProgress(ctx, address)
}

// progress is the progress of the boot of the server at address (nil
// without Progress).
func (e Executor) progress(ctx context.Context, address string) Progress {
	if e.Progress == nil {
		return nil
	}
	return e.Progress(ctx, address)
}

func (e Executor) result(a executors.Instance, s Server, res resolved) executors.Result {
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
	return executors.Result{PhysicalName: s.Name, Attrs: e.Host.WithComputed(a, c), ReadyAfter: s.ReadyAfter}
}

// Create records the server, registers its NICs and makes its domain,
// done when its guest is ready.
func (e Executor) Create(ctx context.Context, req executors.Request[kinds.ServerAttrs]) (executors.Result, error) {
	a := req.Instance
	phys := host.PhysAddress(a.Address, a.Generation)
	name := Name(a.Stack, phys)
	rec := records.Record{Kind: "server", ID: name, Stack: a.Stack, Phys: phys,
		Files: []string{volume.Name(a.Stack, phys, volume.QCOW2), volume.BaseName(a.Stack, phys) + "-seed.iso"}}
	if err := e.Host.Records.Put(rec); err != nil {
		return executors.Result{}, err
	}
	s, res, err := e.spec(ctx, req, phys)
	if err != nil {
		return executors.Result{}, err
	}
	got, err := e.Driver.Create(ctx, s)
	if errors.Is(err, ErrKVMInternal) && e.KVMFailed != nil && e.KVMFailed(err) {
		// -accel auto: KVM cannot run this guest after all. The agent now
		// runs guests under TCG; make this one again, once.
		if derr := e.Driver.Delete(ctx, a.Stack, phys); derr != nil {
			return executors.Result{}, fmt.Errorf("%s: %w (and removing it to retry under TCG: %v)", a.Address, err, derr)
		}
		if s.Progress != nil {
			s.Progress("KVM cannot run this guest (KVM internal error); retrying once under TCG")
		}
		got, err = e.Driver.Create(ctx, s)
	}
	if err != nil {
		return executors.Result{}, fmt.Errorf("%s: %w", a.Address, err)
	}
	return e.result(a, got, res), nil
}

// listen starts the ready URL listener a signal check needs.
func (e Executor) listen(s Spec) error {
	if s.Ready.Kind != CheckSignal || len(s.NICs) == 0 {
		return nil
	}
	return e.Signals.Listen(s.NICs[0].Gateway)
}

// Update changes the existing domain in place.
func (e Executor) Update(ctx context.Context, req executors.Request[kinds.ServerAttrs]) (executors.Result, error) {
	a := req.Instance
	phys, err := e.target(ctx, a)
	if err != nil {
		return executors.Result{}, err
	}
	s, res, err := e.spec(ctx, req, phys)
	if err != nil {
		return executors.Result{}, err
	}
	got, err := e.Driver.Update(ctx, s)
	if err != nil {
		return executors.Result{}, fmt.Errorf("%s: %w", a.Address, err)
	}
	return e.result(a, got, res), nil
}

// Delete removes the domain, its DHCP hosts and its record.
func (e Executor) Delete(ctx context.Context, req executors.Request[kinds.ServerAttrs]) error {
	a := req.Instance
	phys, gone, err := host.Existing(e.target(ctx, a))
	if gone || err != nil {
		return err
	}
	name := Name(a.Stack, phys)
	if err := e.Driver.Delete(ctx, a.Stack, phys); err != nil {
		return fmt.Errorf("%s: %w", a.Address, err)
	}
	if err := e.Detach(ctx, name); err != nil {
		return err
	}
	if e.Signals != nil {
		e.Signals.Forget(name)
	}
	return e.Host.Records.Del("server", name)
}

// Read returns the domain as libvirt has it: cpus, memory and volumes are
// the real ones; exists is false when the domain is gone.
func (e Executor) Read(ctx context.Context, req executors.Request[kinds.ServerAttrs]) (executors.Result, bool, error) {
	a := req.Instance
	phys, gone, err := host.Existing(e.target(ctx, a))
	if gone || err != nil {
		return executors.Result{}, false, err
	}
	s, err := e.Driver.Read(ctx, a.Stack, phys)
	if gone, err := host.Absent(err); gone || err != nil {
		return executors.Result{}, false, err
	}
	// The addresses are those registered with the networks; a read fails
	// only on the attributes it needs (the ready block, to wait).
	at, aerr := req.Spec, req.SpecErr
	var nics []nicInfo
	for _, b := range at.Networks {
		rec, err := e.networkFor(a, b.Name)
		if err != nil {
			continue
		}
		for _, h := range rec.Hosts {
			if h.Server == s.Name {
				n := nicInfo{name: b.Name, ip: h.IP, nic: NIC{MAC: h.MAC, Gateway: gatewayOf(rec)}}
				if rec.DHCP {
					n.leases = e.Net.LeaseFile(network.SpecOf(rec))
				}
				nics = append(nics, n)
			}
		}
	}
	if a.AwaitReady {
		// The read of a create or update an earlier leader left running:
		// the server is done only once its guest is ready.
		if err := kinds.For(aerr, "ready"); err != nil {
			return executors.Result{}, false, err
		}
		r, err := e.ready(a, at.Ready, phys, nics)
		if err != nil {
			return executors.Result{}, false, err
		}
		if r.Kind == CheckSignal {
			if err := e.Signals.Listen(nics[0].nic.Gateway); err != nil {
				return executors.Result{}, false, fmt.Errorf("%s: %w", a.Address, err)
			}
		}
		if s, err = e.Driver.AwaitReady(ctx, a.Stack, phys, r, e.progress(ctx, a.Address)); err != nil {
			return executors.Result{}, false, fmt.Errorf("%s: %w", a.Address, err)
		}
	}
	obj := e.result(a, s, resolved{nics: nics})
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

// gatewayOf is a network's gateway address ("" when its cidr is bad).
func gatewayOf(rec records.Record) string {
	gw, err := network.Gateway(rec.CIDR)
	if err != nil {
		return ""
	}
	return gw.Addr().String()
}

// networkFor finds the record of the network a server's network block
// names: the id the dependency reported when the action carries it, else
// the stack's one instance of network.<name> on this host.
func (e Executor) networkFor(a executors.Instance, name string) (records.Record, error) {
	addr := "network." + name
	if dep, ok := a.Deps[addr]; ok {
		if id, ok := dep["id"].(string); ok && id != "" {
			rec, found, err := e.Host.Records.Get("network", id)
			if err != nil {
				return records.Record{}, err
			}
			if found {
				return rec, nil
			}
			return records.Record{}, fmt.Errorf("%s: network %s (%s) is not on this host", a.Address, addr, id)
		}
	}
	recs, err := e.Host.Records.List("network")
	if err != nil {
		return records.Record{}, err
	}
	var match []records.Record
	for _, rec := range recs {
		if rec.Stack == a.Stack && host.BaseAddress(rec.Phys) == addr {
			match = append(match, rec)
		}
	}
	switch len(match) {
	case 0:
		return records.Record{}, fmt.Errorf("%s: network %s of stack %s is not on this host", a.Address, addr, a.Stack)
	case 1:
		return match[0], nil
	}
	ids := make([]string, len(match))
	for i, m := range match {
		ids[i] = m.ID
	}
	return records.Record{}, fmt.Errorf("%s: network %s has several instances on this host (%s) and the action does not say which", a.Address, addr, strings.Join(ids, ", "))
}

// CheckLocal checks a local path attribute (kernel, initrd) against the
// host's policy (that of the image cache) and returns its real path.
func (e Executor) CheckLocal(a executors.Instance, attr, path string) (string, error) {
	if path == "" {
		return "", nil
	}
	real, err := e.Images.Policy().CheckLocalPath(path)
	if err != nil {
		return "", image.AttrError(a.Address, attr, err)
	}
	return real, nil
}
