package agent

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/executors"
	"github.com/kiln-dev/kiln/executors/host"
	"github.com/kiln-dev/kiln/executors/records"
)

// registerHost records ip as a server NIC on the stack's network netAddr,
// as a server create does, without booting a guest.
func registerHost(t *testing.T, r *Real, stack, netAddr, ip string) {
	t.Helper()
	nets, err := r.h.Records.List("network")
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range nets {
		if rec.Stack == stack && host.BaseAddress(rec.Phys) == netAddr {
			a := netip.MustParseAddr(ip).As4()
			rec.Hosts = append(rec.Hosts, records.Host{Server: "test-" + ip, MAC: "52:54:00:ee:" + hex2(a[2]) + ":" + hex2(a[3]), IP: ip})
			if err := r.h.Records.Put(rec); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no network %s of stack %s", netAddr, stack)
}

func hex2(b byte) string { return string("0123456789abcdef"[b>>4]) + string("0123456789abcdef"[b&15]) }

// wantErr checks that err names every part.
func wantErr(t *testing.T, what string, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: accepted, want an error", what)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("%s: error %q does not say %q", what, err, p)
		}
	}
}

func TestRealPolicyLocalPaths(t *testing.T) {
	ctx := context.Background()
	r, d, path, sum := openRealWithGuest(t)
	allowed := t.TempDir()
	if err := os.Symlink(path, filepath.Join(allowed, "guest.qcow2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(allowed, "passwd")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(allowed, "vmlinuz"), []byte("not a kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	const stack = "polpaths"
	img := func(src string) Action {
		return create(Action{Stack: stack, Address: "image.base", Kind: "image", Attrs: map[string]any{"source": src}})
	}

	// A remote agent's default: no local path at all.
	if err := r.SetPolicy(HostPolicy{}); err != nil {
		t.Fatal(err)
	}
	_, err := d["image"].Create(ctx, img("/etc/passwd"))
	wantErr(t, "default policy", err, "image.base", `attribute "source"`, "-allow-local-images")

	if err := r.SetPolicy(HostPolicy{AllowLocalImages: []string{allowed}}); err != nil {
		t.Fatal(err)
	}
	_, err = d["image"].Create(ctx, img(filepath.Join(allowed, "passwd")))
	wantErr(t, "a link out of the allowed directory", err, "image.base", `attribute "source"`, "resolves to /etc/passwd", "-allow-local-images")
	_, err = d["image"].Create(ctx, img(allowed+"/../../../etc/passwd"))
	wantErr(t, "dot-dot", err, "image.base", "-allow-local-images")
	// The test guest's directory is not allowed, but a link to it is not
	// a way in either: its target is outside.
	_, err = d["image"].Create(ctx, img(filepath.Join(allowed, "guest.qcow2")))
	wantErr(t, "a link to a file outside", err, "image.base", "-allow-local-images")

	if err := r.SetPolicy(HostPolicy{AllowLocalImages: []string{allowed, filepath.Dir(path)}}); err != nil {
		t.Fatal(err)
	}
	o, err := d["image"].Create(ctx, img(filepath.Join(allowed, "guest.qcow2")))
	if err != nil || o.Attrs["id"] != sum {
		t.Fatalf("a link inside allowed directories: %v, %v", o.Attrs, err)
	}

	// A server's kernel and initrd: the same rule, checked before anything
	// is made.
	for _, attr := range []string{"kernel", "initrd"} {
		s := create(Action{Stack: stack, Address: "server.k", Kind: "server", Attrs: map[string]any{
			"image": sum, attr: "/etc/shadow", "memory": int64(128 << 20)},
			Deps: map[string]map[string]any{"image.guest": {"id": sum}}})
		_, err = d["server"].Create(ctx, s)
		wantErr(t, attr, err, "server.k", `attribute "`+attr+`"`, "-allow-local-images")
		s.Attrs[attr] = filepath.Join(allowed, "passwd")
		_, err = d["server"].Create(ctx, s)
		wantErr(t, attr+" through a link", err, "server.k", `attribute "`+attr+`"`, "resolves to /etc/passwd")
		deleteAll(t, d, s)
	}
	real, err := r.server().CheckLocal(executors.Instance{Address: "server.k"}, "kernel", filepath.Join(allowed, "vmlinuz"))
	if err != nil || real != filepath.Join(allowed, "vmlinuz") {
		t.Fatalf("an allowed kernel: %q, %v", real, err)
	}
	assertNothingLeft(t, r, stack)
}

func TestRealPolicyPortForward(t *testing.T) {
	ctx := context.Background()
	r := openRealForTest(t)
	d := r.Drivers()
	if err := r.SetPolicy(HostPolicy{}); err != nil { // ports 10000-60000
		t.Fatal(err)
	}
	ReserveHostPorts(d, 14646)
	nets := map[string]Action{}
	for stack, cidr := range map[string]string{"pfa": "10.82.0.0/24", "pfb": "10.83.0.0/24"} {
		n := create(Action{Stack: stack, Address: "network.lan", Kind: "network", Attrs: map[string]any{"cidr": cidr, "dhcp": false}})
		if _, err := d["network"].Create(ctx, n); err != nil {
			t.Fatal(err)
		}
		nets[stack] = n
	}
	registerHost(t, r, "pfa", "network.lan", "10.82.0.10")
	registerHost(t, r, "pfb", "network.lan", "10.83.0.10")
	pf := func(stack string, hostPort int, target string) Action {
		return create(Action{Stack: stack, Address: "port_forward.p", Kind: "port_forward", Attrs: map[string]any{
			"host_port": int64(hostPort), "protocol": "tcp", "target": target, "target_port": int64(80)}})
	}
	refused := []struct {
		name  string
		a     Action
		parts []string
	}{
		{"ssh port", pf("pfa", 22, "10.82.0.10"), []string{"port_forward.p", `attribute "host_port"`, "22 is outside", "10000-60000", "-host-ports"}},
		{"above the range", pf("pfa", 61000, "10.82.0.10"), []string{`attribute "host_port"`, "-host-ports"}},
		{"a reserved port", pf("pfa", 14646, "10.82.0.10"), []string{`attribute "host_port"`, "a port of kiln itself"}},
		{"a target outside every stack", pf("pfa", 12000, "10.82.0.99"), []string{`attribute "target"`, "not the address of a server of stack pfa"}},
		{"another stack's server", pf("pfa", 12000, "10.83.0.10"), []string{`attribute "target"`, "not the address of a server of stack pfa"}},
		{"the host's gateway", pf("pfa", 12000, "10.82.0.1"), []string{`attribute "target"`}},
	}
	for _, tt := range refused {
		_, err := d["port_forward"].Create(ctx, tt.a)
		wantErr(t, tt.name, err, tt.parts...)
	}
	for _, rule := range stackRules(t, "pfa") {
		if strings.Contains(rule, "port_forward") {
			t.Fatalf("a refused forward left a rule: %q", rule)
		}
	}

	// Stack pfa forwards 12000; pfb cannot take it, pfa again can.
	a := pf("pfa", 12000, "10.82.0.10")
	if _, err := d["port_forward"].Create(ctx, a); err != nil {
		t.Fatal(err)
	}
	_, err := d["port_forward"].Create(ctx, pf("pfb", 12000, "10.83.0.10"))
	wantErr(t, "a port another stack holds", err, `attribute "host_port"`, "tcp/12000 is already forwarded on this host by another stack")
	if _, err := d["port_forward"].Create(ctx, a); err != nil {
		t.Fatalf("a repeated create: %v", err)
	}
	// Another protocol on the same port is another forward.
	b := pf("pfb", 12000, "10.83.0.10")
	b.Attrs["protocol"] = "udp"
	if _, err := d["port_forward"].Create(ctx, b); err != nil {
		t.Fatalf("udp/12000 beside tcp/12000: %v", err)
	}

	deleteAll(t, d, a, b, nets["pfa"], nets["pfb"])
	assertNothingLeft(t, r, "pfa")
	assertNothingLeft(t, r, "pfb")
}

// TestRealPolicyForeignVolume: a server attaches only volumes of its own
// stack, not another stack's volume nor any server's overlay or seed.
func TestRealPolicyForeignVolume(t *testing.T) {
	ctx := context.Background()
	r, d, path, sum := openRealWithGuest(t)
	results := map[string]map[string]any{}
	img := create(Action{Stack: "volb", Address: "image.guest", Kind: "image", Attrs: map[string]any{"source": path, "sha256": sum}})
	run(t, d["image"], &img, results)
	vol := create(Action{Stack: "vola", Address: "volume.secret", Kind: "volume", Attrs: map[string]any{"size": int64(8 << 20), "format": "qcow2"}})
	o := run(t, d["volume"], &vol, results)
	for _, id := range []string{o.Attrs["id"].(string), "kiln-vola-server-web.qcow2", "nonexistent"} {
		s := create(Action{Stack: "volb", Address: "server.thief", Kind: "server", Attrs: map[string]any{
			"image": sum, "memory": int64(128 << 20), "volumes": []any{id}},
			Deps: map[string]map[string]any{"image.guest": {"id": sum}}})
		_, err := d["server"].Create(ctx, s)
		wantErr(t, id, err, "server.thief", `attribute "volumes"`, "is not a volume of stack volb")
		deleteAll(t, d, s)
	}
	deleteAll(t, d, vol)
	assertNothingLeft(t, r, "vola")
	assertNothingLeft(t, r, "volb")
}

// TestRealPolicySources: the image kind's refusals of http sources name the
// resource, the attribute and the flag that allows them.
func TestRealPolicySources(t *testing.T) {
	ctx := context.Background()
	r, d, path, sum := openRealWithGuest(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { http.ServeFile(w, req, path) }))
	t.Cleanup(srv.Close)
	img := func(s string) Action {
		return create(Action{Stack: "polsrc", Address: "image.web", Kind: "image", Attrs: map[string]any{"source": srv.URL + "/guest.qcow2", "sha256": s}})
	}
	if err := r.SetPolicy(HostPolicy{}); err != nil {
		t.Fatal(err)
	}
	// Another stack may have it cached: make sure it is fetched.
	r.images.Delete(ctx, sum)
	_, err := d["image"].Create(ctx, img(sum))
	wantErr(t, "loopback source", err, "image.web", `attribute "source"`, "loopback", "-allow-local-sources")
	if err := r.SetPolicy(HostPolicy{AllowLocalSources: true}); err != nil {
		t.Fatal(err)
	}
	_, err = d["image"].Create(ctx, img(""))
	wantErr(t, "http without sha256", err, "image.web", `attribute "source"`, "needs a sha256", "-allow-insecure-http")
	if o, err := d["image"].Create(ctx, img(sum)); err != nil || o.Attrs["id"] != sum {
		t.Fatalf("allowed loopback source: %v, %v", o.Attrs, err)
	}
}
