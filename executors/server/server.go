// Package server runs server resources as libvirt domains (XML through
// libvirtxml): type kvm when /dev/kvm exists, qemu (TCG) otherwise; the root
// disk a qcow2 overlay on a cached image in the kiln-volumes pool; a
// cloud-init NoCloud seed ISO beside it on a CD-ROM; NICs with deterministic
// MACs on kiln's bridges; data volumes on vdb, vdc, ...; the serial console
// written to a file under the data directory.
//
// Every domain carries its owner in a <metadata> element of the kiln
// namespace; List finds kiln's domains by it.
package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/kiln-dev/kiln/executors"
	"github.com/kiln-dev/kiln/executors/cloudinit"
	"github.com/kiln-dev/kiln/executors/kinds"
	"github.com/kiln-dev/kiln/executors/volume"
)

// MetadataNS is the XML namespace of kiln's domain metadata.
const MetadataNS = "https://kiln.dev/xmlns/server/1"

// NIC is one network interface of a server.
type NIC struct {
	Network string   // network resource address, part of the MAC's hash
	Bridge  string   // host bridge to plug into
	Address string   // static address in CIDR form (10.0.0.10/24); DHCP when empty
	Gateway string   // optional
	DNS     []string // optional
	MAC     string   // optional; derived by MAC when empty
	// DHCP: the network's dnsmasq hands Address out to this NIC's MAC, and
	// the seed tells the guest to ask for it (so that the guest's lease
	// shows it is up) instead of configuring it statically.
	DHCP bool
}

// Spec is the desired state of one server resource.
type Spec struct {
	Stack, Address string
	Hostname       string // defaults to the domain name
	// Image is the cached image file the root overlay is backed by, and
	// its format (qcow2 or raw).
	Image, ImageFormat string
	CPUs               int
	Memory             int64 // bytes
	Disk               int64 // bytes of the root disk; the image's virtual size when 0
	NICs               []NIC
	Volumes            []string // paths of data volumes, attached in order as vdb, vdc, ...
	Kernel, Initrd     string   // optional direct kernel boot
	Cmdline            string
	UserData           string
	SSHKeys            []string
	// CPUMode is "host-passthrough" or "host-model" (KVM only), or ""
	// ("default") for the hypervisor's default CPU model.
	CPUMode string
	// ReadyURL goes into the seed (see Signals).
	ReadyURL string
	// Ready is how Create and Update see that the guest is up; the zero
	// value waits for the domain to run DefaultSettle without crashing.
	Ready Ready
	// Progress, when set, hears "booting" and "ready after" of the wait.
	Progress Progress
}

// Server is what is really there.
type Server struct {
	Name           string
	Stack, Address string
	Running        bool
	State          string
	CPUs           int
	Memory         int64 // bytes
	MACs           []string
	Bridges        []string
	Volumes        []string // data volume paths (not the root disk nor the seed)
	Overlay, Seed  string   // file paths
	ConsoleLog     string
	CPUMode        string // "" for the hypervisor's default
	DomainType     string // kvm or qemu
	// ReadyAfter is how long the guest took to pass its readiness check
	// in the Create or Update that returned it (from the domain's start,
	// or from the call for a domain that ran already).
	ReadyAfter time.Duration
}

// Driver creates and removes servers on one libvirt connection.
type Driver struct {
	conn    *libvirt.Connect
	vols    *volume.Driver
	dataDir string
	// accel is the libvirt domain type of new domains, kvm or qemu (TCG),
	// and why: New sets qemu; the agent sets kvm (SetAccel) when a probe
	// showed that KVM runs a guest here (executors/accel).
	accelMu     sync.RWMutex
	domType     string
	accelReason string
	// ShutdownTimeout bounds the clean shutdown of a restart before the
	// domain is destroyed.
	ShutdownTimeout time.Duration
}

// New returns a driver keeping overlays and seeds in vols' pool and console
// logs under dataDir/console.
func New(conn *libvirt.Connect, vols *volume.Driver, dataDir string) (*Driver, error) {
	if err := os.MkdirAll(filepath.Join(dataDir, "console"), 0o755); err != nil {
		return nil, fmt.Errorf("server driver: %w", err)
	}
	return &Driver{conn: conn, vols: vols, dataDir: dataDir, domType: "qemu", accelReason: "the default", ShutdownTimeout: 30 * time.Second}, nil
}

// SetAccel sets the domain type of the domains made from now on: "kvm" or
// "qemu" (TCG), and why it was chosen.
func (d *Driver) SetAccel(domainType, reason string) {
	d.accelMu.Lock()
	defer d.accelMu.Unlock()
	d.domType, d.accelReason = domainType, reason
}

