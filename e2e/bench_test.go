package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// The apply/destroy benchmarks: N servers of the test guest (96 MiB, one
// vCPU, on one NAT+DHCP network) through the kiln binary's embedded default
// with the real drivers, against the floor of the same domains made by hand
// one after another (qemu-img create -b, virsh define, virsh start;
// destroy: virsh destroy, virsh undefine, rm). Neither waits for the
// guests to boot: kiln's server create returns once the domain runs, and so
// does `virsh start`. kiln's figures include what the floor does not do:
// starting the process and its one-node raft store, the network (bridge,
// dnsmasq, iptables), the image cache, and each guest's seed ISO.
//
//	make bench-real   (go test -run '^$' -bench ApplyDestroy -benchtime 1x ./e2e/)

var benchSizes = []int{1, 5, 10}

func benchTemplate(image, sum string, servers int) string {
	return fmt.Sprintf(`
image "guest" {
  source = %q
  sha256 = %q
}

network "lan" {
  cidr = "10.93.0.0/24"
  nat  = true
  dhcp = true
}

server "vm" {
  count  = %d
  image  = image.guest.id
  cpus   = 1
  memory = "96MiB"

  network "lan" {
    address = cidrhost(network.lan.cidr, 10 + count.index)
  }
}
`, image, sum, servers)
}

func BenchmarkKilnApplyDestroy(b *testing.B) {
	img, sum := guestImage(b)
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("servers=%d", n), func(b *testing.B) {
			w := newWorkdir(b)
			// Warm the image cache and the store (no servers): a user's
			// second stack finds the image cached.
			w.write(benchTemplate(img, sum, 0))
			w.must("apply", "-auto-approve", "-json", "-stack", "warm", ".")
			w.must("destroy", "-auto-approve", "-json", "warm")
			w.write(benchTemplate(img, sum, n))
			var apply, destroy time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				w.must("apply", "-auto-approve", "-json", "-stack", "bench", ".")
				apply += time.Since(start)
				if h := observe(b, "bench"); len(h.domains) != n || h.running != n {
					b.Fatalf("after apply: %s, want %d running domains", h, n)
				}
				start = time.Now()
				w.must("destroy", "-auto-approve", "-json", "bench")
				destroy += time.Since(start)
				if h := observe(b, "bench"); len(h.domains) != 0 {
					b.Fatalf("after destroy: %s", h)
				}
			}
			b.ReportMetric(apply.Seconds()/float64(b.N), "apply-s/op")
			b.ReportMetric(destroy.Seconds()/float64(b.N), "destroy-s/op")
		})
	}
}

func BenchmarkFloorApplyDestroy(b *testing.B) {
	img, _ := guestImage(b)
	typ := "qemu"
	if _, err := os.Stat("/dev/kvm"); err == nil {
		typ = "kvm"
	}
	// The bridge the floor's guests sit on, made outside the timing.
	const bridge = "kfloor0"
	w := newWorkdir(b)
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridge}}
	if err := netlink.LinkAdd(br); err != nil {
		b.Fatalf("add bridge: %v", err)
	}
	defer netlink.LinkDel(br)
	if err := netlink.LinkSetUp(br); err != nil {
		b.Fatal(err)
	}
	sh := func(name string, args ...string) {
		b.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			b.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	virsh := func(args ...string) { b.Helper(); sh("virsh", append([]string{"-q", "-c", w.uri}, args...)...) }
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("servers=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			b.Cleanup(func() {
				for j := 0; j < n; j++ {
					name := fmt.Sprintf("floor-%d", j)
					exec.Command("virsh", "-q", "-c", w.uri, "destroy", name).Run()
					exec.Command("virsh", "-q", "-c", w.uri, "undefine", name).Run()
				}
			})
			var apply, destroy time.Duration
			for i := 0; i < b.N; i++ {
				start := time.Now()
				for j := 0; j < n; j++ {
					name := fmt.Sprintf("floor-%d", j)
					disk := filepath.Join(dir, name+".qcow2")
					sh("qemu-img", "create", "-q", "-f", "qcow2", "-b", img, "-F", "qcow2", disk)
					xml := filepath.Join(dir, name+".xml")
					if err := os.WriteFile(xml, []byte(floorDomain(typ, name, disk, bridge, filepath.Join(dir, name+".log"), j)), 0o644); err != nil {
						b.Fatal(err)
					}
					virsh("define", xml)
					virsh("start", name)
				}
				apply += time.Since(start)
				if h := observe(b, "floor"); len(h.domains) != n || h.running != n {
					b.Fatalf("after the floor's apply: %s, want %d running domains", h, n)
				}
				start = time.Now()
				for j := 0; j < n; j++ {
					name := fmt.Sprintf("floor-%d", j)
					virsh("destroy", name)
					virsh("undefine", name)
					os.Remove(filepath.Join(dir, name+".qcow2"))
				}
				destroy += time.Since(start)
			}
			b.ReportMetric(apply.Seconds()/float64(b.N), "apply-s/op")
			b.ReportMetric(destroy.Seconds()/float64(b.N), "destroy-s/op")
		})
	}
}

// floorDomain is the smallest domain that matches what kiln defines for a
// server: one vCPU, 96 MiB, the overlay as a virtio disk, a virtio NIC on
// the bridge and the serial console in a file.
func floorDomain(typ, name, disk, bridge, console string, index int) string {
	return fmt.Sprintf(`<domain type=%q>
  <name>%s</name>
  <memory unit="MiB">96</memory>
  <vcpu>1</vcpu>
  <os><type arch="x86_64">hvm</type><boot dev="hd"/></os>
  <devices>
    <disk type="file" device="disk">
      <driver name="qemu" type="qcow2"/>
      <source file=%q/>
      <target dev="vda" bus="virtio"/>
    </disk>
    <interface type="bridge">
      <source bridge=%q/>
      <mac address="52:54:00:f0:00:%02x"/>
      <model type="virtio"/>
    </interface>
    <serial type="file"><source path=%q/></serial>
  </devices>
</domain>
`, typ, name, disk, bridge, index, console)
}
