package agent

import (
	"context"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/executors/accel"
	"github.com/kiln-dev/kiln/executors/host"
	"github.com/kiln-dev/kiln/executors/kinds"
	"github.com/kiln-dev/kiln/executors/network"
	"github.com/kiln-dev/kiln/executors/portforward"
	"github.com/kiln-dev/kiln/executors/server"
	"github.com/kiln-dev/kiln/internal/libvirttest"
	"github.com/kiln-dev/kiln/internal/netnstest"
	"github.com/kiln-dev/kiln/internal/testguest"
	"github.com/kiln-dev/kiln/internal/testwait"
	"github.com/kiln-dev/kiln/spec"
)

// TestMain runs the package's tests inside a fresh network namespace with a
// private libvirtd (internal/libvirttest): the real drivers make bridges,
// iptables rules, dnsmasq and domains, none of which may touch the host.
func TestMain(m *testing.M) { os.Exit(libvirttest.Main(m)) }

func openRealForTest(t *testing.T) *Real {
	t.Helper()
	netnstest.Guard(t)
	d := libvirttest.Shared(t)
	t.Setenv(LibvirtURIEnv, d.URI)
	// The data directory of the real drivers in this test binary: the
	// libvirt pools are defined on it once and live as long as the private
	// libvirtd, so every test shares it.
	dataDir := libvirttest.Dir(t)
	// One probe for the whole test binary: the answer is kept in a file.
	r, err := OpenReal(dataDir, StorageDir(dataDir), RealOptions{AccelCache: filepath.Join(dataDir, "accel.json"), Policy: EmbeddedPolicy()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	// The test guest ignores ACPI shutdown: do not wait long for it.
	r.srv.ShutdownTimeout = 3 * time.Second
	return r
}

// openRealWithGuest is openRealForTest with its drivers and the test
// guest image (its path and sha256).
func openRealWithGuest(t *testing.T) (r *Real, d Drivers, path, sum string) {
	t.Helper()
	r = openRealForTest(t)
	path, sum = testGuest(t)
	return r, r.Drivers(), path, sum
}

// testGuest is the test guest image built by `make test-image`.
func testGuest(t *testing.T) (path, sum string) {
	t.Helper()
	return testguest.Image(t)
}

// stackActions are the actions an engine would send for a small stack, in
// dependency order; Deps are filled as results come in.
type stackActions struct {
	stack                  string
	img, net, vol, srv, pf Action
}

func run(t *testing.T, d Driver, a *Action, results map[string]map[string]any) Object {
	t.Helper()
	a.Deps = map[string]map[string]any{}
	for addr, attrs := range results {
		a.Deps[addr] = attrs
	}
	obj, err := d.Create(context.Background(), *a)
	if err != nil {
		t.Fatalf("create %s: %v", a.Address, err)
	}
	results[a.Address] = obj.Attrs
	return obj
}

func create(a Action) Action {
	a.Op = api.OpCreate
	return a
}

// deleteAll deletes the instances of acts, in order, failing t on an error.
func deleteAll(t *testing.T, d Drivers, acts ...Action) {
	t.Helper()
	for _, a := range acts {
		a.Op = api.OpDelete
		if err := d[a.Kind].Delete(context.Background(), a); err != nil {
			t.Fatalf("delete %s: %v", a.Address, err)
		}
	}
}

func TestRealStackEndToEnd(t *testing.T) {
	ctx := context.Background()
	r, d, path, sum := openRealWithGuest(t)
	const stack = "rtstack"

	img := create(Action{Stack: stack, Address: "image.guest", Kind: "image",
		Attrs: map[string]any{"source": path, "sha256": sum}})
	lan := create(Action{Stack: stack, Address: "network.lan", Kind: "network",
		Attrs: map[string]any{"cidr": "10.77.0.0/24", "nat": true, "dhcp": true}})
	vol := create(Action{Stack: stack, Address: "volume.data", Kind: "volume",
		Attrs: map[string]any{"size": int64(64 << 20), "format": "qcow2"}})
	srv := create(Action{Stack: stack, Address: "server.web", Kind: "server",
		Attrs: map[string]any{
			"image":    spec.Unknown{}, // taken from the image dependency
			"cpus":     int64(1),
			"memory":   int64(192 << 20),
			"networks": []any{map[string]any{"name": "lan", "address": "10.77.0.10"}},
		}})
	pf := create(Action{Stack: stack, Address: "port_forward.http", Kind: "port_forward",
		Attrs: map[string]any{"host_port": int64(8080), "protocol": "tcp", "target": spec.Unknown{}, "target_port": int64(80)}})

	results := map[string]map[string]any{}
	createAll := func() {
		t.Helper()
		o := run(t, d["image"], &img, map[string]map[string]any{})
		if o.Attrs["id"] != sum || o.Attrs["sha256"] != sum || o.Attrs["size"].(int64) <= 0 {
			t.Fatalf("image attrs %v", o.Attrs)
		}
		results["image.guest"] = o.Attrs
		o = run(t, d["network"], &lan, results)
		if o.Attrs["gateway"] != "10.77.0.1" || o.Attrs["bridge"] != network.BridgeName(stack, "network.lan") || o.Attrs["id"] != o.Attrs["bridge"] {
			t.Fatalf("network attrs %v", o.Attrs)
		}
		o = run(t, d["volume"], &vol, results)
		volID, _ := o.Attrs["id"].(string)
		if !strings.HasPrefix(volID, "kiln_") {
			t.Fatalf("volume attrs %v", o.Attrs)
		}
		srv.Attrs["volumes"] = []any{volID}
		o = run(t, d["server"], &srv, results)
		wantAddrs := map[string]any{"lan": "10.77.0.10"}
		if o.Attrs["id"] != server.Name(stack, "server.web") || o.Attrs["address"] != "10.77.0.10" ||
			!reflect.DeepEqual(o.Attrs["addresses"], wantAddrs) || o.Attrs["mac"] != server.MAC(stack, "server.web", "network.lan") ||
			o.Attrs["image"] != sum {
			t.Fatalf("server attrs %v", o.Attrs)
		}
		o = run(t, d["port_forward"], &pf, map[string]map[string]any{"server.web": results["server.web"]})
		if o.Attrs["target"] != "10.77.0.10" || o.Attrs["id"] == "" {
			t.Fatalf("port_forward attrs %v", o.Attrs)
		}
	}
	createAll()

	// dnsmasq has the server's fixed address.
	rec, ok, err := r.h.Records.Get("network", network.BridgeName(stack, "network.lan"))
	if err != nil || !ok {
		t.Fatalf("network record: %v %v", ok, err)
	}
	st, err := r.net.Read(ctx, network.SpecOf(rec))
	if err != nil {
		t.Fatal(err)
	}
	hostname := Hostname(stack, "server.web")
	wantHost := []network.Host{{MAC: server.MAC(stack, "server.web", "network.lan"), IP: "10.77.0.10", Hostname: hostname}}
	if !reflect.DeepEqual(st.Hosts, wantHost) || !st.DHCP || !st.NAT {
		t.Fatalf("network state %+v, want hosts %+v with DHCP and NAT", st, wantHost)
	}

	// A client in another namespace reaches the guest through the forward.
	client := netnstest.New(t)
	netnstest.Veth(t, client, "kvc0", "eth0", "192.168.250.1/30", "192.168.250.2/30")
	body := waitThrough(t, r, client, "http://192.168.250.1:8080/", 150*time.Second, stack, func(b string) bool {
		return strings.Contains(b, "hostname="+hostname) && strings.Contains(b, "vdb")
	})
	t.Logf("guest answered through the port forward: %q", body)

	// Every create again: nothing new.
	before := countObjects(t, r, stack)
	createAll()
	if after := countObjects(t, r, stack); after != before {
		t.Fatalf("a repeated create changed what exists: before %+v, after %+v", before, after)
	}
	if before.domains != 1 || before.volumes != 3 || before.rules == 0 || before.bridges != 1 {
		t.Fatalf("objects after create: %+v, want 1 domain, 3 volumes (data, overlay, seed), 1 bridge, some rules", before)
	}
	if st, _ := r.net.Read(ctx, network.SpecOf(rec)); !reflect.DeepEqual(st.Hosts, wantHost) {
		t.Fatalf("hosts after a repeated create: %+v", st.Hosts)
	}

	// Read reflects the host.
	for _, a := range []Action{img, lan, vol, srv, pf} {
		a.ID, _ = results[a.Address]["id"].(string)
		a.Op = api.OpUpdate
		obj, exists, err := d[a.Kind].Read(ctx, a)
		if err != nil || !exists {
			t.Fatalf("read %s: exists %v, %v", a.Address, exists, err)
		}
		if a.Kind == "server" && (obj.Attrs["cpus"] != int64(1) || obj.Attrs["memory"] != int64(192<<20) ||
			!reflect.DeepEqual(obj.Attrs["volumes"], srv.Attrs["volumes"]) || obj.Attrs["address"] != "10.77.0.10") {
			t.Fatalf("read server: %v", obj.Attrs)
		}
	}

	// Drift: the NAT rule removed behind kiln's back reads as nat = false;
	// a create repairs it.
	dropMasquerade(t, stack)
	if obj, exists, err := d["network"].Read(ctx, lan); err != nil || !exists || obj.Attrs["nat"] != false {
		t.Fatalf("read network after its NAT rule went: %v %v %v", obj.Attrs, exists, err)
	}
	run(t, d["network"], &lan, results)
	if obj, _, _ := d["network"].Read(ctx, lan); obj.Attrs["nat"] != true {
		t.Fatalf("create did not repair NAT: %v", obj.Attrs)
	}

	// An update of memory restarts the domain; Read shows the new size.
	up := srv
	up.Op, up.ID = api.OpUpdate, server.Name(stack, "server.web")
	up.Attrs = map[string]any{}
	for k, v := range srv.Attrs {
		up.Attrs[k] = v
	}
	up.Attrs["memory"] = int64(256 << 20)
	if _, err := d["server"].Update(ctx, up); err != nil {
		t.Fatalf("update memory: %v", err)
	}
	if obj, _, err := d["server"].Read(ctx, srv); err != nil || obj.Attrs["memory"] != int64(256<<20) {
		t.Fatalf("read after a memory update (attrs still say 192MiB): %v, %v", obj.Attrs, err)
	}

	conn, err := libvirttest.Shared(t).Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	dom, err := conn.LookupDomainByName(server.Name(stack, "server.web"))
	if err != nil {
		t.Fatal(err)
	}

	// Growing the data volume the running guest has attached goes through
	// the guest's domain (qemu holds the image): libvirt's view of the
	// guest's vdb and the volume's Read both show the new size.
	grow := vol
	grow.Op = api.OpUpdate
	grow.ID, _ = results["volume.data"]["id"].(string)
	grow.Attrs = map[string]any{"size": int64(96 << 20), "format": "qcow2"}
	if obj, err := d["volume"].Update(ctx, grow); err != nil || obj.Attrs["size"] != int64(96<<20) {
		t.Fatalf("grow the attached volume: %v, %v", obj.Attrs, err)
	}
	if info, err := dom.GetBlockInfo("vdb", 0); err != nil || info.Capacity != 96<<20 {
		t.Fatalf("guest's vdb after the grow: %+v, %v", info, err)
	}
	if obj, ok, err := d["volume"].Read(ctx, grow); err != nil || !ok || obj.Attrs["size"] != int64(96<<20) {
		t.Fatalf("read after the grow: %v %v %v", obj.Attrs, ok, err)
	}

	// The domain removed behind kiln's back: Read says it is gone.
	if err := dom.Destroy(); err != nil {
		t.Fatal(err)
	}
	if err := dom.Undefine(); err != nil {
		t.Fatal(err)
	}
	dom.Free()
	if _, exists, err := d["server"].Read(ctx, srv); err != nil || exists {
		t.Fatalf("read after the domain was removed: exists %v, %v", exists, err)
	}

	// Delete everything in reverse order, twice.
	for i := 0; i < 2; i++ {
		for _, a := range []Action{pf, srv, vol, lan, img} {
			a.Op = api.OpDelete
			a.ID, _ = results[a.Address]["id"].(string)
			if err := d[a.Kind].Delete(ctx, a); err != nil {
				t.Fatalf("delete %s (#%d): %v", a.Address, i+1, err)
			}
		}
	}
	assertNothingLeft(t, r, stack)
	for _, a := range []Action{pf, srv, vol, lan} {
		if _, exists, err := d[a.Kind].Read(ctx, a); err != nil || exists {
			t.Fatalf("read %s after delete: exists %v, %v", a.Address, exists, err)
		}
	}
}

// waitThrough polls url from inside ns until the body satisfies ok.
func waitThrough(t *testing.T, r *Real, ns *netnstest.NS, url string, limit time.Duration, stack string, ok func(string) bool) string {
	t.Helper()
	client := &http.Client{Timeout: 3 * time.Second}
	var last string
	answered := testwait.Until(limit, time.Second, func() bool {
		_, body, err := netnstest.Get(ns, client, url)
		client.CloseIdleConnections()
		if err != nil {
			last = err.Error()
			return false
		}
		last = body
		return ok(body)
	})
	if answered {
		return last
	}
	console, _ := os.ReadFile(r.srv.ConsoleLog(stack, "server.web"))
	t.Fatalf("%s did not answer as expected within %s; last: %q\nconsole:\n%s\nqemu log:\n%s",
		url, limit, last, console, libvirttest.Shared(t).QemuLog(server.Name(stack, "server.web")))
	return ""
}

type objectCounts struct {
	domains, volumes, bridges, rules, dnsmasq int
}

func countObjects(t *testing.T, r *Real, stack string) objectCounts {
	t.Helper()
	var c objectCounts
	list, err := r.srv.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c.domains = len(list)
	vols, err := r.vols.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c.volumes = len(vols)
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, network.BridgePrefix) {
			c.bridges++
		}
	}
	c.rules = len(stackRules(t, stack))
	c.dnsmasq = len(netnstest.DnsmasqPids(t))
	return c
}

