package libvirttest

import (
	"os"
	"strings"
	"testing"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// The daemon is private: it sees none of the host's networks, its state is
// on tmpfs, and its mounts are not visible from pid 1's mount namespace.
func TestDaemonIsPrivate(t *testing.T) {
	d := Shared(t)
	conn, err := d.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	nets, err := conn.ListAllNetworks(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(nets) != 0 {
		t.Errorf("private daemon lists %d networks, want none (host's default network leaked in?)", len(nets))
	}
	if _, err := conn.GetCapabilities(); err != nil {
		t.Fatal(err)
	}
	host, err := os.ReadFile("/proc/1/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(host), "kiln-libvirttest") {
		t.Errorf("a libvirttest tmpfs is visible in pid 1's mount namespace")
	}
	own, _ := os.ReadFile("/proc/self/mountinfo")
	for _, dir := range stateDirs {
		if !strings.Contains(string(own), " "+dir+" ") {
			t.Errorf("%s is not mounted in the test's namespace", dir)
		}
	}
}
