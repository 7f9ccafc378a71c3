// Package testguest finds and boots kiln's test guest image
// (build/images/kiln-test-guest.qcow2, made by `make test-image`, i.e.
// scripts/build-test-image.sh): a Debian kernel and a busybox initramfs that
// reads its NoCloud seed and answers HTTP on port 80 with its hostname and the
// names in /sys/block.
//
// Boot runs the guest under plain qemu (KVM when a probe guest runs under it, TCG
// otherwise) with user-mode networking and port 80 forwarded to a loopback
// port, for tests that need a real guest without libvirt.
package testguest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/executors/accel"
)

// ImageRel is the image's path relative to the module root.
const ImageRel = "build/images/kiln-test-guest.qcow2"

// ReadyMarker starts the serial console line the guest prints when it serves
// HTTP: "KILN-GUEST-READY <hostname> <address>".
const ReadyMarker = "KILN-GUEST-READY"

const modulePath = "github.com/kiln-dev/kiln"

// ModuleRoot returns the directory of kiln's go.mod, searched upwards from the
// working directory (a test's working directory is its package directory).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), "module "+modulePath) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of %s above the working directory", modulePath)
		}
		dir = parent
	}
}

// ImagePath returns the absolute path of the test guest image, or an error
// that says how to build it.
func ImagePath() (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, ImageRel)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("test guest image %s is missing: run `make test-image` (scripts/build-test-image.sh) in %s: %w", ImageRel, root, err)
	}
	return p, nil
}

// ImageSum returns the path of the test guest image (as ImagePath) and the
// hex sha256 of its content.
func ImageSum() (path, sum string, err error) {
	path, err = ImagePath()
	if err != nil {
		return "", "", err
	}
	f, err := os.Open(path)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", "", err
	}
	return path, hex.EncodeToString(h.Sum(nil)), nil
}

// Image is ImageSum for a test: it fails t when the image is missing.
func Image(t testing.TB) (path, sum string) {
	t.Helper()
	path, sum, err := ImageSum()
	if err != nil {
		t.Fatal(err)
	}
	return path, sum
}

// tool returns the path of a program, or an error naming the Debian package.
func tool(name, pkg string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found: install it with `apt-get install %s`", name, pkg)
	}
	return p, nil
}

// Options describe one guest.
type Options struct {
	Dir       string // working directory for the overlay, seed and log (required; t.TempDir())
	Seed      []byte // NoCloud seed ISO, attached as an IDE CD-ROM; none when nil
	MAC       string // NIC MAC address; qemu's default when empty
	MemoryMiB int    // default 256
}

// Guest is a running qemu process booted from an overlay of the test image.
type Guest struct {
	// HTTPAddr is the loopback host:port forwarded to the guest's port 80.
	HTTPAddr string
	// LogPath is the file the guest's serial console is written to.
	LogPath string
	// Started is when qemu was started.
	Started time.Time
	// QMPPath is qemu's QMP control socket.
	QMPPath string

	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	stderr  *bytes.Buffer
}

// Boot makes a copy-on-write overlay of the test image in opts.Dir and starts
// qemu on it. It returns once qemu runs; use WaitHTTP to wait for the guest.
func Boot(ctx context.Context, opts Options) (*Guest, error) {
	if opts.Dir == "" {
		return nil, errors.New("testguest: Options.Dir is required")
	}
	image, err := ImagePath()
	if err != nil {
		return nil, err
	}
	qemu, err := tool("qemu-system-x86_64", "qemu-system-x86")
	if err != nil {
		return nil, err
	}
	qemuImg, err := tool("qemu-img", "qemu-utils")
	if err != nil {
		return nil, err
	}
	overlay := filepath.Join(opts.Dir, "root.qcow2")
	if out, err := exec.CommandContext(ctx, qemuImg, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", image, overlay).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("qemu-img create overlay: %v: %s", err, out)
	}
	mem := opts.MemoryMiB
	if mem == 0 {
		mem = 256
	}
	accel := Accel(ctx)
	log := filepath.Join(opts.Dir, "serial.log")
	qmp := filepath.Join(opts.Dir, "qmp.sock")
	args := []string{
		"-nodefaults", "-display", "none", "-monitor", "none",
		"-qmp", "unix:" + qmp + ",server=on,wait=off",
		"-accel", accel, "-m", strconv.Itoa(mem),
		"-serial", "file:" + log,
		"-drive", "file=" + overlay + ",format=qcow2,if=virtio",
	}
	if opts.Seed != nil {
		seed := filepath.Join(opts.Dir, "seed.iso")
		if err := os.WriteFile(seed, opts.Seed, 0o644); err != nil {
			return nil, err
		}
		args = append(args, "-drive", "file="+seed+",format=raw,if=ide,media=cdrom,readonly=on")
	}
	nic := "virtio-net-pci,netdev=n0,romfile="
	if opts.MAC != "" {
		nic += ",mac=" + opts.MAC
	}
	args = append(args, "-device", nic)

	// A free loopback port can be taken between our probe and qemu's bind;
	// then qemu exits at once and we try another.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		a := append(append([]string(nil), args...),
			"-netdev", fmt.Sprintf("user,id=n0,hostfwd=tcp:127.0.0.1:%d-:80", port))
		g := &Guest{
			HTTPAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
			LogPath:  log,
			QMPPath:  qmp,
			done:     make(chan struct{}),
			stderr:   &bytes.Buffer{},
		}
		g.cmd = exec.Command(qemu, a...)
		g.cmd.Stdout = g.stderr
		g.cmd.Stderr = g.stderr
		g.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		g.Started = time.Now()
		if err := g.cmd.Start(); err != nil {
			return nil, fmt.Errorf("start qemu: %w", err)
		}
		go func() { g.waitErr = g.cmd.Wait(); close(g.done) }()
		select {
		case <-g.done:
			lastErr = fmt.Errorf("qemu exited at once: %v: %s", g.waitErr, g.stderr)
			if strings.Contains(g.stderr.String(), "host forwarding") {
				continue
			}
			return nil, lastErr
		case <-time.After(300 * time.Millisecond):
			return g, nil
		}
	}
	return nil, lastErr
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Get fetches path from the guest's port 80 once.
func (g *Guest) Get(ctx context.Context, path string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+g.HTTPAddr+path, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return string(b), nil
}