// stackRules lists the iptables rules of kiln's chains tagged with one of
// the stack's owners.
func stackRules(t *testing.T, stack string) []string {
	t.Helper()
	return netnstest.Rules(t, func(l string) bool { return strings.Contains(l, "kiln:"+stack+"/") })
}

// dropMasquerade deletes the stack's MASQUERADE rule of network.lan.
func dropMasquerade(t *testing.T, stack string) {
	t.Helper()
	b, err := exec.Command("iptables", "-w", "-t", "nat", "-S", network.ChainPostrouting).CombinedOutput()
	if err != nil {
		t.Fatalf("iptables: %v: %s", err, b)
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, "-A ") {
			continue
		}
		n++
		if strings.Contains(l, "MASQUERADE") && network.Comment(l) == "kiln:"+stack+"/network.lan" {
			args := []string{"-w", "-t", "nat", "-D", network.ChainPostrouting, strconv.Itoa(n)}
			if out, err := exec.Command("iptables", args...).CombinedOutput(); err != nil {
				t.Fatalf("iptables %v: %v: %s", args, err, out)
			}
			return
		}
	}
	t.Fatalf("no MASQUERADE rule of %s in:\n%s", stack, b)
}

// assertNothingLeft checks that no domain, kiln volume, bridge, dnsmasq,
// iptables rule or file of the stack is left.
func assertNothingLeft(t *testing.T, r *Real, stack string) {
	t.Helper()
	c := countObjects(t, r, stack)
	if c != (objectCounts{}) {
		t.Errorf("left after delete: %+v", c)
	}
	if rules := stackRules(t, stack); len(rules) != 0 {
		t.Errorf("iptables rules left: %q", rules)
	}
	for _, kind := range kinds.Names() {
		recs, err := r.h.Records.List(kind)
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range recs {
			if rec.Stack == stack {
				t.Errorf("record left: %+v", rec)
			}
		}
	}
	filepath.WalkDir(r.DataDir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && strings.Contains(filepath.Base(p), stack) {
			t.Errorf("file left under the data directory: %s", p)
		}
		return nil
	})
}

