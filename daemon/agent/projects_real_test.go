package agent

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/executors"
	"github.com/kiln-dev/kiln/executors/network"
	"github.com/kiln-dev/kiln/executors/volume"
)

// projectStack is what one stack made through the real drivers.
type projectStack struct {
	scope              string
	lan, vol, srv, pf  Action
	bridge, volID, dom string
	pfID               string
}

// makeProjectStack makes a network, a volume, one server (attached to
// both, ready when its console says so) and a port forward from hostPort
// to it for stack "web" of project.
func makeProjectStack(t *testing.T, r *Real, project, cidr string, hostPort int64, imgAttrs map[string]any) *projectStack {
	t.Helper()
	d := r.Drivers()
	p := &projectStack{scope: executors.Scope(project, "web")}
	results := map[string]map[string]any{"image.guest": imgAttrs}
	p.lan = create(Action{Stack: p.scope, Address: "network.lan", Kind: "network", Attrs: map[string]any{"cidr": cidr, "nat": true, "dhcp": true}})
	p.bridge, _ = run(t, d["network"], &p.lan, results).Attrs["id"].(string)
	p.vol = create(Action{Stack: p.scope, Address: "volume.data", Kind: "volume", Attrs: map[string]any{"size": int64(16 << 20), "format": "qcow2"}})
	p.volID, _ = run(t, d["volume"], &p.vol, results).Attrs["id"].(string)
	p.srv = create(Action{Stack: p.scope, Address: "server.web", Kind: "server", Attrs: map[string]any{
		"image": imgAttrs["id"], "cpus": int64(1), "memory": int64(128 << 20),
		"networks": []any{map[string]any{"name": "lan"}},
		"volumes":  []any{p.volID},
		"ready":    map[string]any{"console": "KILN-GUEST-READY", "timeout": int64(180)},
	}})
	o := run(t, d["server"], &p.srv, results)
	p.dom, _ = o.Attrs["id"].(string)
	if o.ReadyAfter <= 0 {
		t.Fatalf("%s: server made without a ready time: %+v", p.scope, o)
	}
	results["server.web"] = o.Attrs
	p.pf = create(Action{Stack: p.scope, Address: "port_forward.http", Kind: "port_forward", Attrs: map[string]any{
		"host_port": hostPort, "protocol": "tcp", "target": o.Attrs["address"], "target_port": int64(80)}})
	p.pfID, _ = run(t, d["port_forward"], &p.pf, results).Attrs["id"].(string)
	for _, a := range []*Action{&p.lan, &p.vol, &p.srv, &p.pf} {
		a.ID, _ = results[a.Address]["id"].(string)
	}
	return p
}

// destroy deletes the stack's server, volume and network, as a destroy
// does.
func (p *projectStack) destroy(t *testing.T, r *Real) {
	t.Helper()
	d := r.Drivers()
	for _, a := range []Action{p.pf, p.srv, p.vol, p.lan} {
		a.Op = api.OpDelete
		if err := d[a.Kind].Delete(context.Background(), a); err != nil {
			t.Fatalf("delete %s of %s: %v", a.Address, p.scope, err)
		}
	}
}

