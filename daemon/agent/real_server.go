package agent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/executors"
	"github.com/kiln-dev/kiln/executors/image"
	"github.com/kiln-dev/kiln/executors/server"
	"github.com/kiln-dev/kiln/executors/volume"
	"github.com/kiln-dev/kiln/spec"
)

// realServer serves the server kind: libvirt domains. Its id is the domain
// name. Each of its NICs is registered as a fixed DHCP host of its network
// (see networkFor and RegistryDir) before the domain is made, and taken off
// when it is deleted.
type realServer struct{ r *Real }

func (k realServer) real() *Real { return k.r }

// firstHost is the offset in a network of the first address handed to a
// server that asks for none.
const firstHost = 10

// Hostname is the hostname of a server: its domain name, within the 63
// bytes a hostname may have and without '_' or '.' (the '.' before the
// hash of a non-default project's name would make it a domain name).
func Hostname(scope, phys string) string {
	return strings.NewReplacer("_", "-", ".", "-").Replace(executors.PhysicalName(scope, phys, 63))
}

// netBlock is one `network "NAME" { address = ... }` block of a server.
type netBlock struct{ name, address string }

func netBlocks(a Action) ([]netBlock, error) {
	v, ok := a.Attrs["networks"]
	if !ok || v == nil {
		return nil, nil
	}
	if _, u := v.(spec.Unknown); u {
		return nil, unknownErr(a, "networks")
	}
	l, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%s: attribute \"networks\" is a %T, want a list of network blocks", a.Address, v)
	}
	var out []netBlock
	for i, e := range l {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: networks[%d] is a %T, want a network block", a.Address, i, e)
		}
		name, _ := m["name"].(string)
		if name == "" {
			return nil, fmt.Errorf("%s: networks[%d] has no name", a.Address, i)
		}
		b := netBlock{name: name}
		switch x := m["address"].(type) {
		case nil:
		case string:
			b.address = x
		case spec.Unknown:
			return nil, unknownErr(a, fmt.Sprintf("network %q address", name))
		default:
			return nil, fmt.Errorf("%s: network %q address is a %T, want a string", a.Address, name, x)
		}
		out = append(out, b)
	}
	return out, nil
}

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
func (r *Real) attach(ctx context.Context, a Action, phys string, b netBlock) (nicInfo, error) {
	rec, err := r.networkFor(a, b.name)
	if err != nil {
		return nicInfo{}, err
	}
	defer r.lock(rec.ID)()
	// Read again under the lock: another server may have just registered.
	rec, ok, err := r.reg.get("network", rec.ID)
	if err != nil {
		return nicInfo{}, err
	}
	if !ok {
		return nicInfo{}, fmt.Errorf("%s: network %s is gone", a.Address, b.name)
	}
	gw, err := gatewayOf(rec.CIDR)
	if err != nil {
		return nicInfo{}, fmt.Errorf("%s: network %s: %w", a.Address, b.name, err)
	}
	name := server.Name(a.Stack, phys)
	netAddr := "network." + b.name
	mac := server.MAC(a.Stack, phys, netAddr)
	ip, err := pickAddress(rec, gw, mac, b.address)
	if err != nil {
		return nicInfo{}, fmt.Errorf("%s: network %s: %w", a.Address, b.name, err)
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
		if err := r.reg.put(rec); err != nil {
			return nicInfo{}, err
		}
	}
	// Always hand dnsmasq the list: a repeated create repairs it too.
	if _, err := r.net.Update(ctx, rec.netSpec()); err != nil {
		return nicInfo{}, fmt.Errorf("%s: DHCP host on network %s: %w", a.Address, b.name, err)
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
	info := nicInfo{name: b.name, nic: nic, ip: ip.String()}
	if rec.DHCP {
		info.leases = r.net.LeaseFile(rec.netSpec())
	}
	return info, nil
}

// pickAddress is the address of the NIC with mac on a network: the one the
// block asks for, else the one it was given before, else the lowest free
// host address from the network's tenth on.
func pickAddress(rec record, gw netip.Prefix, mac, want string) (netip.Addr, error) {
	p := netip.PrefixFrom(gw.Addr(), gw.Bits()).Masked()
	used := map[netip.Addr]string{}
	for _, h := range rec.Hosts {
		if ip, err := netip.ParseAddr(h.IP); err == nil {
			used[ip] = h.MAC
		}
	}
	if want != "" {
		ip, err := netip.ParseAddr(want)
		if err != nil {
			pf, perr := netip.ParsePrefix(want)
			if perr != nil {
				return netip.Addr{}, fmt.Errorf("address %q is not an IPv4 address", want)
			}
			ip = pf.Addr()
		}
		if !p.Contains(ip) || ip == gw.Addr() || ip == p.Addr() || ip == broadcast(p) {
			return netip.Addr{}, fmt.Errorf("address %s is not a guest address of %s", ip, p)
		}
		if other, ok := used[ip]; ok && other != mac {
			return netip.Addr{}, fmt.Errorf("address %s is already given to %s", ip, other)
		}
		return ip, nil
	}
	for ip, m := range used {
		if m == mac {
			return ip, nil
		}
	}
	ip := p.Addr()
	for range firstHost {
		ip = ip.Next()
	}
	for ; p.Contains(ip) && ip != broadcast(p); ip = ip.Next() {
		if _, taken := used[ip]; !taken && ip != gw.Addr() {
			return ip, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("no free address left in %s from its host %d on", p, firstHost)
}

func broadcast(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	v := binary.BigEndian.Uint32(a[:]) | (1<<(32-p.Bits()) - 1)
	binary.BigEndian.PutUint32(a[:], v)
	return netip.AddrFrom4(a)
}

// detach takes the server's hosts off every network that lists them.
func (r *Real) detach(ctx context.Context, name string) error {
	recs, err := r.reg.list("network")
	if err != nil {
		return err
	}
	for _, rec := range recs {
		if !hasHost(rec, name) {
			continue
		}
		err := func() error {
			defer r.lock(rec.ID)()
			rec, ok, err := r.reg.get("network", rec.ID)
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
			if err := r.reg.put(rec); err != nil {
				return err
			}
			if _, err := r.net.Update(ctx, rec.netSpec()); err != nil && !errors.Is(err, executors.ErrNotFound) {
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
func (k realServer) target(ctx context.Context, a Action) (string, error) {
	phys, err := k.r.target("server", a, server.Name)
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
			if lerr := legacyInstance("server", a, server.Name, record{Stack: s.Stack}, true); lerr != nil {
				return "", lerr
			}
		}
	}
	return "", err
}

// spec turns the action into the executor's spec, registering the NICs.
func (k realServer) spec(ctx context.Context, a Action, phys string) (server.Spec, resolved, error) {
	var res resolved
	s := server.Spec{Stack: a.Stack, Address: phys, Hostname: Hostname(a.Stack, phys)}
	sum, err := k.specImage(ctx, a, &s)
	if err != nil {
		return s, res, err
	}
	res.image = sum
	if err := specSize(a, &s); err != nil {
		return s, res, err
	}
	if err := k.specBoot(a, &s); err != nil {
		return s, res, err
	}
	if res.volumes, err = k.specVolumes(a, &s); err != nil {
		return s, res, err
	}
	if res.nics, err = k.specNICs(ctx, a, phys, &s); err != nil {
		return s, res, err
	}
	if s.Ready, err = k.ready(a, phys, res.nics); err != nil {
		return s, res, err
	}
	if len(res.nics) > 0 && k.r.signals != nil {
		s.ReadyURL = k.r.signals.URL(res.nics[0].nic.Gateway, server.Name(a.Stack, phys))
	}
	s.Progress = serverProgress(ctx, a.Address)
	return s, res, nil
}

// specImage sets the server's image, fetching it into this host's cache
// when the image resource says where from; it returns the image's id.
func (k realServer) specImage(ctx context.Context, a Action, s *server.Spec) (string, error) {
	sum, err := k.imageID(a)
	if err != nil {
		return "", err
	}
	if err := ownImage(a, sum); err != nil {
		return "", err
	}
	img, err := k.r.images.Read(ctx, sum)
	if errors.Is(err, executors.ErrNotFound) {
		// Not cached here (yet): fetch it as the image resource says.
		dep, ok := depOfKind(a, "image")
		src, _ := dep["source"].(string)
		if !ok || src == "" || dep["id"] != sum {
			return "", fmt.Errorf("%s: image %s is not in this host's cache", a.Address, sum)
		}
		img, err = k.r.images.Create(ctx, image.Template{Source: src, SHA256: sum}, fetchProgress(ctx, a.Address))
	}
	if err != nil {
		var pe *image.PolicyError
		if errors.As(err, &pe) {
			return "", fmt.Errorf("%s: image: %w (%s)", a.Address, err, flagOf(pe.Rule))
		}
		return "", fmt.Errorf("%s: image: %w", a.Address, err)
	}
	s.Image, s.ImageFormat = img.Path, img.Format
	return sum, nil
}

// specSize sets the server's cpus, memory and disk.
func specSize(a Action, s *server.Spec) error {
	cpus, err := attrInt(a, "cpus", 1)
	if err != nil {
		return err
	}
	if s.Memory, err = attrInt(a, "memory", 512<<20); err != nil {
		return err
	}
	if s.Disk, err = attrInt(a, "disk", 0); err != nil {
		return err
	}
	s.CPUs = int(cpus)
	return nil
}

// specBoot sets what the guest boots with: user data, kernel, initrd and
// command line, SSH keys and CPU mode.
func (k realServer) specBoot(a Action, s *server.Spec) error {
	var err error
	for _, f := range []struct {
		name string
		to   *string
	}{{"user_data", &s.UserData}, {"kernel", &s.Kernel}, {"initrd", &s.Initrd}, {"cmdline", &s.Cmdline}} {
		if *f.to, err = attrString(a, f.name, false); err != nil {
			return err
		}
	}
	// QEMU reads the kernel and initrd as root: only from where the
	// operator allows, links resolved.
	if s.Kernel, err = k.r.checkLocal(a, "kernel", s.Kernel); err != nil {
		return err
	}
	if s.Initrd, err = k.r.checkLocal(a, "initrd", s.Initrd); err != nil {
		return err
	}
	if s.SSHKeys, err = attrStrings(a, "ssh_keys"); err != nil {
		return err
	}
	if s.CPUMode, err = attrString(a, "cpu_mode", false); err != nil {
		return err
	}
	return nil
}

// specVolumes attaches the server's volumes; it returns their ids.
func (k realServer) specVolumes(a Action, s *server.Spec) ([]string, error) {
	ids, err := k.volumeIDs(a)
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		// Only the stack's own volumes: the pool also holds other stacks'
		// volumes, and every server's root overlay and seed.
		if err := k.r.ownVolume(a, id); err != nil {
			return ids, err
		}
		v, err := k.r.vols.Lookup(id)
		if err != nil {
			return ids, fmt.Errorf("%s: volume %s: %w", a.Address, id, err)
		}
		s.Volumes = append(s.Volumes, v.Path)
	}
	return ids, nil
}

// specNICs registers the server's NICs on their networks; on an error it
// returns the NICs registered so far.
func (k realServer) specNICs(ctx context.Context, a Action, phys string, s *server.Spec) ([]nicInfo, error) {
	blocks, err := netBlocks(a)
	if err != nil {
		return nil, err
	}
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

// ready turns the server's ready attribute (spec's normalised map) into
// the driver's check; with no ready block, the guest's DHCP lease on its
// first DHCP network, or the domain running for a few seconds.
func (k realServer) ready(a Action, phys string, nics []nicInfo) (server.Ready, error) {
	v, ok := a.Attrs["ready"]
	if !ok || v == nil {
		for _, n := range nics {
			if n.leases != "" {
				return server.Ready{Kind: server.CheckLease, LeaseFile: n.leases, MAC: n.nic.MAC}, nil
			}
		}
		return server.Ready{Kind: server.CheckRunning}, nil
	}
	if spec.IsUnknown(v) {
		return server.Ready{}, unknownErr(a, "ready")
	}
	m, ok := v.(map[string]any)
	if !ok {
		return server.Ready{}, fmt.Errorf("%s: attribute \"ready\" is a %T, want a ready block", a.Address, v)
	}
	var r server.Ready
	if t, ok := asInt64(m["timeout"]); ok && t > 0 {
		r.Timeout = time.Duration(t) * time.Second
	}
	first := ""
	if len(nics) > 0 {
		first = nics[0].ip
	}
	switch {
	case m["tcp_port"] != nil:
		p, _ := asInt64(m["tcp_port"])
		r.Kind, r.Port, r.Address = server.CheckTCP, int(p), first
	case m["http_port"] != nil:
		p, _ := asInt64(m["http_port"])
		r.Kind, r.Port, r.Address = server.CheckHTTP, int(p), first
		r.Path, _ = m["http_path"].(string)
	case m["console"] != nil:
		r.Kind = server.CheckConsole
		r.Console, _ = m["console"].(string)
	case m["signal"] == true:
		if len(nics) == 0 || k.r.signals == nil {
			return r, fmt.Errorf("%s: ready signal: the server needs a network to reach its ready URL", a.Address)
		}
		name := server.Name(a.Stack, phys)
		r.Kind = server.CheckSignal
		r.Signalled = func() time.Time { return k.r.signals.Signalled(name) }
	default:
		return r, fmt.Errorf("%s: the ready block has no check (tcp_port, http_port, console or signal)", a.Address)
	}
	return r, nil
}

func asInt64(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int:
		return int64(n), true
	case float64:
		return int64(n), n == float64(int64(n))
	}
	return 0, false
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

// imageID is the server's image attribute, or the id of its only image
// dependency when that attribute is still unknown.
func (k realServer) imageID(a Action) (string, error) {
	if v, ok := a.Attrs["image"]; ok && spec.IsUnknown(v) {
		if dep, ok := depOfKind(a, "image"); ok {
			if id, ok := dep["id"].(string); ok && id != "" {
				return id, nil
			}
		}
	}
	return attrString(a, "image", true)
}

// volumeIDs is the server's volumes attribute; a single unknown entry is
// taken from its only volume dependency.
func (k realServer) volumeIDs(a Action) ([]string, error) {
	if l, ok := a.Attrs["volumes"].([]any); ok && len(l) == 1 && spec.IsUnknown(l[0]) {
		if dep, ok := depOfKind(a, "volume"); ok {
			if id, ok := dep["id"].(string); ok && id != "" {
				return []string{id}, nil
			}
		}
	}
	return attrStrings(a, "volumes")
}

func serverObject(a Action, s server.Server, res resolved) Object {
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

func (k realServer) Create(ctx context.Context, a Action) (Object, error) {
	phys := physAddress(a.Address, a.Generation)
	name := server.Name(a.Stack, phys)
	rec := record{Kind: "server", ID: name, Stack: a.Stack, Phys: phys,
		Files: []string{volume.Name(a.Stack, phys, volume.QCOW2), volume.BaseName(a.Stack, phys) + "-seed.iso"}}
	if err := k.r.reg.put(rec); err != nil {
		return Object{}, err
	}
	s, res, err := k.spec(ctx, a, phys)
	if err != nil {
		return Object{}, err
	}
	if err := k.listen(s); err != nil {
		return Object{}, fmt.Errorf("%s: %w", a.Address, err)
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

func (k realServer) Update(ctx context.Context, a Action) (Object, error) {
	phys, err := k.target(ctx, a)
	if err != nil {
		return Object{}, err
	}
	s, res, err := k.spec(ctx, a, phys)
	if err != nil {
		return Object{}, err
	}
	if err := k.listen(s); err != nil {
		return Object{}, fmt.Errorf("%s: %w", a.Address, err)
	}
	got, err := k.r.srv.Update(ctx, s)
	if err != nil {
		return Object{}, fmt.Errorf("%s: %w", a.Address, err)
	}
	return serverObject(a, got, res), nil
}

func (k realServer) Delete(ctx context.Context, a Action) error {
	phys, err := k.target(ctx, a)
	if err != nil {
		if isLegacy(err) {
			return nil
		}
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
	return k.r.reg.del("server", name)
}

// Read returns the domain as libvirt has it: cpus, memory and volumes are
// the real ones; exists is false when the domain is gone.
func (k realServer) Read(ctx context.Context, a Action) (Object, bool, error) {
	phys, err := k.target(ctx, a)
	if err != nil {
		if isLegacy(err) {
			return Object{}, false, nil
		}
		return Object{}, false, err
	}
	s, err := k.r.srv.Read(ctx, a.Stack, phys)
	if errors.Is(err, executors.ErrNotFound) {
		return Object{}, false, nil
	}
	if err != nil {
		return Object{}, false, err
	}
	// The addresses are those registered with the networks.
	var nics []nicInfo
	blocks, _ := netBlocks(a)
	for _, b := range blocks {
		rec, err := k.r.networkFor(a, b.name)
		if err != nil {
			continue
		}
		for _, h := range rec.Hosts {
			if h.Server == s.Name {
				n := nicInfo{name: b.name, ip: h.IP, nic: server.NIC{MAC: h.MAC, Gateway: rec.gateway()}}
				if rec.DHCP {
					n.leases = k.r.net.LeaseFile(rec.netSpec())
				}
				nics = append(nics, n)
			}
		}
	}
	if a.AwaitReady {
		// The read of a create or update an earlier leader left running:
		// the server is done only once its guest is ready.
		r, err := k.ready(a, phys, nics)
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
