// Package libvirttest starts a private libvirtd and virtlogd for a test binary
// that already runs in network and mount namespaces of its own (see
// internal/netnstest, which re-executes the test binary under
// `ip netns exec`).
//
// The daemons' whole state — /etc/libvirt, /run/libvirt, /var/lib/libvirt,
// /var/cache/libvirt and /var/log/libvirt — lives on tmpfs mounts made
// private to the test's mount namespace, so the host's libvirt (its
// networks, its virbr0, its domains and pools) is neither seen nor touched,
// and nothing is left when the test process ends.
package libvirttest

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"libvirt.org/go/libvirt"
)

// URI is the connection URI of the private daemon. It is qemu:///system:
// inside the test's mount namespace that is the private libvirtd.
const URI = "qemu:///system"

// stateDirs are the directories libvirtd, virtlogd and qemu write to (or, for
// /etc/libvirt, read their configuration and persistent definitions from).
var stateDirs = []string{
	"/etc/libvirt",
	"/run/libvirt",
	"/var/lib/libvirt",
	"/var/cache/libvirt",
	"/var/log/libvirt",
}

// etc holds the daemons' configuration files, written to /etc/libvirt
// (scripts/demo.sh copies the same files).
//
//go:embed etc/*.conf
var etc embed.FS

// Daemon is a running private libvirtd with its virtlogd.
type Daemon struct {
	// URI connects to this daemon.
	URI string

	libvirtd *exec.Cmd
	virtlogd *exec.Cmd
	exited   chan struct{} // closed when libvirtd has exited
}

// InPrivateNamespaces reports an error unless the calling process has a
// network namespace and a mount namespace other than those of its parent (the
// test binary that re-executed it under `ip netns exec`) and of PID 1 where
// that is readable. Start refuses to run otherwise: mounting over
// /etc/libvirt in the host's mount namespace would hide the host's libvirt.
func InPrivateNamespaces() error {
	for _, ns := range []string{"net", "mnt"} {
		self, err := os.Readlink("/proc/self/ns/" + ns)
		if err != nil {
			return fmt.Errorf("read own %s namespace: %w", ns, err)
		}
		compared := 0
		for _, pid := range []int{1, os.Getppid()} {
			other, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
			if err != nil {
				continue
			}
			compared++
			if self == other {
				return fmt.Errorf("this process shares the %s namespace of pid %d (%s): run the test inside its own namespaces (ip netns exec)", ns, pid, self)
			}
		}
		if compared == 0 {
			return fmt.Errorf("cannot read the %s namespace of pid 1 or of the parent process to check that ours is private", ns)
		}
	}
	return nil
}

// Start mounts private tmpfs state directories, writes a test configuration
// and starts virtlogd and libvirtd as children of the calling process. It
// returns once the daemon answers on its socket. Stop undoes everything.
func Start(ctx context.Context) (*Daemon, error) {
	if err := InPrivateNamespaces(); err != nil {
		return nil, fmt.Errorf("libvirttest: %w", err)
	}
	for _, bin := range []string{"libvirtd", "virtlogd", "qemu-system-x86_64", "qemu-img"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("libvirttest: %s is missing (apt-get install libvirt-daemon-system qemu-system-x86 qemu-utils): %w", bin, err)
		}
	}
	// Mounts made below must never reach the host's mount namespace, even
	// if ours was made shared: make the whole tree a slave first.
	if err := syscall.Mount("", "/", "", syscall.MS_SLAVE|syscall.MS_REC, ""); err != nil {
		return nil, fmt.Errorf("libvirttest: make / rslave: %w", err)
	}
	for _, dir := range stateDirs {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("libvirttest: %w", err)
		}
		if err := syscall.Mount("kiln-libvirttest", dir, "tmpfs", 0, "mode=0755"); err != nil {
			return nil, fmt.Errorf("libvirttest: mount tmpfs on %s: %w", dir, err)
		}
		if err := syscall.Mount("", dir, "", syscall.MS_PRIVATE, ""); err != nil {
			return nil, fmt.Errorf("libvirttest: make %s private: %w", dir, err)
		}
	}
	confs, err := fs.Glob(etc, "etc/*.conf")
	if err != nil {
		return nil, fmt.Errorf("libvirttest: %w", err)
	}
	for _, name := range confs {
		body, err := etc.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("libvirttest: %w", err)
		}
		if err := os.WriteFile(filepath.Join("/etc/libvirt", filepath.Base(name)), body, 0o644); err != nil {
			return nil, fmt.Errorf("libvirttest: %w", err)
		}
	}
	for _, dir := range []string{"/etc/libvirt/qemu", "/var/lib/libvirt/qemu", "/var/log/libvirt/qemu", "/var/cache/libvirt/qemu"} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("libvirttest: %w", err)
		}
	}

	d := &Daemon{URI: URI, exited: make(chan struct{})}
	d.virtlogd = daemonCmd("virtlogd", "-p", "/run/libvirt/virtlogd.pid", "-f", "/etc/libvirt/virtlogd.conf")
	if err := d.virtlogd.Start(); err != nil {
		d.unmount()
		return nil, fmt.Errorf("libvirttest: start virtlogd: %w", err)
	}
	if err := waitPath(ctx, "/run/libvirt/virtlogd-sock", 10*time.Second); err != nil {
		d.Stop()
		return nil, fmt.Errorf("libvirttest: virtlogd: %w\n%s", err, tail("/var/log/libvirt/virtlogd.log"))
	}
	d.libvirtd = daemonCmd("libvirtd", "-p", "/run/libvirt/libvirtd.pid", "-f", "/etc/libvirt/libvirtd.conf")
	if err := d.libvirtd.Start(); err != nil {
		d.Stop()
		return nil, fmt.Errorf("libvirttest: start libvirtd: %w", err)
	}
	go func() { d.libvirtd.Wait(); close(d.exited) }()
	if err := d.waitReady(ctx, 30*time.Second); err != nil {
		d.Stop()
		return nil, fmt.Errorf("libvirttest: libvirtd: %w\n%s", err, tail("/var/log/libvirt/libvirtd.log"))
	}
	return d, nil
}

