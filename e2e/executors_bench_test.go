package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/executors/volume"
	"github.com/kiln-dev/kiln/internal/netnstest"
)

// The real-executor benchmark of issue 13: networks and volumes (no guests)
// applied and destroyed through the kiln binary's embedded default with the
// real drivers, against a by-hand shell loop doing the same on the same
// private libvirtd, in the same test namespace (TestMain):
//
//   - a volume: `virsh vol-create-as kiln-volumes NAME 1M --allocation 0
//     --format qcow2` (what executors/volume asks libvirt for: a qcow2 of
//     the size, no allocation, in kiln's pool), then `virsh vol-delete`;
//   - a network: `ip link add NAME type bridge`, `ip addr add` of the
//     gateway /24 (kiln puts its network's first host on the bridge),
//     `ip link set NAME up`, then `ip link del`. With DHCP (kiln's
//     default) the loop also starts a dnsmasq serving the bridge (daemon
//     mode: it returns once dnsmasq is up) and kills it on delete.
//
// The loop makes one object after another, each step its own process, as a
// script does; kiln runs its actions in parallel. kiln's figures include
// what the loop does not do: starting the process, its one-node raft store
// and agent, recording each action, and each network's iptables rules
// (isolation, the guest ports: one iptables-save and one iptables-restore
// to make a network or remove it, see KILN_BENCH_COUNT_IPTABLES).
//
// The figures are kiln-apply-s, kiln-destroy-s, hand-create-s,
// hand-delete-s and the ratios apply-vs-hand and destroy-vs-hand (the
// issue's goal: ≤ 1); <op>-actions-s, from the first action's start to the
// last one's finish (the rest of kiln-<op>-s is outside the actions), and
// <op>-<kind>-ms/action, the mean time from start to finish of an action
// of the kind (queueing included: network actions wait for one another on
// the driver's iptables lock, held for two runs). The sub-benchmarks split the stack
// by kind so a ratio above 1 says which kind costs it:
//
//	make bench-real-executors   (go test -run '^$' -bench RealExecutors -benchtime 1x ./e2e/)
//
// Both sides check their effect: after apply or create the pool has the
// volumes and the namespace the bridges (and dnsmasqs), after destroy or
// delete none is left.

type realCase struct {
	networks, volumes int
	dhcp              bool
}

func (c realCase) String() string {
	return fmt.Sprintf("networks=%d/volumes=%d/dhcp=%v", c.networks, c.volumes, c.dhcp)
}

var realCases = []realCase{
	// The figure: 20 networks and 200 volumes. The networks have
	// no DHCP, so that each is a bridge with its gateway on both sides.
	{networks: 20, volumes: 200},
	// The breakdown by kind, and what DHCP (one dnsmasq per network)
	// adds on both sides.
	{volumes: 200},
	{networks: 20},
	{networks: 20, dhcp: true},
	// kiln's fixed cost (the process, its store and agent, plan and
	// record) with a single action.
	{volumes: 1},
}

// realStack is the template: count networks of a /24 each in 10.96.0.0/16
// and count volumes of 1 MiB (qcow2, kiln's default format).
func realStack(c realCase) string {
	return fmt.Sprintf(`network "n" {
  count = %d
  cidr  = cidrsubnet("10.96.0.0/16", 8, count.index)
  dhcp  = %v
}

volume "v" {
  count = %d
  size  = "1MiB"
}
`, c.networks, c.dhcp, c.volumes)
}

// stackVolumes lists the volumes of kiln's pool whose names carry the stack
// (volume.Name: kiln_<stack>_<address>.<format>).
func stackVolumes(h hostObjects, stack string) []string {
	var out []string
	for _, v := range h.volumes {
		if strings.HasPrefix(v, volume.NamePrefix+stack+"_") {
			out = append(out, v)
		}
	}
	return out
}