func TestRealOrphans(t *testing.T) {
	ctx := context.Background()
	r, d, path, sum := openRealWithGuest(t)
	const stack = "gcstack"
	results := map[string]map[string]any{}
	img := create(Action{Stack: stack, Address: "image.guest", Kind: "image", Attrs: map[string]any{"source": path, "sha256": sum}})
	run(t, d["image"], &img, results)
	lan := create(Action{Stack: stack, Address: "network.lan", Kind: "network", Attrs: map[string]any{"cidr": "10.78.0.0/24", "dhcp": true}})
	run(t, d["network"], &lan, results)
	vol := create(Action{Stack: stack, Address: "volume.data", Kind: "volume", Attrs: map[string]any{"size": int64(16 << 20), "format": "qcow2"}})
	run(t, d["volume"], &vol, results)
	// Two servers without addresses: the lowest free ones from .10 on.
	var addrs []any
	for _, name := range []string{"server.a", "server.b"} {
		for i := 0; i < 2; i++ { // again: the same address
			s := create(Action{Stack: stack, Address: name, Kind: "server", Attrs: map[string]any{
				"image": sum, "cpus": int64(1), "memory": int64(128 << 20),
				"networks": []any{map[string]any{"name": "lan"}},
			}})
			o := run(t, d["server"], &s, results)
			if i == 1 && o.Attrs["address"] != addrs[len(addrs)-1] {
				t.Fatalf("%s: a repeated create changed the address: %v then %v", name, addrs[len(addrs)-1], o.Attrs["address"])
			}
			if i == 0 {
				addrs = append(addrs, o.Attrs["address"])
			}
		}
	}
	if !reflect.DeepEqual(addrs, []any{"10.78.0.10", "10.78.0.11"}) {
		t.Fatalf("allocated addresses %v, want 10.78.0.10 and 10.78.0.11", addrs)
	}
	pf := create(Action{Stack: stack, Address: "port_forward.ssh", Kind: "port_forward", Attrs: map[string]any{
		"host_port": int64(2222), "target": "10.78.0.10", "target_port": int64(22)}})
	run(t, d["port_forward"], &pf, results)

	// Everything is owned: nothing is an orphan.
	all, err := Orphans(ctx, d, func(string, string) bool { return true })
	if err != nil || len(all) != 0 {
		t.Fatalf("Orphans with every stack owned = %+v, %v", all, err)
	}
	owned := func(s, address string) bool {
		if s == stack && strings.Contains(address, "~") {
			t.Errorf("owned was asked about a physical address %q", address)
		}
		return s != stack
	}
	orphans, err := Orphans(ctx, d, owned)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, o := range orphans {
		kinds[o.Kind]++
		if !strings.HasPrefix(o.Owner, "kiln:"+stack+"/") {
			t.Errorf("orphan %+v is not of stack %s", o, stack)
		}
	}
	// 2 domains; data volume + 2 overlays + 2 seeds; 1 bridge; rules of the
	// network and the port forward; 1 dnsmasq; a record per instance but the
	// image's.
	if kinds[OrphanDomain] != 2 || kinds[OrphanVolume] != 5 || kinds[OrphanBridge] != 1 || kinds[OrphanRule] < 5 ||
		kinds[OrphanDnsmasq] != 1 || kinds[OrphanFile] != 5 {
		t.Fatalf("orphans by kind %v:\n%+v", kinds, orphans)
	}
	if err := RemoveOrphans(ctx, d, orphans); err != nil {
		t.Fatalf("RemoveOrphans: %v", err)
	}
	if left, err := Orphans(ctx, d, owned); err != nil || len(left) != 0 {
		t.Fatalf("orphans after RemoveOrphans: %+v, %v", left, err)
	}
	assertNothingLeft(t, r, stack)
}

