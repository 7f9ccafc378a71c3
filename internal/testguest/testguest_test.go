package testguest

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/executors/cloudinit"
)

// bootTimeout bounds one boot under TCG on a loaded CI machine; a boot
// normally takes well under 15 s.
const bootTimeout = 120 * time.Second

func TestImagePath(t *testing.T) {
	p, err := ImagePath()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(p, ImageRel) {
		t.Errorf("ImagePath() = %s, want a path ending in %s", p, ImageRel)
	}
}

// TestBootServesHTTP boots the image with a seed made by executors/cloudinit:
// the guest must take the seed's hostname and static address (user-mode
// networking's 10.0.2.15/24 via 10.0.2.2) and answer on port 80 with its
// hostname and its disk; a disk hot-plugged afterwards shows in the next answer.
func TestBootServesHTTP(t *testing.T) {
	t.Parallel()
	const mac = "52:54:00:6b:69:01"
	seed, err := cloudinit.Seed{
		InstanceID: "probe-0-test",
		Hostname:   "probe-0",
		MAC:        mac,
		Address:    "10.0.2.15/24",
		Gateway:    "10.0.2.2",
		DNS:        []string{"10.0.2.3"},
	}.ISO()
	if err != nil {
		t.Fatal(err)
	}
	body, g := boot(t, Options{Dir: t.TempDir(), Seed: seed, MAC: mac})
	for _, want := range []string{"hostname=probe-0\n", "address=10.0.2.15/24\n", "instance-id=probe-0-test\n", "vda"} {
		if !strings.Contains(body, want) {
			t.Errorf("answer lacks %q:\n%s", want, body)
		}
	}

	// The answer is computed per request: a disk hot-plugged now shows.
	data := filepath.Join(t.TempDir(), "data.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", data, "16M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v: %s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := g.AttachDisk(ctx, "data0", data); err != nil {
		t.Fatal(err)
	}
	for {
		body, err = g.Get(ctx, "/")
		if err == nil && strings.Contains(body, "block=sr0 vda vdb\n") {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("hot-plugged disk not in the answer: %v\n%s", err, body)
		}
		time.Sleep(250 * time.Millisecond)
	}

	log := g.SerialLog()
	for _, want := range []string{"static 10.0.2.15/24 gateway 10.0.2.2", ReadyMarker + " probe-0 10.0.2.15/24"} {
		if !strings.Contains(log, want) {
			t.Errorf("serial console lacks %q:\n%s", want, log)
		}
	}
}

// TestBootWithoutSeedUsesDHCP boots with no seed: the guest keeps its default
// hostname and takes its address from user-mode networking's DHCP server.
func TestBootWithoutSeedUsesDHCP(t *testing.T) {
	t.Parallel()
	body, g := boot(t, Options{Dir: t.TempDir()})
	for _, want := range []string{"hostname=kiln-guest\n", "address=10.0.2.15/24\n", "block=vda\n"} {
		if !strings.Contains(body, want) {
			t.Errorf("answer lacks %q:\n%s", want, body)
		}
	}
	if log := g.SerialLog(); !strings.Contains(log, "no seed") || !strings.Contains(log, ReadyMarker+" kiln-guest 10.0.2.15/24") {
		t.Errorf("serial console does not show a seedless DHCP boot:\n%s", log)
	}
}

// boot starts a guest, waits for its HTTP answer and logs the boot time.
func boot(t *testing.T, opts Options) (string, *Guest) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	g, err := Boot(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	body, err := g.WaitHTTP(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("boot to HTTP answer: %.1fs", time.Since(g.Started).Seconds())
	return body, g
}
