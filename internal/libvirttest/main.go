package libvirttest

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"libvirt.org/go/libvirt"

	"github.com/kiln-dev/kiln/internal/netnstest"
)

var (
	shared *Daemon
	dir    string
)

// Main is the TestMain of a package whose tests need libvirtd:
//
//	func TestMain(m *testing.M) { os.Exit(libvirttest.Main(m)) }
//
// Outside a test namespace it is netnstest.Run: it makes a fresh network
// namespace and runs the test binary again inside it (`ip netns exec`, which
// also gives it a private mount namespace). Inside, it starts a private
// libvirtd (Shared), runs the tests and stops the daemon. It fails, never
// skips, when something it needs is missing.
func Main(m *testing.M) int {
	if os.Getenv(netnstest.EnvVar) == "" {
		return netnstest.Run(m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	d, err := Start(ctx)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	shared = d
	// The executors' own state (pools, records) of the package's tests.
	if dir, err = os.MkdirTemp("", "kiln-test-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		d.Stop()
		return 1
	}
	defer os.RemoveAll(dir)
	// The storage pools of the drivers under test (and of kiln processes
	// the tests start) go to a directory of this run only, never to the
	// host-wide default another run could share.
	if os.Getenv("KILN_STORAGE_DIR") == "" {
		dir, err := os.MkdirTemp("", "kiln-storage-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			d.Stop()
			return 1
		}
		defer os.RemoveAll(dir)
		os.Setenv("KILN_STORAGE_DIR", dir)
	}
	code := netnstest.Run(m)
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

// Dir is a directory of this test binary's run, made by Main and removed
// when the tests are done: where the package's tests keep the executors'
// state.
func Dir(t testing.TB) string {
	t.Helper()
	Shared(t)
	return dir
}

// Conn is a connection to the shared daemon, closed when t ends.
func Conn(t testing.TB) *libvirt.Connect {
	t.Helper()
	conn, err := Shared(t).Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