// WaitHTTP polls the guest's port 80 until it answers, qemu exits or ctx
// ends; the error then holds the tail of the serial console.
func (g *Guest) WaitHTTP(ctx context.Context) (string, error) {
	var lastErr error
	for {
		body, err := g.Get(ctx, "/")
		if err == nil {
			return body, nil
		}
		lastErr = err
		select {
		case <-g.done:
			return "", fmt.Errorf("qemu exited before the guest answered: %v: %s\nserial console:\n%s", g.waitErr, g.stderr, g.tail())
		case <-ctx.Done():
			return "", fmt.Errorf("guest did not answer on %s (%v; last error: %v)\nserial console:\n%s", g.HTTPAddr, ctx.Err(), lastErr, g.tail())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// SerialLog returns what the guest has written to its serial console.
func (g *Guest) SerialLog() string {
	b, _ := os.ReadFile(g.LogPath)
	return string(b)
}

func (g *Guest) tail() string {
	s := g.SerialLog()
	if len(s) > 4000 {
		s = "..." + s[len(s)-4000:]
	}
	return s
}

// Close kills qemu and waits for it to exit. The overlay, seed and log stay in
// Options.Dir for the caller (a test's TempDir) to remove.
func (g *Guest) Close() error {
	select {
	case <-g.done:
		return nil
	default:
	}
	_ = g.cmd.Process.Kill()
	<-g.done
	return nil
}

var (
	accelOnce sync.Once
	accelName string
)

// Accel is "kvm" when a probe guest (executors/accel's boot sector) runs to
// its marker under plain `qemu -accel kvm` here, else "tcg": a /dev/kvm that
// opens proves nothing (nested KVM stops real guests with a KVM internal
// error). The answer is kept for the process.
func Accel(ctx context.Context) string {
	accelOnce.Do(func() { accelName = probeKVM(ctx) })
	return accelName
}

func probeKVM(ctx context.Context) string {
	if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err != nil {
		return "tcg"
	} else {
		f.Close()
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return "tcg"
	}
	dir, err := os.MkdirTemp("", "kiln-kvm-probe-")
	if err != nil {
		return "tcg"
	}
	defer os.RemoveAll(dir)
	disk, log := filepath.Join(dir, "probe.img"), filepath.Join(dir, "serial.log")
	if os.WriteFile(disk, accel.Payload(), 0o644) != nil {
		return "tcg"
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, "-nodefaults", "-display", "none", "-monitor", "none", "-no-reboot",
		"-accel", "kvm", "-m", "16", "-serial", "file:"+log, "-drive", "file="+disk+",format=raw,if=ide")
	errLog, err := os.Create(filepath.Join(dir, "stderr.log"))
	if err != nil {
		return "tcg"
	}
	defer errLog.Close()
	cmd.Stderr = errLog
	if err := cmd.Start(); err != nil {
		return "tcg"
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	defer func() { cmd.Process.Kill(); <-done }()
	for {
		if out, _ := os.ReadFile(log); strings.Contains(string(out), accel.OKMarker) {
			return "kvm"
		}
		if out, _ := os.ReadFile(errLog.Name()); strings.Contains(string(out), "KVM internal error") {
			return "tcg"
		}
		select {
		case <-done: // qemu stopped (a KVM internal error ends it)
			if out, _ := os.ReadFile(log); strings.Contains(string(out), accel.OKMarker) {
				return "kvm"
			}
			return "tcg"
		case <-ctx.Done():
			return "tcg"
		case <-time.After(50 * time.Millisecond):
		}
	}
}
