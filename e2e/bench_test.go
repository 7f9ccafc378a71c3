package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"libvirt.org/go/libvirt"

	"github.com/kiln-dev/kiln/executors/accel"
	"github.com/kiln-dev/kiln/internal/testwait"
)

// The apply/destroy benchmarks: N servers of the test guest (96 MiB, one
// vCPU, on one NAT+DHCP network) through the kiln binary's embedded default
// with the real drivers, against the floor of the same guests made by hand
// one after another (qemu-img create -b, virsh define, virsh start;
// destroy: virsh destroy, virsh undefine, rm). Both end when every guest is
// ready, i.e. answers HTTP: kiln's apply returns then (each server has
// `ready { http_port = 80 }`), and the floor polls each guest's web server
// after starting them all. kiln's figures include what the floor does not
// do: starting the process and its one-node raft store, the network
// (bridge, dnsmasq, iptables; the floor's bridge and dnsmasq are made
// before its timer starts), the image cache, and each guest's seed ISO.
// The accelerator is the one kiln's probe picks, for both; it is in the
// benchmark's name.
//
//	make bench-real   (go test -run '^$' -bench ApplyDestroy -benchtime 1x ./e2e/)
//
// 50 servers need more than the default CPU allocation ratio on a small
// host: the kiln side runs with KILN_CPU_RATIO=32.

var benchSizes = []int{1, 5, 10, 50}

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

  ready {
    http_port = 80
    timeout   = "15m"
  }
}
`, image, sum, servers)
}

// benchAccel is the accelerator kiln's probe picks on this host.
func benchAccel(b *testing.B, uri string) accel.Result {
	b.Helper()
	conn, err := libvirt.NewConnect(uri)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	res, err := accel.Choose(context.Background(), conn, "auto", b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("accelerator: %s (%s)", res.Accel, res.Reason)
	return res
}

// answers makes one GET of each address; it reports the first that fails.
func answers(addrs []string) error {
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	for _, a := range addrs {
		resp, err := client.Get("http://" + a + "/")
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", a, resp.Status)
		}
	}
	return nil
}

func benchAddrs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("10.93.0.%d", 10+i)
	}
	return out
}

func BenchmarkKilnApplyDestroy(b *testing.B) {
	img, sum := guestImage(b)
	w := newWorkdir(b)
	acc := benchAccel(b, w.uri)
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("accel=%s/servers=%d", acc.Accel, n), func(b *testing.B) {
			w := newWorkdir(b)
			if n > 32 {
				b.Setenv("KILN_CPU_RATIO", "32")
			}
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
				b.StopTimer()
				if err := answers(benchAddrs(n)); err != nil {
					b.Fatalf("a guest did not answer right after apply: %v", err)
				}
				b.StartTimer()
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
	w := newWorkdir(b)
	acc := benchAccel(b, w.uri)
	typ := acc.DomainType
	// The bridge the floor's guests sit on and a dnsmasq giving each its
	// address (the guest asks DHCP when it has no seed), made outside the
	// timing.
	const bridge = "kfloor0"
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridge}}
	if err := netlink.LinkAdd(br); err != nil {
		b.Fatalf("add bridge: %v", err)
	}
	defer netlink.LinkDel(br)
	if err := netlink.LinkSetUp(br); err != nil {
		b.Fatal(err)
	}
	gw, _ := netlink.ParseAddr("10.93.0.1/24")
	if err := netlink.AddrAdd(br, gw); err != nil {
		b.Fatal(err)
	}
	var hosts []string
	for j := 0; j < 64; j++ {
		hosts = append(hosts, fmt.Sprintf("--dhcp-host=52:54:00:f0:00:%02x,10.93.0.%d", j, 10+j))
	}
	dnsmasq := exec.Command("dnsmasq", append([]string{"--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
		"--interface=" + bridge, "--bind-interfaces", "--except-interface=lo", "--dhcp-range=10.93.0.0,static,255.255.255.0,1h",
		"--dhcp-leasefile=" + filepath.Join(b.TempDir(), "leases"), "--pid-file="}, hosts...)...)
	if err := dnsmasq.Start(); err != nil {
		b.Fatalf("dnsmasq: %v", err)
	}
	defer func() { dnsmasq.Process.Kill(); dnsmasq.Wait() }()
	// One NoCloud seed for every floor guest (a CD-ROM labelled cidata
	// asking for DHCP), made once outside the timing: without a seed the
	// test guest waits 10 s for one.
	seedDir := b.TempDir()
	os.WriteFile(filepath.Join(seedDir, "meta-data"), []byte("instance-id: floor\nlocal-hostname: floor\n"), 0o644)
	os.WriteFile(filepath.Join(seedDir, "user-data"), []byte("#cloud-config\n"), 0o644)
	os.WriteFile(filepath.Join(seedDir, "network-config"), []byte("version: 2\nethernets:\n  eth0:\n    match:\n      name: \"e*\"\n    dhcp4: true\n"), 0o644)
	seed := filepath.Join(b.TempDir(), "seed.iso")
	if out, err := exec.Command("genisoimage", "-quiet", "-output", seed, "-volid", "cidata", "-joliet", "-rock",
		filepath.Join(seedDir, "meta-data"), filepath.Join(seedDir, "user-data"), filepath.Join(seedDir, "network-config")).CombinedOutput(); err != nil {
		b.Fatalf("genisoimage: %v\n%s", err, out)
	}
	sh := func(name string, args ...string) {
		b.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			b.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	virsh := func(args ...string) { b.Helper(); sh("virsh", append([]string{"-q", "-c", w.uri}, args...)...) }
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("accel=%s/servers=%d", acc.Accel, n), func(b *testing.B) {
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
					if err := os.WriteFile(xml, []byte(floorDomain(typ, name, disk, seed, bridge, filepath.Join(dir, name+".log"), j)), 0o644); err != nil {
						b.Fatal(err)
					}
					virsh("define", xml)
					virsh("start", name)
				}
				// Then wait, as a script would, until each one answers.
				addrs := benchAddrs(n)
				if !testwait.Until(15*time.Minute, 250*time.Millisecond, func() bool { return answers(addrs) == nil }) {
					b.Fatalf("the floor's guests did not all answer within 15 minutes: %v", answers(addrs))
				}
				apply += time.Since(start)
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
// server: one vCPU, 96 MiB, the overlay as a virtio disk, the seed as a
// CD-ROM, a virtio NIC on the bridge and the serial console in a file.
func floorDomain(typ, name, disk, seed, bridge, console string, index int) string {
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
    <disk type="file" device="cdrom">
      <driver name="qemu" type="raw"/>
      <source file=%q/>
      <target dev="hdc" bus="ide"/>
      <readonly/>
    </disk>
    <interface type="bridge">
      <source bridge=%q/>
      <mac address="52:54:00:f0:00:%02x"/>
      <model type="virtio"/>
    </interface>
    <serial type="file"><source path=%q/></serial>
  </devices>
</domain>
`, typ, name, disk, seed, bridge, index, console)
}