func BenchmarkRealExecutors(b *testing.B) {
	w := newWorkdir(b)
	// With netnstest.CountIPTablesEnv=1 it also reports
	// kiln-apply-iptables and kiln-destroy-iptables, the iptables
	// processes kiln starts per operation.
	ipt := netnstest.CountIPTables(b, "kiln")
	// Warm up once: the first kiln of the binary defines the pools and
	// makes kiln's iptables chains, and the binary and libvirt's pool get
	// into the page cache. The by-hand loop then uses the same pool.
	w.write(realStack(realCase{networks: 1, volumes: 1}))
	w.must("apply", "-auto-approve", "-json", "-stack", "warm", ".")
	w.must("destroy", "-auto-approve", "-json", "warm")
	for _, c := range realCases {
		b.Run(c.String(), func(b *testing.B) {
			w := newWorkdir(b)
			const stack = "real"
			w.write(realStack(c))
			var kApply, kDestroy, hCreate, hDelete time.Duration
			var iptApply, iptDestroy int
			var tApply, tDestroy opTimes
			// timed runs fn with the benchmark's timer on and adds the
			// time it took to *d; the checks around it run untimed.
			timed := func(d *time.Duration, fn func()) {
				b.StartTimer()
				start := time.Now()
				fn()
				*d += time.Since(start)
				b.StopTimer()
			}
			ipt.Take(b)
			b.StopTimer()
			b.ResetTimer()
			for range b.N {
				var r, d realOp
				timed(&kApply, func() { r = parseOp(b, w.must("apply", "-auto-approve", "-json", "-stack", stack, ".")) })
				iptApply += ipt.Take(b)
				if r.Status != "complete" || len(r.Actions) != c.networks+c.volumes {
					b.Fatalf("apply: status %q (error %q), %d actions, want complete and %d", r.Status, r.Error, len(r.Actions), c.networks+c.volumes)
				}
				tApply.add(b, r)
				h := observe(b, stack)
				if got := len(stackVolumes(h, stack)); got != c.volumes || len(h.bridges) != c.networks {
					b.Fatalf("after kiln apply: %d volumes of the stack and %d bridges, want %d and %d (%s)", got, len(h.bridges), c.volumes, c.networks, h)
				}
				if wantD := map[bool]int{true: c.networks}[c.dhcp]; h.dnsmasq != wantD {
					b.Fatalf("after kiln apply: %d dnsmasq, want %d", h.dnsmasq, wantD)
				}

				timed(&kDestroy, func() { d = parseOp(b, w.must("destroy", "-auto-approve", "-json", stack)) })
				if d.Status != "complete" || len(d.Actions) != c.networks+c.volumes {
					b.Fatalf("destroy: status %q (error %q), %d actions, want complete and %d", d.Status, d.Error, len(d.Actions), c.networks+c.volumes)
				}
				tDestroy.add(b, d)
				iptDestroy += ipt.Take(b)
				if h := observe(b, stack); len(stackVolumes(h, stack)) != 0 || len(h.bridges) != 0 || len(h.rules) != 0 || h.dnsmasq != 0 {
					b.Fatalf("after kiln destroy: %s", h)
				}

				hand := newHandLoop(b, w.uri, c)
				timed(&hCreate, hand.create)
				hand.check(true)
				timed(&hDelete, hand.delete)
				hand.check(false)
			}
			n := float64(b.N)
			b.ReportMetric(kApply.Seconds()/n, "kiln-apply-s")
			b.ReportMetric(kDestroy.Seconds()/n, "kiln-destroy-s")
			b.ReportMetric(hCreate.Seconds()/n, "hand-create-s")
			b.ReportMetric(hDelete.Seconds()/n, "hand-delete-s")
			tApply.report(b, "apply", b.N)
			tDestroy.report(b, "destroy", b.N)
			b.ReportMetric(kApply.Seconds()/hCreate.Seconds(), "apply-vs-hand")
			b.ReportMetric(kDestroy.Seconds()/hDelete.Seconds(), "destroy-vs-hand")
			if ipt != nil {
				b.ReportMetric(float64(iptApply)/n, "kiln-apply-iptables")
				b.ReportMetric(float64(iptDestroy)/n, "kiln-destroy-iptables")
			}
		})
	}
}

// realOp is the part of `kiln apply -json` and `kiln destroy -json` the
// benchmark reads: each action's start and finish as the leader recorded
// them.
type realOp struct {
	Status  string             `json:"status"`
	Error   string             `json:"error"`
	Actions []api.ActionStatus `json:"actions"`
}

func parseOp(tb testing.TB, out string) realOp {
	tb.Helper()
	var r realOp
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		tb.Fatalf("kiln -json printed no JSON document: %v\n%s", err, out)
	}
	return r
}

// opTimes sums, over iterations, where an operation's time went: span is
// from its first action's start to its last action's finish (the rest of
// the command's time is outside the actions: the process, planning,
// recording the operation, reading the result); each[kind] is the time
// from start to finish of every action of the kind (running, dispatch and
// report), n[kind] their count.
type opTimes struct {
	span time.Duration
	each map[string]time.Duration
	n    map[string]int
}

func (t *opTimes) add(tb testing.TB, r realOp) {
	tb.Helper()
	if t.each == nil {
		t.each, t.n = map[string]time.Duration{}, map[string]int{}
	}
	var first, last time.Time
	for _, a := range r.Actions {
		if a.Status != "done" || a.Started.IsZero() || a.Finished.IsZero() {
			tb.Fatalf("action %s is %s (started %v, finished %v)", a.Address, a.Status, a.Started, a.Finished)
		}
		kind, _, _ := strings.Cut(a.Address, ".")
		t.each[kind] += a.Finished.Sub(a.Started)
		t.n[kind]++
		if first.IsZero() || a.Started.Before(first) {
			first = a.Started
		}
		if a.Finished.After(last) {
			last = a.Finished
		}
	}
	t.span += last.Sub(first)
}

// report adds the figures of op ("apply", "destroy") over iterations
// iterations: <op>-actions-s (the span) and <op>-<kind>-ms/action.
func (t *opTimes) report(b *testing.B, op string, iterations int) {
	b.ReportMetric(t.span.Seconds()/float64(iterations), op+"-actions-s")
	for kind, d := range t.each {
		b.ReportMetric(float64(d.Milliseconds())/float64(t.n[kind]), op+"-"+kind+"-ms/action")
	}
}

