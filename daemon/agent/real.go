package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"libvirt.org/go/libvirt"

	"github.com/kiln-dev/kiln/executors/accel"
	"github.com/kiln-dev/kiln/executors/host"
	"github.com/kiln-dev/kiln/executors/image"
	"github.com/kiln-dev/kiln/executors/kinds"
	"github.com/kiln-dev/kiln/executors/network"
	"github.com/kiln-dev/kiln/executors/portforward"
	"github.com/kiln-dev/kiln/executors/records"
	"github.com/kiln-dev/kiln/executors/server"
	"github.com/kiln-dev/kiln/executors/volume"
	"github.com/kiln-dev/kiln/spec"
)

// LibvirtURIEnv names the environment variable that overrides the libvirt
// connection URI of the real drivers.
const LibvirtURIEnv = "KILN_LIBVIRT_URI"

// DefaultLibvirtURI is the libvirt connection of the real drivers.
const DefaultLibvirtURI = "qemu:///system"

// Real is the set of real executors of this host: the image cache, bridges
// with dnsmasq and iptables, volumes, libvirt domains and port forwards, all
// on one libvirt connection, with the agent's own bookkeeping (which
// instance a physical name belongs to, each network's DHCP hosts) in files
// under DataDir (see executors/records).
type Real struct {
	DataDir string
	conn    *libvirt.Connect
	images  *image.Cache
	vols    *volume.Driver
	srv     *server.Driver
	net     *network.Driver
	pf      *portforward.Driver
	signals *server.Signals
	log     *slog.Logger

	// accelWant is what the operator asked for (auto, kvm or tcg); the
	// accelerator in use and why are the server driver's (srv.Accel).
	accelWant string

	// h is what the executors share (executors/host): the records, the
	// host policy (real_policy.go), the locks of objects.
	h host.Host
	// pmu serializes SetPolicy, which sets the policy of h and the cache.
	pmu sync.Mutex
}

// RealDrivers returns the drivers of the real executors (libvirt, bridges,
// iptables, dnsmasq, the image cache), keeping their state under dataDir.
// It first checks that libvirtd answers and that the tools the network
// executors run are installed, and says how to fix it when not; then it
// decides the accelerator (RealOptions.Accel) by a probe.
func RealDrivers(dataDir string, o RealOptions) (Drivers, error) {
	return RealDriversIn(dataDir, StorageDir(dataDir), o)
}

// AccelEnv names the environment variable of the embedded default's
// accelerator choice: auto (the default), kvm or tcg.
const AccelEnv = "KILN_ACCEL"

// RealOptions are the settings of the real executors.
type RealOptions struct {
	// Accel is auto (""), kvm or tcg: auto uses KVM only when a probe
	// guest runs under it here (executors/accel); kvm makes a host where
	// it does not an error at start.
	Accel string
	// SignalPort is the port of the servers' ready URLs
	// (server.DefaultSignalPort when 0).
	SignalPort int
	// AccelCache, when set, is a file that keeps the probe's answer until
	// the host reboots or its libvirt or QEMU version changes (the
	// embedded default, whose agent starts with every kiln command).
	AccelCache string
	Logger     *slog.Logger
	// Policy is what templates may make this host do (the zero value is
	// a remote agent's strict default; see HostPolicy).
	Policy HostPolicy
}

// StorageDirEnv names the directory that holds the libvirt storage pools
// kiln-images and kiln-volumes (the image cache, overlays, seeds, volumes).
const StorageDirEnv = "KILN_STORAGE_DIR"

// HostStorageDir is where the embedded default keeps the storage pools: the
// pools are host-wide libvirt objects shared by every stack on the host, so
// they must not live in one project's ./.kiln.
const HostStorageDir = "/var/lib/kiln/storage"

// StorageDir is $KILN_STORAGE_DIR, or def when it is not set.
func StorageDir(def string) string {
	if d := os.Getenv(StorageDirEnv); d != "" {
		return d
	}
	return def
}

// RealDriversIn is RealDrivers with the storage pools in storageDir.
func RealDriversIn(dataDir, storageDir string, o RealOptions) (Drivers, error) {
	r, err := OpenReal(dataDir, storageDir, o)
	if err != nil {
		return nil, err
	}
	return r.Drivers(), nil
}