// Accel returns the domain type of new domains and why it was chosen.
func (d *Driver) Accel() (domainType, reason string) {
	d.accelMu.RLock()
	defer d.accelMu.RUnlock()
	return d.domType, d.accelReason
}

// Name is the domain name of a server resource.
func Name(stack, address string) string { return kinds.ServerName(stack, address) }

// MAC is the deterministic MAC of a server's NIC on a network:
// 52:54:00 and three bytes of a hash of stack, address and network.
func MAC(stack, address, network string) string {
	sum := sha256.Sum256([]byte(stack + "\x00" + address + "\x00" + network))
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", sum[0], sum[1], sum[2])
}

func (d *Driver) overlayName(stack, address string) string {
	return volume.Name(stack, address, volume.QCOW2)
}

func (d *Driver) seedName(stack, address string) string {
	return volume.BaseName(stack, address) + "-seed.iso"
}

// ConsoleLog is the file the server's serial console is written to.
func (d *Driver) ConsoleLog(stack, address string) string {
	return filepath.Join(d.dataDir, "console", Name(stack, address)+".log")
}

type meta struct {
	XMLName xml.Name `xml:"server"`
	Stack   string   `xml:"stack"`
	Address string   `xml:"address"`
	Owner   string   `xml:"owner"`
	// Spec is the hash of the spec the domain was defined from (specHash);
	// "" for domains of older kiln versions.
	Spec string `xml:"spec"`
}