// TestUnknownAttributeNamed: an attribute still unknown when the action
// runs fails the decode, naming the attribute (and the list element), and
// is not taken as a value.
func TestUnknownAttributeNamed(t *testing.T) {
	a := Action{Address: "server.web", Kind: "server", Attrs: map[string]any{"image": "abc", "volumes": []any{"v1", spec.Unknown{}}}}
	err := request[kinds.ServerAttrs](server.Executor{Host: &host.Host{Unknown: spec.IsUnknown}}, a).SpecErr
	if err == nil || !strings.Contains(err.Error(), `"volumes[1]"`) || !strings.Contains(err.Error(), "unknown") {
		t.Fatalf("err = %v", err)
	}
	pf := Action{Address: "x", Kind: "port_forward", Attrs: map[string]any{"host_port": int64(80), "target_port": int64(80), "target": spec.Unknown{}}}
	if err := request[kinds.PortForwardAttrs](portforward.Executor{}, pf).SpecErr; err == nil || !strings.Contains(err.Error(), `"target" is still unknown`) {
		t.Fatalf("an unknown target was taken: err = %v", err)
	}
}

// TestRealReplaceGenerations runs the two halves of a create_before_destroy
// replace: the create of a new generation makes a second instance beside
// the first, and the delete by the old id removes only the old one.
func TestRealReplaceGenerations(t *testing.T) {
	ctx := context.Background()
	r := openRealForTest(t)
	d := r.Drivers()
	const stack = "genstack"
	// The port forward needs a route to its target.
	route := create(Action{Stack: stack, Address: "network.route", Kind: "network", Attrs: map[string]any{"cidr": "10.80.0.0/24", "dhcp": false}})
	if _, err := d["network"].Create(ctx, route); err != nil {
		t.Fatal(err)
	}
	registerHost(t, r, stack, "network.route", "10.80.0.10") // a server of the stack
	for _, a := range []Action{
		{Stack: stack, Address: "volume.data", Kind: "volume", Attrs: map[string]any{"size": int64(8 << 20), "format": "qcow2"}},
		{Stack: stack, Address: "network.lan", Kind: "network", Attrs: map[string]any{"cidr": "10.79.0.0/24", "dhcp": false}},
		{Stack: stack, Address: "port_forward.p", Kind: "port_forward", Attrs: map[string]any{"host_port": int64(7070), "target": "10.80.0.10", "target_port": int64(70)}},
	} {
		old := create(a)
		o1, err := d[a.Kind].Create(ctx, old)
		if err != nil {
			t.Fatalf("create %s: %v", a.Address, err)
		}
		oldID := o1.Attrs["id"].(string)
		// The create half of a replace: a new generation, ID = the old id.
		nw := create(a)
		nw.Generation, nw.ID = "op-2", oldID
		if _, exists, err := d[a.Kind].Read(ctx, nw); err != nil || exists {
			t.Fatalf("%s: read of the new generation before its create: %v, %v", a.Address, exists, err)
		}
		o2, err := d[a.Kind].Create(ctx, nw)
		if err != nil {
			t.Fatalf("create %s generation 2: %v", a.Address, err)
		}
		newID := o2.Attrs["id"].(string)
		if newID == oldID || o2.PhysicalName == o1.PhysicalName {
			t.Fatalf("%s: the new generation has the old id %q", a.Address, newID)
		}
		if o, exists, err := d[a.Kind].Read(ctx, nw); err != nil || !exists || o.Attrs["id"] != newID {
			t.Fatalf("%s: read of the new generation: %v %v %v", a.Address, o.Attrs, exists, err)
		}
		// The delete half: by the old id.
		del := a
		del.Op, del.ID = api.OpDelete, oldID
		if err := d[a.Kind].Delete(ctx, del); err != nil {
			t.Fatalf("delete old %s: %v", a.Address, err)
		}
		if _, exists, err := d[a.Kind].Read(ctx, del); err != nil || exists {
			t.Fatalf("%s: the old instance is still there: %v, %v", a.Address, exists, err)
		}
		up := a
		up.Op, up.ID = api.OpUpdate, newID
		if _, exists, err := d[a.Kind].Read(ctx, up); err != nil || !exists {
			t.Fatalf("%s: deleting the old instance took the new one: %v, %v", a.Address, exists, err)
		}
		del.ID = newID
		if err := d[a.Kind].Delete(ctx, del); err != nil {
			t.Fatalf("delete new %s: %v", a.Address, err)
		}
	}
	deleteAll(t, d, route)
	assertNothingLeft(t, r, stack)
}