// assertIntact checks that the stack's domain runs with its owner tag,
// its bridge carries its owner, its volume, overlay, seed and dnsmasq
// configuration are there, and every driver's Read finds its resources.
func (p *projectStack) assertIntact(t *testing.T, r *Real) {
	t.Helper()
	ctx := context.Background()
	s, err := r.srv.Read(ctx, p.scope, "server.web")
	if err != nil || !s.Running || s.Name != p.dom || s.Stack != p.scope {
		t.Fatalf("%s: domain %+v, %v; want %s running", p.scope, s, err, p.dom)
	}
	link, err := netlink.LinkByName(p.bridge)
	if err != nil || link.Attrs().Alias != executors.Owner(p.scope, "network.lan") {
		t.Fatalf("%s: bridge %s: %v (alias %q)", p.scope, p.bridge, err, aliasOf(link))
	}
	for _, name := range []string{p.volID, volume.Name(p.scope, "server.web", volume.QCOW2), volume.BaseName(p.scope, "server.web") + "-seed.iso"} {
		if _, err := r.vols.Lookup(name); err != nil {
			t.Fatalf("%s: volume %s: %v", p.scope, name, err)
		}
	}
	if confs, _ := filepath.Glob(filepath.Join(r.net.Dir(network.Spec{Stack: p.scope, Address: "network.lan"}), "dnsmasq-*.conf")); len(confs) == 0 {
		t.Fatalf("%s: no dnsmasq configuration", p.scope)
	}
	if len(stackRules(t, p.scope)) == 0 {
		t.Fatalf("%s: no iptables rules", p.scope)
	}
	if rules, err := network.OwnerRules(r.net.IPTables, executors.Owner(p.scope, "port_forward.http")); err != nil || len(rules) == 0 {
		t.Fatalf("%s: port forward rules %q, %v", p.scope, rules, err)
	}
	for _, a := range []Action{p.lan, p.vol, p.srv, p.pf} {
		a.Op = api.OpUpdate
		if _, exists, err := r.Drivers()[a.Kind].Read(ctx, a); err != nil || !exists {
			t.Fatalf("%s: read %s: exists %v, %v", p.scope, a.Address, exists, err)
		}
	}
}

// assertGone checks that nothing of the stack is left on the host.
func (p *projectStack) assertGone(t *testing.T, r *Real) {
	t.Helper()
	if _, err := r.srv.Read(context.Background(), p.scope, "server.web"); err == nil {
		t.Errorf("%s: domain %s left", p.scope, p.dom)
	}
	if _, err := netlink.LinkByName(p.bridge); err == nil {
		t.Errorf("%s: bridge %s left", p.scope, p.bridge)
	}
	for _, name := range []string{p.volID, volume.Name(p.scope, "server.web", volume.QCOW2), volume.BaseName(p.scope, "server.web") + "-seed.iso"} {
		if _, err := r.vols.Lookup(name); err == nil {
			t.Errorf("%s: volume %s left", p.scope, name)
		}
	}
	if _, err := os.Stat(r.net.Dir(network.Spec{Stack: p.scope, Address: "network.lan"})); err == nil {
		t.Errorf("%s: dnsmasq directory left", p.scope)
	}
	if rules := stackRules(t, p.scope); len(rules) != 0 {
		t.Errorf("%s: iptables rules left: %q", p.scope, rules)
	}
	for _, kind := range []string{"network", "volume", "server", "port_forward"} {
		recs, err := r.h.Records.List(kind)
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range recs {
			if rec.Stack == p.scope {
				t.Errorf("%s: record left: %+v", p.scope, rec)
			}
		}
	}
}

func aliasOf(l netlink.Link) string {
	if l == nil {
		return ""
	}
	return l.Attrs().Alias
}

// gcAsk runs `kiln gc` on the agent as the server asks it: the owned
// addresses by scope (see daemon/server handleGC).
func gcAsk(t *testing.T, a *Agent, force bool, owners ...*projectStack) []api.Orphan {
	t.Helper()
	owned := map[string][]string{}
	for _, p := range owners {
		owned[p.scope] = []string{"network.lan", "volume.data", "server.web", "port_forward.http"}
	}
	var orphans []api.Orphan
	if ans := hostAsk(t, a, gcReq(owned, []string{}, force)).GC; ans != nil {
		orphans = ans.Orphans
	}
	return orphans
}