// specHash is what a create adopts by: a domain defined from another spec
// (an earlier create that never finished, say a guest that never became
// ready, since fixed in the template) is made anew rather than adopted.
// The readiness check is not part of it: changing it re-checks, no more.
func specHash(spec Spec) string {
	h := sha256.New()
	fmt.Fprintf(h, "%q %q %q %q %d %d %d %q %q %q %q %q %q %q\n", spec.Stack, spec.Address, spec.Hostname,
		spec.Image, spec.CPUs, spec.Memory, spec.Disk, spec.Kernel, spec.Initrd, spec.Cmdline,
		spec.UserData, strings.Join(spec.SSHKeys, "\x00"), normCPUMode(spec.CPUMode), spec.ReadyURL)
	for _, n := range spec.NICs {
		fmt.Fprintf(h, "nic %q %q %q %q %t\n", n.Network, n.Bridge, n.Address, nicMAC(spec, n), n.DHCP)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func metadataXML(stack, address, hash string) string {
	esc := func(v string) string {
		var b strings.Builder
		xml.EscapeText(&b, []byte(v))
		return b.String()
	}
	return `<kiln:server xmlns:kiln="` + MetadataNS + `">` +
		`<kiln:stack>` + esc(stack) + `</kiln:stack>` +
		`<kiln:address>` + esc(address) + `</kiln:address>` +
		`<kiln:owner>` + esc(executors.Owner(stack, address)) + `</kiln:owner>` +
		`<kiln:spec>` + esc(hash) + `</kiln:spec>` +
		`</kiln:server>`
}

// owner reads the kiln metadata of a domain; ok is false when it has none.
func owner(dom *libvirt.Domain, flags libvirt.DomainModificationImpact) (meta, bool) {
	doc, err := dom.GetMetadata(libvirt.DOMAIN_METADATA_ELEMENT, MetadataNS, flags)
	if err != nil {
		return meta{}, false
	}
	var m meta
	if err := xml.Unmarshal([]byte(doc), &m); err != nil || m.Owner == "" {
		return meta{}, false
	}
	return m, true
}

func (d *Driver) lookup(stack, address string) (*libvirt.Domain, error) {
	name := Name(stack, address)
	dom, err := d.conn.LookupDomainByName(name)
	if err != nil {
		if volume.IsCode(err, libvirt.ERR_NO_DOMAIN) {
			return nil, fmt.Errorf("server %s: %w", name, executors.ErrNotFound)
		}
		return nil, fmt.Errorf("server %s: %w", name, err)
	}
	m, ok := owner(dom, libvirt.DOMAIN_AFFECT_CONFIG)
	if !ok {
		m, ok = owner(dom, libvirt.DOMAIN_AFFECT_CURRENT)
	}
	if !ok || m.Owner != executors.Owner(stack, address) {
		dom.Free()
		return nil, fmt.Errorf("server %s: a domain of that name exists but is owned by %q, not %q: refusing to touch it", name, m.Owner, executors.Owner(stack, address))
	}
	return dom, nil
}

// Read returns the server as libvirt has it, or an error wrapping
// executors.ErrNotFound.
func (d *Driver) Read(ctx context.Context, stack, address string) (Server, error) {
	if err := ctx.Err(); err != nil {
		return Server{}, err
	}
	dom, err := d.lookup(stack, address)
	if err != nil {
		return Server{}, err
	}
	defer dom.Free()
	return d.describe(dom)
}

var stateNames = map[libvirt.DomainState]string{
	libvirt.DOMAIN_NOSTATE: "nostate", libvirt.DOMAIN_RUNNING: "running", libvirt.DOMAIN_BLOCKED: "blocked",
	libvirt.DOMAIN_PAUSED: "paused", libvirt.DOMAIN_SHUTDOWN: "shutdown", libvirt.DOMAIN_SHUTOFF: "shutoff",
	libvirt.DOMAIN_CRASHED: "crashed", libvirt.DOMAIN_PMSUSPENDED: "pmsuspended",
}

func (d *Driver) describe(dom *libvirt.Domain) (Server, error) {
	name, _ := dom.GetName()
	state, _, err := dom.GetState()
	if err != nil {
		return Server{Name: name}, fmt.Errorf("server %s: state: %w", name, err)
	}
	doc, err := dom.GetXMLDesc(0)
	if err != nil {
		return Server{Name: name}, fmt.Errorf("server %s: %w", name, err)
	}
	var x libvirtxml.Domain
	if err := x.Unmarshal(doc); err != nil {
		return Server{Name: name}, fmt.Errorf("server %s: %w", name, err)
	}
	s := Server{Name: name, Running: state == libvirt.DOMAIN_RUNNING, State: stateNames[state], DomainType: x.Type}
	if x.CPU != nil && (x.CPU.Mode == "host-passthrough" || x.CPU.Mode == "host-model") {
		s.CPUMode = x.CPU.Mode
	}
	if m, ok := owner(dom, libvirt.DOMAIN_AFFECT_CURRENT); ok {
		s.Stack, s.Address = m.Stack, m.Address
	}
	if x.VCPU != nil {
		s.CPUs = int(x.VCPU.Value)
		if x.VCPU.Current != 0 {
			s.CPUs = int(x.VCPU.Current)
		}
	}
	if x.Memory != nil {
		s.Memory = int64(x.Memory.Value) << 10 // libvirt reports KiB
	}
	for _, sr := range x.Devices.Serials {
		if sr.Source != nil && sr.Source.File != nil {
			s.ConsoleLog = sr.Source.File.Path
		}
	}
	for _, nic := range x.Devices.Interfaces {
		if nic.MAC != nil {
			s.MACs = append(s.MACs, nic.MAC.Address)
		}
		if nic.Source != nil && nic.Source.Bridge != nil {
			s.Bridges = append(s.Bridges, nic.Source.Bridge.Bridge)
		}
	}
	for _, disk := range x.Devices.Disks {
		path := diskPath(disk)
		switch {
		case disk.Device == "cdrom":
			s.Seed = path
		case disk.Target != nil && disk.Target.Dev == "vda":
			s.Overlay = path
		default:
			s.Volumes = append(s.Volumes, path)
		}
	}
	return s, nil
}

func diskPath(disk libvirtxml.DomainDisk) string {
	if disk.Source != nil && disk.Source.File != nil {
		return disk.Source.File.File
	}
	return ""
}

// List returns every domain that carries kiln metadata, for `kiln gc`.
func (d *Driver) List(ctx context.Context) ([]Server, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	doms, err := d.conn.ListAllDomains(0)
	if err != nil {
		return nil, fmt.Errorf("list servers: %w", err)
	}
	var out []Server
	for i := range doms {
		dom := &doms[i]
		if _, ok := owner(dom, libvirt.DOMAIN_AFFECT_CURRENT); ok {
			if s, err := d.describe(dom); err == nil {
				out = append(out, s)
			}
		}
		dom.Free()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Create boots the server, or adopts the domain of that name (starting it
// when it is shut off), and waits until the guest passes spec.Ready. A
// guest that crashes, pauses on an error, shuts off or is not ready in time
// fails with an error wrapping ErrNotReady (and ErrKVMInternal when KVM
// could not run it); the domain is left as it is, for a re-run to adopt or
// a delete to remove.
func (d *Driver) Create(ctx context.Context, spec Spec) (Server, error) {
	if err := ctx.Err(); err != nil {
		return Server{}, err
	}
	if err := d.validate(spec); err != nil {
		return Server{}, err
	}
	name := Name(spec.Stack, spec.Address)
	dom, err := d.lookup(spec.Stack, spec.Address)
	if err != nil && !errors.Is(err, executors.ErrNotFound) {
		return Server{}, err
	}
	if dom != nil {
		if m, ok := owner(dom, libvirt.DOMAIN_AFFECT_CONFIG); ok && m.Spec != "" && m.Spec != specHash(spec) {
			// Made by a create of another spec that never finished: make
			// it anew from this one.
			dom.Free()
			dom = nil
			if err := d.Delete(ctx, spec.Stack, spec.Address); err != nil {
				return Server{}, fmt.Errorf("server %s: remove the domain of an unfinished create of another spec: %w", name, err)
			}
		}
	}
	if dom == nil {
		overlay, err := d.ensureOverlay(spec)
		if err != nil {
			return Server{}, err
		}
		seed, err := d.writeSeed(spec)
		if err != nil {
			return Server{}, err
		}
		x := d.domainXML(spec, overlay, seed)
		doc, err := x.Marshal()
		if err != nil {
			return Server{}, fmt.Errorf("server %s: %w", name, err)
		}
		dom, err = d.conn.DomainDefineXMLFlags(doc, libvirt.DOMAIN_DEFINE_VALIDATE)
		if err != nil {
			return Server{}, fmt.Errorf("define server %s: %w", name, err)
		}
	}
	defer dom.Free()
	return d.boot(ctx, dom, spec, false)
}

// AwaitReady waits until the guest of an existing server is ready (and
// starts its domain when it is shut off), as a repeated Create would,
// without changing its definition.
func (d *Driver) AwaitReady(ctx context.Context, stack, address string, r Ready, progress Progress) (Server, error) {
	if err := r.Validate(); err != nil {
		return Server{}, fmt.Errorf("server %s: %w", address, err)
	}
	dom, err := d.lookup(stack, address)
	if err != nil {
		return Server{}, err
	}
	defer dom.Free()
	return d.boot(ctx, dom, Spec{Stack: stack, Address: address, Ready: r, Progress: progress}, false)
}

// boot starts the domain unless it runs (restarted: it was just stopped)
// and waits for the guest to be ready.
func (d *Driver) boot(ctx context.Context, dom *libvirt.Domain, spec Spec, restarted bool) (Server, error) {
	name := Name(spec.Stack, spec.Address)
	active, err := dom.IsActive()
	if err != nil {
		return Server{Name: name}, fmt.Errorf("server %s: %w", name, err)
	}
	b := d.beforeStart(spec.Stack, spec.Address, spec.Ready)
	b.adopted = active && !restarted
	if err := start(dom); err != nil {
		s, _ := d.describe(dom)
		return s, fmt.Errorf("start server %s: %w", name, err)
	}
	if spec.Progress != nil {
		spec.Progress(fmt.Sprintf("booting under %s, waiting for %s", accelName(d.domainType(dom)), spec.Ready))
	}
	after, err := d.waitReady(ctx, dom, spec.Stack, spec.Address, spec.Ready, b)
	s, derr := d.describe(dom)
	s.ReadyAfter = after
	if err != nil {
		return s, err
	}
	if derr != nil {
		return s, derr
	}
	if spec.Progress != nil {
		spec.Progress(fmt.Sprintf("ready after %.1fs (%s)", after.Seconds(), spec.Ready.Kind))
	}
	return s, nil
}

func (d *Driver) domainType(dom *libvirt.Domain) string {
	doc, err := dom.GetXMLDesc(libvirt.DOMAIN_XML_INACTIVE)
	if err != nil {
		t, _ := d.Accel()
		return t
	}
	var x libvirtxml.Domain
	if x.Unmarshal(doc) != nil {
		t, _ := d.Accel()
		return t
	}
	return x.Type
}

func accelName(domainType string) string {
	if domainType == "kvm" {
		return "KVM"
	}
	return "TCG"
}

func start(dom *libvirt.Domain) error {
	if active, err := dom.IsActive(); err != nil || active {
		return err
	}
	if err := dom.Create(); err != nil {
		if active, _ := dom.IsActive(); active {
			return nil // started meanwhile by someone else
		}
		return err
	}
	return nil
}

func (d *Driver) validate(spec Spec) error {
	switch spec.CPUMode {
	case "", "default":
	case "host-passthrough", "host-model":
		if t, why := d.Accel(); t != "kvm" {
			return fmt.Errorf("server %s: cpu_mode %q needs KVM, and this agent runs guests under TCG (%s); remove cpu_mode or use \"default\"", spec.Address, spec.CPUMode, why)
		}
	default:
		return fmt.Errorf("server %s: cpu_mode %q: want host-passthrough, host-model or default", spec.Address, spec.CPUMode)
	}
	if err := spec.Ready.Validate(); err != nil {
		return fmt.Errorf("server %s: %w", spec.Address, err)
	}
	switch {
	case spec.Stack == "" || spec.Address == "":
		return errors.New("server: stack and address are required")
	case spec.Image == "":
		return fmt.Errorf("server %s: no image", spec.Address)
	case spec.CPUs <= 0:
		return fmt.Errorf("server %s: cpus %d: must be at least 1", spec.Address, spec.CPUs)
	case spec.Memory < 16<<20:
		return fmt.Errorf("server %s: memory %d bytes: must be at least 16MiB", spec.Address, spec.Memory)
	}
	if spec.ImageFormat != "qcow2" && spec.ImageFormat != "raw" {
		return fmt.Errorf("server %s: image format %q: want qcow2 or raw", spec.Address, spec.ImageFormat)
	}
	return nil
}

// ensureOverlay creates (or adopts) the root disk: a qcow2 overlay backed
// by the cached image, sized to spec.Disk or to the image.
func (d *Driver) ensureOverlay(spec Spec) (string, error) {
	name := d.overlayName(spec.Stack, spec.Address)
	if v, err := d.vols.Lookup(name); err == nil {
		return v.Path, nil
	}
	size := spec.Disk
	backing, err := d.conn.LookupStorageVolByPath(spec.Image)
	if err == nil {
		info, ierr := backing.GetInfo()
		backing.Free()
		if ierr == nil && (size == 0 || int64(info.Capacity) > size) {
			if size != 0 {
				return "", fmt.Errorf("server %s: disk %d bytes is smaller than the image (%d bytes)", spec.Address, size, info.Capacity)
			}
			size = int64(info.Capacity)
		}
	} else if size == 0 {
		fi, serr := os.Stat(spec.Image)
		if serr != nil {
			return "", fmt.Errorf("server %s: image: %w", spec.Address, serr)
		}
		size = fi.Size()
	}
	_, err = volume.CreateIn(d.vols.Pool(), libvirtxml.StorageVolume{
		Name:     name,
		Capacity: &libvirtxml.StorageVolumeSize{Unit: "bytes", Value: uint64(size)},
		Target:   &libvirtxml.StorageVolumeTarget{Format: &libvirtxml.StorageVolumeTargetFormat{Type: "qcow2"}},
		BackingStore: &libvirtxml.StorageVolumeBackingStore{
			Path:   spec.Image,
			Format: &libvirtxml.StorageVolumeTargetFormat{Type: spec.ImageFormat},
		},
	})
	if err != nil {
		if v, lerr := d.vols.Lookup(name); lerr == nil {
			return v.Path, nil
		}
		return "", fmt.Errorf("server %s: root overlay: %w", spec.Address, err)
	}
	v, err := d.vols.Lookup(name)
	return v.Path, err
}

// writeSeed writes the NoCloud seed ISO into the pool directory.
func (d *Driver) writeSeed(spec Spec) (string, error) {
	seed := cloudinit.Seed{
		InstanceID: Name(spec.Stack, spec.Address),
		Hostname:   hostname(spec),
		UserData:   spec.UserData,
		SSHKeys:    spec.SSHKeys,
		ReadyURL:   spec.ReadyURL,
	}
	if len(spec.NICs) > 0 {
		n := spec.NICs[0]
		seed.MAC = nicMAC(spec, n)
		if !n.DHCP {
			seed.Address, seed.Gateway, seed.DNS = n.Address, n.Gateway, n.DNS
		}
	}
	iso, err := seed.ISO()
	if err != nil {
		return "", fmt.Errorf("server %s: seed: %w", spec.Address, err)
	}
	path := filepath.Join(d.vols.Dir(), d.seedName(spec.Stack, spec.Address))
	tmp, err := os.CreateTemp(d.dataDir, ".seed-*")
	if err != nil {
		return "", fmt.Errorf("server %s: seed: %w", spec.Address, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(iso)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// The seed holds user_data (often secrets): only the agent, and
		// QEMU through libvirt's relabelling, read it.
		err = os.Chmod(tmp.Name(), 0o600)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return "", fmt.Errorf("server %s: seed: %w", spec.Address, err)
	}
	return path, nil
}

func hostname(spec Spec) string {
	if spec.Hostname != "" {
		return spec.Hostname
	}
	return Name(spec.Stack, spec.Address)
}

func nicMAC(spec Spec, n NIC) string {
	if n.MAC != "" {
		return n.MAC
	}
	return MAC(spec.Stack, spec.Address, n.Network)
}

// dataDev is the target of the i-th data volume: vdb, vdc, ...
func dataDev(i int) string {
	if i < 25 {
		return "vd" + string(rune('b'+i))
	}
	return fmt.Sprintf("vd%c%c", 'a'+(i+1)/26-1, 'a'+(i+1)%26)
}

func dataDisk(path, dev string) libvirtxml.DomainDisk {
	format := "raw"
	if strings.HasSuffix(path, ".qcow2") {
		format = "qcow2"
	}
	return libvirtxml.DomainDisk{
		Device: "disk",
		Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: format},
		Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: path}},
		Target: &libvirtxml.DomainDiskTarget{Dev: dev, Bus: "virtio"},
	}
}

func (d *Driver) domainXML(spec Spec, overlay, seed string) *libvirtxml.Domain {
	port := uint(0)
	domType, _ := d.Accel()
	x := &libvirtxml.Domain{
		Type:          domType,
		Name:          Name(spec.Stack, spec.Address),
		Metadata:      &libvirtxml.DomainMetadata{XML: metadataXML(spec.Stack, spec.Address, specHash(spec))},
		Memory:        &libvirtxml.DomainMemory{Value: uint(spec.Memory >> 10), Unit: "KiB"},
		CurrentMemory: &libvirtxml.DomainCurrentMemory{Value: uint(spec.Memory >> 10), Unit: "KiB"},
		VCPU:          &libvirtxml.DomainVCPU{Value: uint(spec.CPUs)},
		OS: &libvirtxml.DomainOS{
			Type:    &libvirtxml.DomainOSType{Arch: "x86_64", Machine: "pc", Type: "hvm"},
			Kernel:  spec.Kernel,
			Initrd:  spec.Initrd,
			Cmdline: spec.Cmdline,
		},
		Features:   &libvirtxml.DomainFeatureList{ACPI: &libvirtxml.DomainFeature{}, APIC: &libvirtxml.DomainFeatureAPIC{}},
		OnPoweroff: "destroy",
		OnReboot:   "restart",
		OnCrash:    "destroy",
		Devices: &libvirtxml.DomainDeviceList{
			Disks: []libvirtxml.DomainDisk{
				{
					Device: "disk",
					Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "qcow2"},
					Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: overlay}},
					Target: &libvirtxml.DomainDiskTarget{Dev: "vda", Bus: "virtio"},
					Boot:   &libvirtxml.DomainDeviceBoot{Order: 1},
				},
				{
					Device:   "cdrom",
					Driver:   &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "raw"},
					Source:   &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: seed}},
					Target:   &libvirtxml.DomainDiskTarget{Dev: "hdc", Bus: "ide"},
					ReadOnly: &libvirtxml.DomainDiskReadOnly{},
				},
			},
			Serials: []libvirtxml.DomainSerial{{
				Source: &libvirtxml.DomainChardevSource{File: &libvirtxml.DomainChardevSourceFile{
					Path: d.ConsoleLog(spec.Stack, spec.Address), Append: "on",
				}},
				Target: &libvirtxml.DomainSerialTarget{Port: &port},
			}},
			MemBalloon: &libvirtxml.DomainMemBalloon{Model: "none"},
		},
	}
	setCPUMode(x, spec.CPUMode)
	for i, v := range spec.Volumes {
		x.Devices.Disks = append(x.Devices.Disks, dataDisk(v, dataDev(i)))
	}
	for _, n := range spec.NICs {
		x.Devices.Interfaces = append(x.Devices.Interfaces, libvirtxml.DomainInterface{
			MAC:    &libvirtxml.DomainInterfaceMAC{Address: nicMAC(spec, n)},
			Source: &libvirtxml.DomainInterfaceSource{Bridge: &libvirtxml.DomainInterfaceSourceBridge{Bridge: n.Bridge}},
			Model:  &libvirtxml.DomainInterfaceModel{Type: "virtio"},
		})
	}
	return x
}