// OpenReal connects to libvirtd (KILN_LIBVIRT_URI, default qemu:///system)
// and sets up the executors, with their own state under dataDir and the
// storage pools under storageDir, and decides the accelerator. Close
// releases the connection.
func OpenReal(dataDir, storageDir string, o RealOptions) (*Real, error) {
	if dataDir == "" || storageDir == "" {
		return nil, errors.New("real drivers: no data or storage directory")
	}
	switch o.Accel {
	case "", "auto", "kvm", "tcg":
	default:
		return nil, fmt.Errorf("accelerator %q: want auto, kvm or tcg", o.Accel)
	}
	if err := o.Policy.Check(); err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	uri := os.Getenv(LibvirtURIEnv)
	if uri == "" {
		uri = DefaultLibvirtURI
	}
	conn, err := libvirt.NewConnect(uri)
	if err == nil {
		if _, verr := conn.GetLibVersion(); verr != nil {
			conn.Close()
			err = verr
		}
	}
	if err != nil {
		return nil, fmt.Errorf("libvirtd is not reachable at %s: %v. Install and start it: "+
			"apt-get install libvirt-daemon-system qemu-system-x86 qemu-utils && systemctl start libvirtd virtlogd "+
			"(or run `libvirtd -d; virtlogd -d`); set %s to use another URI", uri, err, LibvirtURIEnv)
	}
	var missing []string
	for _, bin := range []struct{ name, pkg string }{{"iptables", "iptables"}, {"ip", "iproute2"}, {"dnsmasq", "dnsmasq-base"}} {
		if _, err := exec.LookPath(bin.name); err != nil {
			missing = append(missing, bin.name+" (apt-get install "+bin.pkg+")")
		}
	}
	if len(missing) > 0 {
		conn.Close()
		return nil, fmt.Errorf("real drivers: missing %s", strings.Join(missing, ", "))
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		conn.Close()
		return nil, fmt.Errorf("real drivers: data directory: %w", err)
	}
	r := &Real{DataDir: dataDir, conn: conn, h: host.Host{Unknown: spec.IsUnknown}, log: o.Logger, accelWant: o.Accel}
	if r.accelWant == "" {
		r.accelWant = "auto"
	}
	fail := func(err error) (*Real, error) {
		r.Close()
		return nil, fmt.Errorf("real drivers: %w", err)
	}
	if r.images, err = image.New(conn, storageDir); err != nil {
		return fail(err)
	}
	signalPort := o.SignalPort
	if signalPort == 0 {
		signalPort = server.DefaultSignalPort
	}
	o.Policy.ReservedPorts = append(slices.Clone(o.Policy.ReservedPorts), signalPort)
	if err := r.SetPolicy(o.Policy); err != nil {
		return fail(err)
	}
	if r.vols, err = volume.New(conn, storageDir); err != nil {
		return fail(err)
	}
	if r.srv, err = server.New(conn, r.vols, dataDir); err != nil {
		return fail(err)
	}
	// The accelerator: decided once per start by a probe guest, kept for
	// the agent's lifetime (a guest that dies of a KVM internal error
	// later still turns an auto agent to TCG: kvmFailed).
	probeCtx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	choice, err := chooseAccel(probeCtx, conn, r.accelWant, filepath.Join(dataDir, "accel"), o.AccelCache)
	cancel()
	if err != nil {
		r.Close()
		return nil, err
	}
	r.srv.SetAccel(choice.DomainType, choice.Reason)
	if choice.Accel == "kvm" {
		o.Logger.Info("accelerator: kvm", "reason", choice.Reason, "probe", choice.Probe.Round(time.Millisecond))
	} else {
		o.Logger.Warn("accelerator: tcg, guests run without KVM", "reason", choice.Reason, "probe", choice.Probe.Round(time.Millisecond))
	}
	if r.signals, err = server.OpenSignals(dataDir, o.SignalPort, o.Logger.With("subsystem", "ready-signals")); err != nil {
		return fail(err)
	}
	ipt, err := network.NewIPTables()
	if err != nil {
		return fail(err)
	}
	r.net = &network.Driver{DataDir: dataDir, IPTables: ipt, GuestPorts: []int{signalPort}}
	r.pf = &portforward.Driver{IPTables: ipt}
	if r.h.Records, err = records.Open(dataDir); err != nil {
		return fail(err)
	}
	return r, nil
}

// accelCached is the file behind RealOptions.AccelCache.
type accelCached struct {
	Key    string
	Result accel.Result
	Time   time.Time
}