// TestRealTwoProjectsOneStackName: stack "web" of project p1 and stack
// "web" of project p2 side by side on one agent, each with a network, a
// volume and a booted server, next to a default-project stack "p1-web"
// (whose name reads like p1's prefix). Every host object is distinct;
// gc of a forgotten p1 lists only p1's objects; destroying p1/web leaves
// p2/web running and whole; gc -force of p1's leftovers does not touch p2.
func TestRealTwoProjectsOneStackName(t *testing.T) {
	ctx := context.Background()
	r, d, path, sum := openRealWithGuest(t)
	a := &Agent{id: "projects-test", cfg: Config{Drivers: d}, log: slog.New(slog.DiscardHandler)}
	img := create(Action{Stack: "web", Address: "image.guest", Kind: "image", Attrs: map[string]any{"source": path, "sha256": sum}})
	imgAttrs := run(t, d["image"], &img, map[string]map[string]any{}).Attrs

	p1 := makeProjectStack(t, r, "p1", "10.83.1.0/24", 18081, imgAttrs)
	p2 := makeProjectStack(t, r, "p2", "10.83.2.0/24", 18082, imgAttrs)
	t.Cleanup(func() {
		for _, p := range []*projectStack{p1, p2} {
			for _, a := range []Action{p.pf, p.srv, p.vol, p.lan} {
				a.Op = api.OpDelete
				d[a.Kind].Delete(context.Background(), a)
			}
		}
	})
	// A default-project stack whose name is p1's scope with a '-'.
	dflt := create(Action{Stack: executors.Scope("default", "p1-web"), Address: "network.lan", Kind: "network", Attrs: map[string]any{"cidr": "10.83.3.0/24", "dhcp": true}})
	dfltBridge, _ := run(t, d["network"], &dflt, map[string]map[string]any{}).Attrs["id"].(string)
	t.Cleanup(func() {
		del := dflt
		del.Op = api.OpDelete
		d["network"].Delete(context.Background(), del)
	})

	t.Logf("p1/web: domain %s, bridge %s, volume %s", p1.dom, p1.bridge, p1.volID)
	t.Logf("p2/web: domain %s, bridge %s, volume %s", p2.dom, p2.bridge, p2.volID)
	t.Logf("default p1-web: bridge %s", dfltBridge)
	if p1.dom == p2.dom || p1.bridge == p2.bridge || p1.volID == p2.volID || p1.pfID == p2.pfID ||
		p1.bridge == dfltBridge || p2.bridge == dfltBridge || dfltBridge != network.BridgeName("p1-web", "network.lan") {
		t.Fatalf("names collide: p1 %s %s %s, p2 %s %s %s, default p1-web bridge %s",
			p1.dom, p1.bridge, p1.volID, p2.dom, p2.bridge, p2.volID, dfltBridge)
	}
	if s, _ := r.srv.Read(ctx, p1.scope, "server.web"); s.Stack != "p1/web" {
		t.Fatalf("p1's domain is tagged with scope %q", s.Stack)
	}
	p1.assertIntact(t, r)
	p2.assertIntact(t, r)

	// A p1 server cannot attach p2's volume, nor p2's server's overlay or
	// seed, by naming their ids.
	for _, id := range []string{p2.volID, volume.Name(p2.scope, "server.web", volume.QCOW2), volume.BaseName(p2.scope, "server.web") + "-seed.iso", "../x"} {
		thief := create(Action{Stack: p1.scope, Address: "server.thief", Kind: "server", Attrs: map[string]any{
			"image": sum, "cpus": int64(1), "memory": int64(128 << 20), "volumes": []any{id}},
			Deps: map[string]map[string]any{"image.guest": {"id": sum}}})
		_, err := d["server"].Create(ctx, thief)
		if err == nil || !strings.Contains(err.Error(), "is not a volume of stack") {
			t.Errorf("p1 attaching %s: %v", id, err)
		}
		thief.Op = api.OpDelete
		if err := d["server"].Delete(ctx, thief); err != nil {
			t.Errorf("delete p1's server.thief: %v", err)
		}
	}
	p2.assertIntact(t, r)

	// The console of p2's server, asked as the server asks it (project
	// and stack), is p2's guest's.
	cons := hostAsk(t, a, consoleReq("p2", "web", p2.dom, -1)).Console
	if text := cons.Text; !strings.Contains(text, "KILN-GUEST-READY") {
		t.Fatalf("console of p2/web: %q", text)
	}
	// Asked for p1's stack, p2's domain is refused.
	if rep := a.runHost(ctx, consoleReq("p1", "web", p2.dom, -1)); rep.OK {
		t.Fatalf("the console of p2's domain was given to p1/web")
	}

	// Everything owned: no orphans. p1 forgotten: only p1's objects are.
	if o := gcAsk(t, a, false, p1, p2, &projectStack{scope: "p1-web"}); len(o) != 0 {
		t.Fatalf("orphans with every stack owned: %+v", o)
	}
	orphans := gcAsk(t, a, false, p2, &projectStack{scope: "p1-web"})
	kinds := map[string]int{}
	for _, o := range orphans {
		kinds[o.Kind]++
		if scope, _, ok := executors.ParseOwner(o.Owner); !ok || scope != "p1/web" {
			t.Errorf("orphan %+v is not p1/web's", o)
		}
	}
	if kinds[OrphanDomain] != 1 || kinds[OrphanVolume] != 3 || kinds[OrphanBridge] != 1 || kinds[OrphanDnsmasq] != 1 || kinds[OrphanRule] == 0 {
		t.Fatalf("orphans of a forgotten p1/web by kind %v:\n%+v", kinds, orphans)
	}

	// Destroying p1/web leaves p2/web (and the default stack) whole.
	p1.destroy(t, r)
	p1.assertGone(t, r)
	p2.assertIntact(t, r)
	if link, err := netlink.LinkByName(dfltBridge); err != nil || link.Attrs().Alias != executors.Owner("p1-web", "network.lan") {
		t.Fatalf("default p1-web bridge after p1/web's destroy: %v", err)
	}
	if o := gcAsk(t, a, false, p2, &projectStack{scope: "p1-web"}); len(o) != 0 {
		t.Fatalf("orphans after p1/web's destroy: %+v", o)
	}

	// p1/web's objects leaked (made again, then forgotten by the servers):
	// gc -force removes them and nothing of p2/web.
	results := map[string]map[string]any{}
	leak := create(p1.lan)
	run(t, d["network"], &leak, results)
	leakVol := create(p1.vol)
	run(t, d["volume"], &leakVol, results)
	removed := gcAsk(t, a, true, p2, &projectStack{scope: "p1-web"})
	var names []string
	for _, o := range removed {
		if scope, _, ok := executors.ParseOwner(o.Owner); !ok || scope != "p1/web" {
			t.Errorf("gc -force removed %+v, not p1/web's", o)
		}
		names = append(names, o.Kind+" "+o.Name)
	}
	sort.Strings(names)
	t.Logf("gc -force removed: %q", names)
	if len(removed) == 0 {
		t.Fatal("gc -force found none of p1/web's leaked objects")
	}
	p1.assertGone(t, r)
	p2.assertIntact(t, r)
	if o := gcAsk(t, a, false, p2, &projectStack{scope: "p1-web"}); len(o) != 0 {
		t.Fatalf("orphans after gc -force: %+v", o)
	}

	// A network an older kiln made for p1/web carries the default
	// project's name and tag (here: made as default web's). p1/web's
	// read of that id says it is gone and its delete leaves it alone.
	old := create(Action{Stack: "web", Address: "network.lan", Kind: "network", Attrs: map[string]any{"cidr": "10.83.4.0/24"}})
	oldBridge, _ := run(t, d["network"], &old, map[string]map[string]any{}).Attrs["id"].(string)
	t.Cleanup(func() {
		del := old
		del.Op, del.ID = api.OpDelete, oldBridge
		d["network"].Delete(context.Background(), del)
	})
	legacy := old
	legacy.Stack, legacy.Op, legacy.ID = p1.scope, api.OpDelete, oldBridge
	if _, exists, err := d["network"].Read(ctx, legacy); err != nil || exists {
		t.Fatalf("p1/web's read of an older kiln's network: exists %v, %v", exists, err)
	}
	if err := d["network"].Delete(ctx, legacy); err != nil {
		t.Fatalf("p1/web's delete of an older kiln's network: %v", err)
	}
	if link, err := netlink.LinkByName(oldBridge); err != nil || link.Attrs().Alias != executors.Owner("web", "network.lan") {
		t.Fatalf("the older kiln's bridge after p1/web's delete: %v", err)
	}

	p2.destroy(t, r)
	p2.assertGone(t, r)
}