func setCPUMode(x *libvirtxml.Domain, mode string) {
	switch mode {
	case "host-passthrough", "host-model":
		x.CPU = &libvirtxml.DomainCPU{Mode: mode}
	default:
		x.CPU = nil
	}
}

func normCPUMode(m string) string {
	if m == "default" {
		return ""
	}
	return m
}

// Update brings a server to spec. A change of cpus or memory redefines the
// domain and restarts it (clean shutdown bounded by ShutdownTimeout, then
// destroy); a change of the volume list hot-plugs and unplugs disks of a
// running domain (and changes its definition). The image and NICs are not
// updated in place: the planner replaces the server for those.
func (d *Driver) Update(ctx context.Context, spec Spec) (Server, error) {
	if err := ctx.Err(); err != nil {
		return Server{}, err
	}
	if err := d.validate(spec); err != nil {
		return Server{}, err
	}
	dom, err := d.lookup(spec.Stack, spec.Address)
	if err != nil {
		return Server{}, err
	}
	defer dom.Free()
	cur, err := d.describe(dom)
	if err != nil {
		return cur, err
	}
	name := cur.Name
	if cur.CPUs != spec.CPUs || cur.Memory != spec.Memory || cur.CPUMode != normCPUMode(spec.CPUMode) {
		doc, err := dom.GetXMLDesc(libvirt.DOMAIN_XML_INACTIVE)
		if err != nil {
			return cur, fmt.Errorf("update server %s: %w", name, err)
		}
		var x libvirtxml.Domain
		if err := x.Unmarshal(doc); err != nil {
			return cur, fmt.Errorf("update server %s: %w", name, err)
		}
		x.VCPU = &libvirtxml.DomainVCPU{Value: uint(spec.CPUs)}
		x.Memory = &libvirtxml.DomainMemory{Value: uint(spec.Memory >> 10), Unit: "KiB"}
		x.CurrentMemory = &libvirtxml.DomainCurrentMemory{Value: uint(spec.Memory >> 10), Unit: "KiB"}
		setCPUMode(&x, spec.CPUMode)
		x.Metadata = &libvirtxml.DomainMetadata{XML: metadataXML(spec.Stack, spec.Address, specHash(spec))}
		var disks []libvirtxml.DomainDisk
		for _, disk := range x.Devices.Disks {
			if disk.Device == "cdrom" || (disk.Target != nil && disk.Target.Dev == "vda") {
				disks = append(disks, disk)
			}
		}
		for i, v := range spec.Volumes {
			disks = append(disks, dataDisk(v, dataDev(i)))
		}
		x.Devices.Disks = disks
		doc, err = x.Marshal()
		if err != nil {
			return cur, fmt.Errorf("update server %s: %w", name, err)
		}
		ndom, err := d.conn.DomainDefineXMLFlags(doc, libvirt.DOMAIN_DEFINE_VALIDATE)
		if err != nil {
			return cur, fmt.Errorf("update server %s: redefine: %w", name, err)
		}
		ndom.Free()
		if cur.Running {
			if err := d.stop(ctx, dom); err != nil {
				return cur, fmt.Errorf("update server %s: stop: %w", name, err)
			}
		}
		return d.boot(ctx, dom, spec, true)
	}
	if err := d.plug(dom, cur, spec.Volumes); err != nil {
		s, _ := d.describe(dom)
		return s, fmt.Errorf("update server %s: %w", name, err)
	}
	return d.boot(ctx, dom, spec, false)
}

