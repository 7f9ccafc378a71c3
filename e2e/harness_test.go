package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"libvirt.org/go/libvirt"

	"github.com/kiln-dev/kiln/executors/network"
	"github.com/kiln-dev/kiln/executors/volume"
	"github.com/kiln-dev/kiln/internal/libvirttest"
	"github.com/kiln-dev/kiln/internal/netnstest"
	"github.com/kiln-dev/kiln/internal/testguest"
)

// TestMain runs the package inside a fresh network namespace with a private
// libvirtd and virtlogd (internal/libvirttest): everything kiln makes here
// (bridges, iptables rules, dnsmasq, domains) stays in that namespace.
func TestMain(m *testing.M) {
	code := libvirttest.Main(m)
	if sharedDir != "" {
		os.RemoveAll(sharedDir)
	}
	os.Exit(code)
}

// sharedDir is the one work directory of this test binary. One, not one
// per test: the embedded agent defines the host's libvirt pools
// (kiln-images, kiln-volumes) under the ./.kiln of the first kiln that
// runs, and they would point into a removed directory if that were a
// test's t.TempDir.
var (
	sharedOnce sync.Once
	sharedDir  string
	sharedErr  error
)

var (
	buildOnce sync.Once
	kilnBin   string
	buildErr  error
)

// BinEnv names an environment variable with the path of a kiln binary to
// test instead of building one from this tree.
const BinEnv = "KILN_E2E_BIN"

// kilnBinary builds the kiln binary once per test binary.
func kilnBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if p := os.Getenv(BinEnv); p != "" {
			kilnBin, buildErr = filepath.Abs(p)
			return
		}
		dir, err := os.MkdirTemp("", "kiln-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		kilnBin = filepath.Join(dir, "kiln")
		gobin := "go"
		if _, err := exec.LookPath(gobin); err != nil {
			gobin = "/usr/local/go/bin/go"
		}
		out, err := exec.Command(gobin, "build", "-o", kilnBin, "github.com/kiln-dev/kiln").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build kiln: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return kilnBin
}

// guestImage returns the test guest's path and sha256.
func guestImage(t testing.TB) (path, sum string) {
	t.Helper()
	path, sum, err := testguest.ImageSum()
	if err != nil {
		t.Fatal(err)
	}
	return path, sum
}

// workdir is a directory kiln runs in: its embedded default keeps its
// state in ./.kiln there.
type workdir struct {
	t   testing.TB
	dir string
	uri string
}

func newWorkdir(t testing.TB) *workdir {
	t.Helper()
	netnstest.Guard(t)
	kilnBinary(t)
	sharedOnce.Do(func() { sharedDir, sharedErr = os.MkdirTemp("", "kiln-e2e-") })
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return &workdir{t: t, dir: sharedDir, uri: libvirttest.Shared(t).URI}
}

// write writes the template main.hcl.
func (w *workdir) write(tmpl string) {
	w.t.Helper()
	if err := os.WriteFile(filepath.Join(w.dir, "main.hcl"), []byte(tmpl), 0o644); err != nil {
		w.t.Fatal(err)
	}
}

// command returns a kiln command in the work directory, with the embedded
// default (no KILN_ADDR) and the real drivers on the private libvirtd.
func (w *workdir) command(args ...string) *exec.Cmd {
	cmd := exec.Command(kilnBin, args...)
	cmd.Dir = w.dir
	env := []string{}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "KILN_ADDR=") || strings.HasPrefix(kv, "KILN_EMBEDDED_") || strings.HasPrefix(kv, "KILN_TOKEN=") {
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = append(env, "KILN_LIBVIRT_URI="+w.uri)
	return cmd
}

// run runs kiln and returns its exit code, stdout and stderr. It fails the
// test when kiln cannot be started or does not end within ten minutes.
func (w *workdir) run(args ...string) (int, string, string) {
	w.t.Helper()
	cmd := w.command(args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		w.t.Fatalf("start kiln %v: %v", args, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Minute):
		cmd.Process.Kill()
		<-done
		w.t.Fatalf("kiln %v did not end within 10 minutes\nstdout:\n%s\nstderr:\n%s", args, &stdout, &stderr)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// must runs kiln and fails the test unless it exits 0.
func (w *workdir) must(args ...string) string {
	w.t.Helper()
	code, out, errOut := w.run(args...)
	if code != 0 {
		w.t.Fatalf("kiln %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// hostObjects is what exists on the host (inside the test namespace).
type hostObjects struct {
	domains []string // names of every libvirt domain
	running int      // of which running
	volumes []string // volumes of the kiln-volumes pool
	bridges []string // kiln bridges
	rules   []string // iptables rules (nat and filter) with the stack's owner comment
	dnsmasq int      // dnsmasq processes in this namespace
}

func (h hostObjects) String() string {
	return fmt.Sprintf("domains %v (%d running), volumes %v, bridges %v, %d rules, %d dnsmasq",
		h.domains, h.running, h.volumes, h.bridges, len(h.rules), h.dnsmasq)
}

func connect(t testing.TB) *libvirt.Connect {
	t.Helper()
	conn, err := libvirttest.Shared(t).Connect()
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// observe lists the host's objects of the stack.
func observe(t testing.TB, stack string) hostObjects {
	t.Helper()
	var h hostObjects
	conn := connect(t)
	defer conn.Close()
	doms, err := conn.ListAllDomains(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range doms {
		name, _ := d.GetName()
		h.domains = append(h.domains, name)
		if active, _ := d.IsActive(); active {
			h.running++
		}
		d.Free()
	}
	if pool, err := conn.LookupStoragePoolByName(volume.PoolName); err == nil {
		pool.Refresh(0)
		vols, err := pool.ListAllStorageVolumes(0)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vols {
			name, _ := v.GetName()
			h.volumes = append(h.volumes, name)
			v.Free()
		}
		pool.Free()
	}
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, network.BridgePrefix) {
			h.bridges = append(h.bridges, l.Attrs().Name)
		}
	}
	slices.Sort(h.domains)
	slices.Sort(h.volumes)
	slices.Sort(h.bridges)
	h.rules = stackRules(t, stack)
	h.dnsmasq = len(netnstest.DnsmasqPids(t))
	return h
}

// stackRules lists the iptables rules tagged with one of the stack's owners.
func stackRules(t testing.TB, stack string) []string {
	t.Helper()
	return netnstest.Rules(t, func(l string) bool { return strings.Contains(l, "kiln:"+stack+"/") })
}

// duplicates returns the entries of l that occur more than once.
func duplicates(l []string) []string {
	seen := map[string]int{}
	var out []string
	for _, s := range l {
		seen[s]++
		if seen[s] == 2 {
			out = append(out, s)
		}
	}
	return out
}