// handLoop is the by-hand floor: one process per step, one object after
// another, in the test namespace and on the test's libvirtd.
type handLoop struct {
	b   *testing.B
	uri string
	c   realCase
	dir string // dnsmasq's lease and pid files
}

func newHandLoop(b *testing.B, uri string, c realCase) *handLoop {
	netnstest.Guard(b)
	h := &handLoop{b: b, uri: uri, c: c, dir: b.TempDir()}
	// Whatever a failed run leaves goes with the test.
	b.Cleanup(func() {
		for i := range c.networks {
			h.killDnsmasq(i)
			if l, err := netlink.LinkByName(h.bridge(i)); err == nil {
				netlink.LinkDel(l)
			}
		}
		for i := range c.volumes {
			exec.Command("virsh", "-q", "-c", uri, "vol-delete", h.volume(i), "--pool", volume.PoolName).Run()
		}
	})
	return h
}

func (h *handLoop) volume(i int) string { return fmt.Sprintf("hand-%d.qcow2", i) }
func (h *handLoop) bridge(i int) string { return fmt.Sprintf("hb-%d", i) }
func (h *handLoop) pidFile(i int) string {
	return filepath.Join(h.dir, fmt.Sprintf("dnsmasq-%d.pid", i))
}

func (h *handLoop) sh(name string, args ...string) {
	h.b.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		h.b.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func (h *handLoop) virsh(args ...string) {
	h.b.Helper()
	h.sh("virsh", append([]string{"-q", "-c", h.uri}, args...)...)
}

func (h *handLoop) create() {
	for i := range h.c.networks {
		br := h.bridge(i)
		h.sh("ip", "link", "add", br, "type", "bridge")
		h.sh("ip", "addr", "add", fmt.Sprintf("10.97.%d.1/24", i), "dev", br)
		h.sh("ip", "link", "set", br, "up")
		if h.c.dhcp {
			h.sh("dnsmasq", "--conf-file=/dev/null", "--port=0", "--interface="+br, "--bind-interfaces",
				"--except-interface=lo", fmt.Sprintf("--dhcp-range=10.97.%d.0,static,255.255.255.0,1h", i),
				"--dhcp-leasefile="+filepath.Join(h.dir, fmt.Sprintf("leases-%d", i)), "--pid-file="+h.pidFile(i))
		}
	}
	for i := range h.c.volumes {
		h.virsh("vol-create-as", volume.PoolName, h.volume(i), "1M", "--allocation", "0", "--format", "qcow2")
	}
}

func (h *handLoop) delete() {
	for i := range h.c.networks {
		if h.c.dhcp {
			h.killDnsmasq(i)
		}
		h.sh("ip", "link", "del", h.bridge(i))
	}
	for i := range h.c.volumes {
		h.virsh("vol-delete", h.volume(i), "--pool", volume.PoolName)
	}
}

// killDnsmasq stops the bridge's dnsmasq, as `kill $(cat pidfile)` does,
// and waits until it is gone.
func (h *handLoop) killDnsmasq(i int) {
	b, err := os.ReadFile(h.pidFile(i))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) != "dnsmasq" {
		return
	}
	syscall.Kill(pid, syscall.SIGTERM)
	// Gone, or a zombie (a daemon's parent is not this process, which
	// cannot reap it).
	for range 500 {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || strings.Contains(string(stat), ") Z") {
			break
		}
		time.Sleep(time.Millisecond)
	}
	os.Remove(h.pidFile(i))
}

// check looks, with virsh and ip as a user would, that the loop's objects
// are all there (made) or all gone.
func (h *handLoop) check(made bool) {
	h.b.Helper()
	out, err := exec.Command("virsh", "-q", "-c", h.uri, "vol-list", volume.PoolName).CombinedOutput()
	if err != nil {
		h.b.Fatalf("virsh vol-list: %v\n%s", err, out)
	}
	vols := 0
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(f[0], "hand-") {
			vols++
		}
	}
	out, err = exec.Command("ip", "-br", "link", "show", "type", "bridge").CombinedOutput()
	if err != nil {
		h.b.Fatalf("ip -br link: %v\n%s", err, out)
	}
	bridges := 0
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "hb-") {
			bridges++
		}
	}
	dnsmasq := len(netnstest.DnsmasqPids(h.b))
	wantV, wantB, wantD := 0, 0, 0
	if made {
		wantV, wantB = h.c.volumes, h.c.networks
		if h.c.dhcp {
			wantD = h.c.networks
		}
	}
	if vols != wantV || bridges != wantB || dnsmasq != wantD {
		h.b.Fatalf("by hand (made %v): %d volumes, %d bridges, %d dnsmasq; want %d, %d, %d", made, vols, bridges, dnsmasq, wantV, wantB, wantD)
	}
}