// chooseAccel is accel.Choose, through the cache file when one is given.
func chooseAccel(ctx context.Context, conn *libvirt.Connect, want, dir, cache string) (accel.Result, error) {
	if cache == "" || want == "tcg" {
		return accel.Choose(ctx, conn, want, dir)
	}
	key := accelCacheKey(conn, want)
	var c accelCached
	if data, err := os.ReadFile(cache); err == nil && json.Unmarshal(data, &c) == nil && c.Key == key && c.Result.Accel != "" {
		c.Result.Reason += " (probed " + c.Time.Format(time.RFC3339) + "; kept until the host reboots or libvirt or QEMU changes)"
		c.Result.Probe = 0
		return c.Result, nil
	}
	res, err := accel.Choose(ctx, conn, want, dir)
	if err != nil {
		return res, err
	}
	if data, err := json.Marshal(accelCached{Key: key, Result: res, Time: time.Now().UTC()}); err == nil {
		_ = writeFile(cache, data)
	}
	return res, nil
}

// accelCacheKey changes when the host reboots (its boot id), libvirt or
// QEMU is upgraded, or the choice asked for changes.
func accelCacheKey(conn *libvirt.Connect, want string) string {
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	lib, _ := conn.GetLibVersion()
	hv, _ := conn.GetVersion()
	return fmt.Sprintf("%s/%d/%d/%s", strings.TrimSpace(string(boot)), lib, hv, want)
}

func writeFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Accel is the accelerator new guests run under, kvm or tcg, and why.
func (r *Real) Accel() (accel, reason string) {
	t, why := r.srv.Accel()
	if t == "kvm" {
		return AccelKVM, why
	}
	return AccelTCG, why
}

// kvmFailed turns an auto agent to TCG after a guest died of a KVM
// internal error, and reports whether the create should be tried again
// (once) under TCG.
func (r *Real) kvmFailed(cause error) bool {
	if r.accelWant != "auto" {
		return false
	}
	t, _ := r.srv.Accel()
	if t != "kvm" {
		return false
	}
	r.srv.SetAccel("qemu", "KVM passed the probe at start but a guest then died of a KVM internal error; guests run under TCG from now on")
	r.log.Warn("accelerator: a guest died of a KVM internal error; KVM marked unusable, guests run under TCG from now on", "err", cause)
	return true
}

// Close frees the libvirt handles.
func (r *Real) Close() error {
	if r.signals != nil {
		r.signals.Close()
	}
	if r.images != nil {
		r.images.Close()
	}
	if r.vols != nil {
		r.vols.Close()
	}
	if r.conn != nil {
		_, err := r.conn.Close()
		return err
	}
	return nil
}

// Drivers returns one driver per kind (kinds.All): the kind's executor
// (executors/<kind>'s Executor, over the host state they share) behind
// the one adapter that turns an Action into its typed request (decode.go).
func (r *Real) Drivers() Drivers {
	img := image.Executor{Host: &r.h, Cache: r.images, Progress: fetchProgress}
	return Drivers{
		spec.KindImage:       imageDriver{typed[kinds.ImageAttrs]{r, img}, img},
		spec.KindNetwork:     typed[kinds.NetworkAttrs]{r, network.Executor{Host: &r.h, Driver: r.net}},
		spec.KindVolume:      typed[kinds.VolumeAttrs]{r, volume.Executor{Host: &r.h, Vols: r.vols, Grow: r.srv.GrowDisk}},
		spec.KindServer:      typed[kinds.ServerAttrs]{r, r.server()},
		spec.KindPortForward: typed[kinds.PortForwardAttrs]{r, portforward.Executor{Host: &r.h, Driver: r.pf}},
	}
}

// Hostname is the hostname of a server (kinds.Hostname).
func Hostname(scope, phys string) string { return kinds.Hostname(scope, phys) }

// server is the server kind's executor.
func (r *Real) server() server.Executor {
	return server.Executor{Host: &r.h, Driver: r.srv, Images: r.images, Vols: r.vols, Net: r.net, Signals: r.signals,
		KVMFailed: r.kvmFailed, FetchProgress: fetchProgress, Progress: serverProgress}
}

// Accel returns the accelerator the guests of the drivers d run with and
// why: that of the real drivers, "" for drivers that run no guests.
func Accel(d Drivers) (accel, reason string) {
	r, err := realOf(d)
	if err != nil {
		return "", ""
	}
	return r.Accel()
}

// realOf finds the Real behind a driver set made by RealDrivers.
func realOf(d Drivers) (*Real, error) {
	for _, k := range d {
		if rk, ok := k.(interface{ real() *Real }); ok {
			return rk.real(), nil
		}
	}
	return nil, errors.New("the agent does not run the real drivers")
}
