package libvirttest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"
)

// insideEnv marks the re-executed test binary that runs inside the netns.
const insideEnv = "KILN_LIBVIRTTEST_INSIDE"

var shared *Daemon

// Main is the TestMain of a package whose tests need libvirtd:
//
//	func TestMain(m *testing.M) { os.Exit(libvirttest.Main(m)) }
//
// Run as root, it creates a fresh network namespace, re-executes the test
// binary inside it (`ip netns exec`, which also gives it a private mount
// namespace), and there brings lo up, starts a private libvirtd (Shared)
// and runs the tests; afterwards it stops the daemon and deletes the
// namespace. It fails, never skips, when something it needs is missing.
func Main(m *testing.M) int {
	if os.Getenv(insideEnv) == "" {
		return reexec()
	}
	if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "libvirttest: ip link set lo up: %v: %s\n", err, out)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	d, err := Start(ctx)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	shared = d
	code := m.Run()
	if err := d.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "libvirttest: stop: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// Shared returns the daemon Main started for this test binary.
func Shared(t testing.TB) *Daemon {
	t.Helper()
	if shared == nil {
		t.Fatal("libvirttest: no daemon: the package's TestMain must call libvirttest.Main")
	}
	return shared
}

func reexec() int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "libvirttest: these tests need root (network namespace, private mounts, libvirtd)")
		return 1
	}
	if _, err := exec.LookPath("ip"); err != nil {
		fmt.Fprintln(os.Stderr, "libvirttest: ip (iproute2) is missing")
		return 1
	}
	name := fmt.Sprintf("kiln-lvt-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "libvirttest: ip netns add %s: %v: %s\n", name, err, out)
		return 1
	}
	defer exec.Command("ip", "netns", "delete", name).Run()
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "libvirttest: %v\n", err)
		return 1
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", name, self}, os.Args[1:]...)...)
	cmd.Env = append(os.Environ(), insideEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		fmt.Fprintf(os.Stderr, "libvirttest: run in netns: %v\n", err)
		return 1
	}
	return 0
}
