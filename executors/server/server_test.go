package server_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/executors"
	"github.com/kiln-dev/kiln/executors/image"
	"github.com/kiln-dev/kiln/executors/server"
	"github.com/kiln-dev/kiln/executors/volume"
	"github.com/kiln-dev/kiln/internal/libvirttest"
	"github.com/kiln-dev/kiln/internal/testguest"
	"github.com/kiln-dev/kiln/internal/testwait"
)

func TestMain(m *testing.M) { os.Exit(libvirttest.Main(m)) }

func TestMAC(t *testing.T) {
	a := server.MAC("s", "server.web[0]", "network.lan")
	if a != server.MAC("s", "server.web[0]", "network.lan") || !strings.HasPrefix(a, "52:54:00:") || len(a) != 17 {
		t.Fatalf("MAC = %q: not deterministic or not 52:54:00:xx:xx:xx", a)
	}
	if a == server.MAC("s", "server.web[1]", "network.lan") || a == server.MAC("s", "server.web[0]", "network.db") {
		t.Fatalf("MACs of different NICs collide")
	}
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

type fixture struct {
	d      *libvirttest.Daemon
	images *image.Cache
	vols   *volume.Driver
	srv    *server.Driver
	img    image.Image
}

func setup(t testing.TB) *fixture {
	t.Helper()
	d := libvirttest.Shared(t)
	conn, dataDir := libvirttest.Conn(t), libvirttest.Dir(t)
	images, err := image.New(conn, dataDir)
	if err != nil {
		t.Fatal(err)
	}
	images.SetPolicy(image.Policy{AllowDirs: []string{"/"}}) // the test guest's file
	vols, err := volume.New(conn, dataDir)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(conn, vols, dataDir)
	if err != nil {
		t.Fatal(err)
	}
	srv.ShutdownTimeout = 3 * time.Second // the test guest ignores ACPI shutdown
	path, sum := testguest.Image(t)
	img, err := images.Create(context.Background(), image.Template{Source: path, SHA256: sum}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{d: d, images: images, vols: vols, srv: srv, img: img}
}

// bridge makes a bridge with a gateway address in the test's namespace.
func bridge(t *testing.T, name, cidr string) {
	run(t, "ip", "link", "add", name, "type", "bridge")
	t.Cleanup(func() { exec.Command("ip", "link", "del", name).Run() })
	run(t, "ip", "addr", "add", cidr, "dev", name)
	run(t, "ip", "link", "set", name, "up")
}

// waitHTTP polls url until the body satisfies ok, for at most limit.
func waitHTTP(t *testing.T, f *fixture, name, url string, limit time.Duration, ok func(string) bool) string {
	t.Helper()
	client := &http.Client{Timeout: 3 * time.Second}
	var last string
	answered := testwait.Until(limit, 500*time.Millisecond, func() bool {
		resp, err := client.Get(url)
		if err != nil {
			last = err.Error()
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		last = string(b)
		return ok(last)
	})
	if answered {
		return last
	}
	console, _ := os.ReadFile(f.srv.ConsoleLog("s1", "server.web[0]"))
	t.Fatalf("%s did not answer as expected within %s; last: %q\nconsole:\n%s\nqemu log:\n%s", url, limit, last, console, f.d.QemuLog(name))
	return ""
}

func TestServerLifecycle(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	bridge(t, "kbr0", "10.0.0.1/24")
	const stack, addr = "s1", "server.web[0]"
	name := server.Name(stack, addr)

	if _, err := f.srv.Read(ctx, stack, addr); !errors.Is(err, executors.ErrNotFound) {
		t.Fatalf("Read before create: err = %v, want ErrNotFound", err)
	}
	data, err := f.vols.Create(ctx, volume.Spec{Stack: stack, Address: "volume.data[0]", Size: 16 << 20, Format: "raw"})
	if err != nil {
		t.Fatal(err)
	}
	spec := server.Spec{
		Stack: stack, Address: addr,
		Image: f.img.Path, ImageFormat: f.img.Format,
		CPUs: 1, Memory: 128 << 20, Disk: 64 << 20,
		NICs: []server.NIC{{Network: "network.lan", Bridge: "kbr0", Address: "10.0.0.10/24", Gateway: "10.0.0.1"}},
		// Without a readiness check the create waits for the domain to run
		// a few seconds; this one waits for the guest's web server.
		Ready: server.Ready{Kind: server.CheckHTTP, Address: "10.0.0.10", Port: 80},
	}
	start := time.Now()
	s, err := f.srv.Create(ctx, spec)
	if err != nil {
		t.Fatalf("create: %v\n%s", err, f.d.Log())
	}
	t.Logf("create returned after %s", time.Since(start).Round(time.Millisecond))
	wantMAC := server.MAC(stack, addr, "network.lan")
	if !s.Running || s.CPUs != 1 || s.Memory != 128<<20 || len(s.MACs) != 1 || s.MACs[0] != wantMAC ||
		s.Stack != stack || s.Address != addr || s.Overlay == "" || s.Seed == "" || len(s.Volumes) != 0 {
		t.Fatalf("created %+v", s)
	}
	// The seed holds user_data: only its owner reads it; its directory
	// cannot be listed.
	for _, p := range []struct {
		path string
		want os.FileMode
	}{{s.Seed, 0o600}, {filepath.Dir(s.Seed), 0o711}} {
		fi, err := os.Stat(p.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != p.want {
			t.Errorf("%s: mode %o, want %o", p.path, fi.Mode().Perm(), p.want)
		}
	}
	body := waitHTTP(t, f, name, "http://10.0.0.10/", 120*time.Second, func(b string) bool { return strings.Contains(b, "block=") })
	t.Logf("guest answered %s after create: %q", time.Since(start).Round(time.Millisecond), body)
	if !strings.Contains(body, "hostname="+name) || !strings.Contains(body, "vda") || strings.Contains(body, "vdb") {
		t.Fatalf("guest answer %q: want hostname %s and vda, no vdb", body, name)
	}
	// A repeated create adopts the running domain.
	if again, err := f.srv.Create(ctx, spec); err != nil || again.Name != s.Name || !again.Running {
		t.Fatalf("second create = %+v, %v", again, err)
	}
	if list, err := f.srv.List(ctx); err != nil || len(list) != 1 || list[0].Address != addr {
		t.Fatalf("List = %+v, %v", list, err)
	}

	// Hot-plug the data volume.
	spec.Volumes = []string{data.Path}
	s, err = f.srv.Update(ctx, spec)
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	if len(s.Volumes) != 1 || s.Volumes[0] != data.Path {
		t.Fatalf("after attach: volumes %v", s.Volumes)
	}
	waitHTTP(t, f, name, "http://10.0.0.10/", 60*time.Second, func(b string) bool { return strings.Contains(b, "vdb") })

	// More memory: redefine and restart; the guest answers again, vdb kept.
	spec.Memory = 192 << 20
	s, err = f.srv.Update(ctx, spec)
	if err != nil {
		t.Fatalf("update memory: %v", err)
	}
	if !s.Running || s.Memory != 192<<20 || len(s.Volumes) != 1 {
		t.Fatalf("after memory update: %+v", s)
	}
	waitHTTP(t, f, name, "http://10.0.0.10/", 120*time.Second, func(b string) bool {
		return strings.Contains(b, "hostname="+name) && strings.Contains(b, "vdb")
	})

	// Hot-unplug it again.
	spec.Volumes = nil
	if s, err = f.srv.Update(ctx, spec); err != nil || len(s.Volumes) != 0 {
		t.Fatalf("detach: %+v, %v", s, err)
	}
	waitHTTP(t, f, name, "http://10.0.0.10/", 60*time.Second, func(b string) bool { return strings.Contains(b, "vda") && !strings.Contains(b, "vdb") })

	// Delete twice; nothing is left.
	for i := 0; i < 2; i++ {
		if err := f.srv.Delete(ctx, stack, addr); err != nil {
			t.Fatalf("delete #%d: %v", i+1, err)
		}
	}
	if err := f.vols.Delete(ctx, stack, "volume.data[0]"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.srv.Read(ctx, stack, addr); !errors.Is(err, executors.ErrNotFound) {
		t.Fatalf("Read after delete: err = %v", err)
	}
	conn, _ := f.d.Connect()
	defer conn.Close()
	if doms, _ := conn.ListAllDomains(0); len(doms) != 0 {
		t.Errorf("%d domains left after delete", len(doms))
	}
	for _, p := range []string{s.Overlay, s.Seed, data.Path, f.srv.ConsoleLog(stack, addr)} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left after delete (%v)", p, err)
		}
	}
	if left, _ := f.vols.List(ctx); len(left) != 0 {
		t.Errorf("volumes left in kiln-volumes: %+v", left)
	}
	if _, err := os.Stat(f.img.Path); err != nil {
		t.Errorf("the cached image went with the server: %v", err)
	}
}

// BenchmarkCreate is one server created until its guest is up (overlay,
// seed, define, start, then the console's ready line), deleted outside the
// timer. BenchmarkHandFloor does the by-hand steps only until the domain
// runs.
func BenchmarkCreate(b *testing.B) {
	ctx := context.Background()
	f := setup(b)
	spec := server.Spec{Stack: "bench", Address: "server.b", Image: f.img.Path, ImageFormat: f.img.Format, CPUs: 1, Memory: 128 << 20,
		Ready: server.Ready{Kind: server.CheckConsole, Console: "KILN-GUEST-READY"}}
	for range b.N {
		if _, err := f.srv.Create(ctx, spec); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := f.srv.Delete(ctx, spec.Stack, spec.Address); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkHandFloor is the same done by hand: qemu-img create -b, virsh
// define, virsh start.
func BenchmarkHandFloor(b *testing.B) {
	f := setup(b)
	dir := b.TempDir()
	overlay := filepath.Join(dir, "hand.qcow2")
	doc := `<domain type='` + domType(f.srv) + `'><name>hand</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type></os><devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='` + overlay + `'/><target dev='vda' bus='virtio'/></disk>
<serial type='file'><source path='` + filepath.Join(dir, "console.log") + `'/></serial></devices></domain>`
	xmlPath := filepath.Join(dir, "hand.xml")
	os.WriteFile(xmlPath, []byte(doc), 0o644)
	sh := func(args ...string) {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			b.Fatalf("%v: %v: %s", args, err, out)
		}
	}
	for range b.N {
		sh("qemu-img", "create", "-q", "-f", "qcow2", "-b", f.img.Path, "-F", f.img.Format, overlay)
		sh("virsh", "-q", "-c", libvirttest.URI, "define", xmlPath)
		sh("virsh", "-q", "-c", libvirttest.URI, "start", "hand")
		b.StopTimer()
		sh("virsh", "-q", "-c", libvirttest.URI, "destroy", "hand")
		sh("virsh", "-q", "-c", libvirttest.URI, "undefine", "hand")
		os.Remove(overlay)
		b.StartTimer()
	}
}

func domType(d *server.Driver) string {
	t, _ := d.Accel()
	return t
}