func TestRealDriversSayHowToFixLibvirtd(t *testing.T) {
	t.Setenv(LibvirtURIEnv, "qemu:///system?socket=/nonexistent/libvirt-sock")
	_, err := RealDrivers(t.TempDir(), RealOptions{})
	if err == nil {
		t.Fatal("RealDrivers succeeded without a reachable libvirtd")
	}
	for _, want := range []string{"libvirtd is not reachable at qemu:///system?socket=/nonexistent/libvirt-sock", "apt-get install libvirt-daemon-system qemu-system-x86", "libvirtd -d; virtlogd -d"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// TestAccelAtStart: the agent's accelerator is what a probe guest shows;
// -accel kvm where KVM cannot run a guest is an error at start, naming
// why, and -accel tcg runs guests under TCG without probing.
func TestAccelAtStart(t *testing.T) {
	netnstest.Guard(t)
	d := libvirttest.Shared(t)
	t.Setenv(LibvirtURIEnv, d.URI)
	conn, err := d.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	probe, err := accel.RunProbe(context.Background(), conn, "kvm", t.TempDir(), 0)
	kvmWorks := err == nil && probe.OK
	t.Logf("kvm probe: ok=%v %s (%v)", probe.OK, probe.Reason, err)

	dir := t.TempDir()
	r, err := OpenReal(dir, StorageDir(dir), RealOptions{Accel: "kvm"})
	switch {
	case kvmWorks && err != nil:
		t.Fatalf("-accel kvm where the probe passes: %v", err)
	case kvmWorks:
		if a, _ := r.Accel(); a != AccelKVM {
			t.Errorf("-accel kvm runs %s", a)
		}
		r.Close()
	case err == nil:
		r.Close()
		t.Fatalf("-accel kvm started although KVM cannot run a guest here (%s)", probe.Reason)
	case !strings.Contains(err.Error(), "-accel kvm: KVM cannot run a guest on this host"):
		t.Fatalf("-accel kvm error does not say why: %v", err)
	default:
		t.Logf("-accel kvm: %v", err)
	}

	r, err = OpenReal(dir, StorageDir(dir), RealOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a, why := r.Accel()
	r.Close()
	if (a == AccelKVM) != kvmWorks || why == "" {
		t.Fatalf("-accel auto: %s (%s); the kvm probe passed: %v", a, why, kvmWorks)
	}
	r, err = OpenReal(dir, StorageDir(dir), RealOptions{Accel: "tcg"})
	if err != nil {
		t.Fatal(err)
	}
	a, why = r.Accel()
	r.Close()
	if a != AccelTCG || !strings.Contains(why, "requested") {
		t.Fatalf("-accel tcg: %s (%s)", a, why)
	}
	if _, err := OpenReal(dir, StorageDir(dir), RealOptions{Accel: "fast"}); err == nil || !strings.Contains(err.Error(), "want auto, kvm or tcg") {
		t.Fatalf("-accel fast: %v", err)
	}
}

// oneServer makes an image, a DHCP network on cidr and one server whose
// ready attribute is ready, through the agent's drivers, and removes the
// server and network when the test ends. It returns the server's object.
func oneServer(t *testing.T, r *Real, stack, cidr string, ready map[string]any) Object {
	t.Helper()
	d := r.Drivers()
	path, sum := testGuest(t)
	img := create(Action{Stack: stack, Address: "image.guest", Kind: "image", Attrs: map[string]any{"source": path, "sha256": sum}})
	lan := create(Action{Stack: stack, Address: "network.lan", Kind: "network", Attrs: map[string]any{"cidr": cidr, "dhcp": true}})
	srv := create(Action{Stack: stack, Address: "server.web", Kind: "server", Attrs: map[string]any{
		"image": sum, "cpus": int64(1), "memory": int64(128 << 20),
		"networks": []any{map[string]any{"name": "lan"}},
		"ready":    ready,
	}})
	results := map[string]map[string]any{}
	results["image.guest"] = run(t, d["image"], &img, results).Attrs
	results["network.lan"] = run(t, d["network"], &lan, results).Attrs
	t.Cleanup(func() {
		del := srv
		del.Op, del.ID = api.OpDelete, server.Name(stack, "server.web")
		d["server"].Delete(context.Background(), del)
		lan.Op = api.OpDelete
		d["network"].Delete(context.Background(), lan)
	})
	return run(t, d["server"], &srv, results)
}

// TestRealKVMFallback: an auto agent whose guest dies of a KVM internal
// error turns to TCG and makes the guest once more. The agent is forced
// to believe KVM works; where it really does, the guest simply runs under
// KVM.
func TestRealKVMFallback(t *testing.T) {
	r := openRealForTest(t)
	r.accelWant = "auto"
	r.srv.SetAccel("kvm", "forced by the test")
	const stack = "rtkvm"
	obj := oneServer(t, r, stack, "10.78.0.0/24", map[string]any{"console": "KILN-GUEST-READY", "timeout": int64(180)})
	if obj.ReadyAfter <= 0 {
		t.Fatalf("server created without a ready time: %+v", obj)
	}
	s, err := r.srv.Read(context.Background(), stack, "server.web")
	if err != nil {
		t.Fatal(err)
	}
	accelNow, why := r.Accel()
	t.Logf("guest runs as a %s domain; agent accelerator %s (%s)", s.DomainType, accelNow, why)
	switch {
	case accelNow == AccelTCG:
		if s.DomainType != "qemu" || !strings.Contains(why, "KVM internal error") {
			t.Fatalf("after the fallback: domain type %s, reason %q", s.DomainType, why)
		}
		if c := Capacity(Config{DataDir: r.DataDir, Drivers: r.Drivers()}); c.Accel != AccelTCG {
			t.Fatalf("the agent still reports %q after the fallback", c.Accel)
		}
	case s.DomainType != "kvm":
		t.Fatalf("accelerator %s but the guest is a %s domain", accelNow, s.DomainType)
	}
}

// TestRealSignalReady: a server with `ready { signal = true }` gets its
// ready URL in its seed, the agent listens on the network's gateway, and
// the guest's call makes it ready.
func TestRealSignalReady(t *testing.T) {
	r := openRealForTest(t)
	const stack = "rtsig"
	obj := oneServer(t, r, stack, "10.79.0.0/24", map[string]any{"signal": true, "timeout": int64(180)})
	name := server.Name(stack, "server.web")
	if obj.ReadyAfter <= 0 || r.signals.Signalled(name).IsZero() {
		t.Fatalf("server ready after %s; signalled at %v", obj.ReadyAfter, r.signals.Signalled(name))
	}
	t.Logf("ready after %s on the guest's call of its ready URL", obj.ReadyAfter.Round(time.Millisecond))
}