func daemonCmd(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	out, err := os.Create(filepath.Join("/var/log/libvirt", name+".out"))
	if err == nil {
		cmd.Stdout, cmd.Stderr = out, out
	}
	// Its own process group: a Ctrl-C on the test does not race Stop. No
	// Pdeathsig: it fires when the OS thread that forked the daemon exits,
	// and netnstest's NS.Do throws threads away (a daemon killed in the
	// middle of a test). If the test binary dies, netnstest.Run kills what
	// is left in the namespace and deletes it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

func waitPath(ctx context.Context, path string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %s", path, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (d *Daemon) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		select {
		case <-d.exited:
			return errors.New("libvirtd exited during start")
		default:
		}
		if _, err := os.Stat("/run/libvirt/libvirt-sock"); err == nil {
			conn, err := libvirt.NewConnect(d.URI)
			if err == nil {
				_, verr := conn.GetLibVersion()
				conn.Close()
				if verr == nil {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer on %s within %s", d.URI, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Connect opens a connection to the private daemon.
func (d *Daemon) Connect() (*libvirt.Connect, error) {
	return libvirt.NewConnect(d.URI)
}

// Log returns the end of the daemon's log, for a failing test's message.
func (d *Daemon) Log() string {
	return tail("/var/log/libvirt/libvirtd.log")
}

// QemuLog returns the end of the qemu log of the named domain.
func (d *Daemon) QemuLog(domain string) string {
	return tail(filepath.Join("/var/log/libvirt/qemu", domain+".log"))
}

// Stop destroys every domain, stops libvirtd and virtlogd, kills any qemu
// left behind and unmounts the private state directories.
func (d *Daemon) Stop() error {
	var errs []error
	if d.libvirtd != nil && d.libvirtd.Process != nil {
		if conn, err := libvirt.NewConnect(d.URI); err == nil {
			doms, _ := conn.ListAllDomains(0)
			for _, dom := range doms {
				if active, _ := dom.IsActive(); active {
					dom.DestroyFlags(libvirt.DOMAIN_DESTROY_DEFAULT)
				}
				dom.Free()
			}
			conn.Close()
		}
		d.libvirtd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(10 * time.Second):
			d.libvirtd.Process.Kill()
			<-d.exited
		}
	}
	errs = append(errs, killQemu())
	if d.virtlogd != nil && d.virtlogd.Process != nil {
		d.virtlogd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { d.virtlogd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			d.virtlogd.Process.Kill()
			<-done
		}
	}
	errs = append(errs, d.unmount())
	return errors.Join(errs...)
}

// killQemu kills the qemu processes whose pid files libvirtd left in
// /run/libvirt/qemu (domains it could not destroy).
func killQemu() error {
	pids, _ := filepath.Glob("/run/libvirt/qemu/*.pid")
	var errs []error
	for _, f := range pids {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 1 {
			continue
		}
		// Only a qemu: a stale pid file must not make us kill a stranger.
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if !bytes.HasPrefix(comm, []byte("qemu")) {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("kill qemu %d: %w", pid, err))
		}
	}
	return errors.Join(errs...)
}

func (d *Daemon) unmount() error {
	var errs []error
	for i := len(stateDirs) - 1; i >= 0; i-- {
		if err := syscall.Unmount(stateDirs[i], syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", stateDirs[i], err))
		}
	}
	return errors.Join(errs...)
}

func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%s: %v)", path, err)
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