// plug detaches the data volumes that are no longer wanted and attaches the
// new ones on free targets, live and in the definition when running.
func (d *Driver) plug(dom *libvirt.Domain, cur Server, want []string) error {
	flags := libvirt.DOMAIN_DEVICE_MODIFY_CONFIG
	if cur.Running {
		flags |= libvirt.DOMAIN_DEVICE_MODIFY_LIVE
	}
	doc, err := dom.GetXMLDesc(0)
	if err != nil {
		return err
	}
	var x libvirtxml.Domain
	if err := x.Unmarshal(doc); err != nil {
		return err
	}
	wanted := map[string]bool{}
	for _, v := range want {
		wanted[v] = true
	}
	used := map[string]bool{}
	have := map[string]bool{}
	for _, disk := range x.Devices.Disks {
		if disk.Target != nil {
			used[disk.Target.Dev] = true
		}
		p := diskPath(disk)
		if disk.Device == "cdrom" || (disk.Target != nil && disk.Target.Dev == "vda") {
			continue
		}
		have[p] = true
		if wanted[p] {
			continue
		}
		dd := dataDisk(p, disk.Target.Dev)
		ddoc, err := dd.Marshal()
		if err != nil {
			return err
		}
		if err := dom.DetachDeviceFlags(ddoc, flags); err != nil {
			return fmt.Errorf("detach %s: %w", p, err)
		}
		if cur.Running {
			if err := waitDetached(dom, disk.Target.Dev, 30*time.Second); err != nil {
				return fmt.Errorf("detach %s: %w", p, err)
			}
		}
		delete(used, disk.Target.Dev)
	}
	next := 0
	for _, v := range want {
		if have[v] {
			continue
		}
		for used[dataDev(next)] {
			next++
		}
		dev := dataDev(next)
		used[dev] = true
		ad := dataDisk(v, dev)
		adoc, err := ad.Marshal()
		if err != nil {
			return err
		}
		if err := dom.AttachDeviceFlags(adoc, flags); err != nil {
			return fmt.Errorf("attach %s as %s: %w", v, dev, err)
		}
	}
	return nil
}

// waitDetached waits for the guest to release a hot-unplugged disk.
func waitDetached(dom *libvirt.Domain, dev string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		doc, err := dom.GetXMLDesc(0)
		if err != nil {
			return err
		}
		if !strings.Contains(doc, "dev='"+dev+"'") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the guest did not release %s within %s", dev, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop shuts the domain down cleanly, destroying it after ShutdownTimeout.
func (d *Driver) stop(ctx context.Context, dom *libvirt.Domain) error {
	if active, err := dom.IsActive(); err != nil || !active {
		return err
	}
	if err := dom.Shutdown(); err == nil {
		deadline := time.Now().Add(d.ShutdownTimeout)
		for time.Now().Before(deadline) && ctx.Err() == nil {
			if active, err := dom.IsActive(); err == nil && !active {
				return nil
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	if err := dom.Destroy(); err != nil {
		if active, _ := dom.IsActive(); active {
			return err
		}
	}
	return nil
}

// Delete destroys and undefines the domain and removes its overlay, seed
// and console log. A server already gone is not an error.
func (d *Driver) Delete(ctx context.Context, stack, address string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	name := Name(stack, address)
	dom, err := d.lookup(stack, address)
	switch {
	case errors.Is(err, executors.ErrNotFound):
	case err != nil:
		return err
	default:
		defer dom.Free()
		if active, _ := dom.IsActive(); active {
			if err := dom.Destroy(); err != nil && !volume.IsCode(err, libvirt.ERR_OPERATION_INVALID) {
				return fmt.Errorf("delete server %s: destroy: %w", name, err)
			}
		}
		flags := libvirt.DOMAIN_UNDEFINE_NVRAM | libvirt.DOMAIN_UNDEFINE_MANAGED_SAVE |
			libvirt.DOMAIN_UNDEFINE_SNAPSHOTS_METADATA | libvirt.DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
		if err := dom.UndefineFlags(flags); err != nil && !volume.IsCode(err, libvirt.ERR_NO_DOMAIN) {
			return fmt.Errorf("delete server %s: undefine: %w", name, err)
		}
	}
	if err := d.vols.DeleteName(d.overlayName(stack, address)); err != nil {
		return fmt.Errorf("delete server %s: %w", name, err)
	}
	seed := filepath.Join(d.vols.Dir(), d.seedName(stack, address))
	if err := d.vols.DeleteName(d.seedName(stack, address)); err != nil {
		return fmt.Errorf("delete server %s: %w", name, err)
	}
	for _, f := range []string{seed, d.ConsoleLog(stack, address)} {
		if err := os.Remove(f); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("delete server %s: %w", name, err)
		}
	}
	return nil
}

// GrowDisk grows a volume file that a running kiln domain has attached,
// through that domain (virDomainBlockResize): qemu holds the image open, so
// it is the one to resize it, and the guest sees the new size at once. It
// reports false, and does nothing, when no running kiln domain has the file.
func (d *Driver) GrowDisk(ctx context.Context, path string, size int64) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	doms, err := d.conn.ListAllDomains(libvirt.CONNECT_LIST_DOMAINS_ACTIVE)
	if err != nil {
		return false, fmt.Errorf("grow %s: list servers: %w", path, err)
	}
	defer func() {
		for i := range doms {
			doms[i].Free()
		}
	}()
	for i := range doms {
		dom := &doms[i]
		if _, ok := owner(dom, libvirt.DOMAIN_AFFECT_CURRENT); !ok {
			continue
		}
		doc, err := dom.GetXMLDesc(0)
		if err != nil {
			continue
		}
		var x libvirtxml.Domain
		if x.Unmarshal(doc) != nil || x.Devices == nil {
			continue
		}
		for _, disk := range x.Devices.Disks {
			if diskPath(disk) != path || disk.Target == nil {
				continue
			}
			if err := dom.BlockResize(disk.Target.Dev, uint64(size), libvirt.DOMAIN_BLOCK_RESIZE_BYTES); err != nil {
				name, _ := dom.GetName()
				return true, fmt.Errorf("grow %s attached to %s as %s: %w", path, name, disk.Target.Dev, err)
			}
			return true, nil
		}
	}
	return false, nil
}
