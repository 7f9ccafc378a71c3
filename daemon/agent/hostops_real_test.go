package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/executors/server"
	"github.com/kiln-dev/kiln/internal/testguest"
	"github.com/kiln-dev/kiln/internal/testwait"
)

// hostAsk runs a host request through the agent's own path (the wire
// encoding of the request and the answer included) and returns the
// decoded answer; a failed request fails the test.
func hostAsk(t *testing.T, a *Agent, req api.HostRequest) api.HostAnswer {
	t.Helper()
	req.WorkID = "h-test"
	rep := a.runHost(context.Background(), wire(t, req))
	if !rep.OK {
		t.Fatalf("host %s %+v: %s", req.Op, req, rep.Error)
	}
	return wire(t, rep)
}

// wire returns v after a trip through its JSON encoding.
func wire[T any](t *testing.T, v T) T {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out T
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return out
}

func imagesReq() api.HostRequest {
	return api.HostRequest{Op: api.HostImages, Images: &api.ImagesRequest{}}
}

func pruneReq(inUse ...string) api.HostRequest {
	return api.HostRequest{Op: api.HostPrune, Prune: &api.PruneRequest{InUse: inUse}}
}

func gcReq(owned map[string][]string, busy []string, force bool) api.HostRequest {
	return api.HostRequest{Op: api.HostGC, GC: &api.GCRequest{Owned: owned, Busy: busy, Force: force}}
}

func consoleReq(project, stack, name string, offset int64) api.HostRequest {
	return api.HostRequest{Op: api.HostConsole, Console: &api.ConsoleRequest{Project: project, Stack: stack, Name: name, Offset: offset}}
}

// TestRealHostOps: the host operations on the real drivers. An image is
// cached and listed; prune keeps it while in use and removes it when not;
// gc lists the domain and volumes of a stack nobody owns and -force removes
// them; console returns the guest's boot log with its ready line.
func TestRealHostOps(t *testing.T) {
	ctx := context.Background()
	r, d, path, sum := openRealWithGuest(t)
	a := &Agent{id: "host-test", cfg: Config{Drivers: d}, log: slog.New(slog.DiscardHandler)}
	const stack = "hostops"

	// A second image, raw, made here: the one prune will remove. Its fetch
	// reports progress.
	extra := filepath.Join(t.TempDir(), "extra.img")
	data := make([]byte, 3<<20)
	copy(data, "kiln host ops test "+time.Now().String())
	if err := os.WriteFile(extra, data, 0o644); err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(data)
	extraSum := hex.EncodeToString(h[:])
	var (
		mu   sync.Mutex
		msgs []string
	)
	pctx := context.WithValue(ctx, progressKey{}, func(m string) { mu.Lock(); msgs = append(msgs, m); mu.Unlock() })
	extraImg := create(Action{Stack: stack, Address: "image.extra", Kind: "image", Attrs: map[string]any{"source": extra, "sha256": extraSum}})
	if _, err := d["image"].Create(pctx, extraImg); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(msgs) == 0 || !strings.HasPrefix(msgs[len(msgs)-1], "image.extra: fetched 3.0 MiB in ") {
		t.Errorf("progress of the fetch = %q, want it to end with the size and duration", msgs)
	}
	mu.Unlock()

	results := map[string]map[string]any{}
	img := create(Action{Stack: stack, Address: "image.guest", Kind: "image", Attrs: map[string]any{"source": path, "sha256": sum}})
	run(t, d["image"], &img, results)

	// images: both, with format and size.
	listed := map[string]api.ImageInfo{}
	for _, m := range hostAsk(t, a, imagesReq()).Images.Images {
		listed[m.SHA256] = m
	}
	if m, ok := listed[sum]; !ok || m.Format != "qcow2" || m.Size <= 0 {
		t.Errorf("test guest in the list: %+v", m)
	}
	if m, ok := listed[extraSum]; !ok || m.Format != "raw" || m.Size != int64(len(data)) {
		t.Errorf("extra image in the list: %+v", m)
	}

	// prune: both in use, nothing goes; the extra one unused, it goes.
	if removed := hostAsk(t, a, pruneReq(sum, extraSum)).Prune.Removed; len(removed) != 0 {
		t.Fatalf("prune with both in use removed %v", removed)
	}
	removed := hostAsk(t, a, pruneReq(sum)).Prune.Removed
	if len(removed) != 1 || removed[0].SHA256 != extraSum {
		t.Fatalf("prune removed %v, want only %s", removed, extraSum)
	}
	if _, err := os.Stat(filepath.Join(r.images.Dir(), extraSum+".raw")); !os.IsNotExist(err) {
		t.Errorf("pruned image file still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(r.images.Dir(), sum+".qcow2")); err != nil {
		t.Errorf("image in use was removed: %v", err)
	}

	// A server of the stack.
	lan := create(Action{Stack: stack, Address: "network.lan", Kind: "network", Attrs: map[string]any{"cidr": "10.79.0.0/24"}})
	run(t, d["network"], &lan, results)
	srv := create(Action{Stack: stack, Address: "server.web", Kind: "server", Attrs: map[string]any{
		"image": sum, "cpus": int64(1), "memory": int64(128 << 20),
		"networks": []any{map[string]any{"name": "lan", "address": "10.79.0.10"}},
	}})
	run(t, d["server"], &srv, results)
	domain := server.Name(stack, "server.web")

	// console: the boot log, until the guest says it is ready.
	var text string
	ready := testwait.Until(150*time.Second, 2*time.Second, func() bool {
		c := hostAsk(t, a, consoleReq("", stack, domain, -1)).Console
		text = c.Text
		i := strings.Index(text, testguest.ReadyMarker)
		if i < 0 {
			return false
		}
		line, _, _ := strings.Cut(text[i:], "\n")
		t.Logf("console of %s (%d bytes) says %q", domain, len(text), strings.TrimSpace(line))
		size := c.Size
		if c.Next != size || int64(len(text)) != min(size, api.ConsoleMax) {
			t.Errorf("console answer: %d bytes, next %v, size %d", len(text), c.Next, size)
		}
		// From the end: nothing new yet.
		c = hostAsk(t, a, consoleReq("", stack, domain, size)).Console
		if c.Text != "" || c.Next != size {
			t.Errorf("console from its end = %+v", c)
		}
		return true
	})
	if !ready {
		t.Fatalf("no %s in the console of %s after 150s:\n%s", testguest.ReadyMarker, domain, text)
	}
	rep := a.runHost(ctx, consoleReq("", "other", domain, -1))
	if rep.OK || !strings.Contains(rep.Error, "belongs to stack hostops") {
		t.Errorf("console of another stack's domain: %+v", rep)
	}

	// gc: owned, or with an operation in progress, nothing of the stack is
	// listed; unowned, its domain and volumes are; -force removes them.
	addrs := []string{"image.guest", "network.lan", "server.web"}
	ofStack := func(l []api.Orphan) []api.Orphan {
		var out []api.Orphan
		for _, o := range l {
			if strings.HasPrefix(o.Owner, "kiln:"+stack+"/") {
				out = append(out, o)
			}
		}
		return out
	}
	if l := ofStack(hostAsk(t, a, gcReq(map[string][]string{stack: addrs}, nil, false)).GC.Orphans); len(l) != 0 {
		t.Errorf("gc with the stack owned lists %+v", l)
	}
	if l := ofStack(hostAsk(t, a, gcReq(map[string][]string{}, []string{stack}, false)).GC.Orphans); len(l) != 0 {
		t.Errorf("gc with the stack busy lists %+v", l)
	}
	out := hostAsk(t, a, gcReq(map[string][]string{}, nil, false)).GC
	kinds := map[string]int{}
	for _, o := range ofStack(out.Orphans) {
		kinds[o.Kind]++
	}
	if out.Removed || kinds[OrphanDomain] != 1 || kinds[OrphanVolume] != 2 || kinds[OrphanBridge] != 1 {
		t.Fatalf("gc of the unowned stack: removed %v, kinds %v, want 1 domain, 2 volumes (overlay, seed), 1 bridge", out.Removed, kinds)
	}
	// Only this stack's objects go: any other stack's leftovers on the
	// shared libvirtd are left alone (busy).
	others := []string{}
	for _, o := range out.Orphans {
		if s, _, ok := strings.Cut(strings.TrimPrefix(o.Owner, "kiln:"), "/"); ok && s != stack {
			others = append(others, s)
		}
	}
	out = hostAsk(t, a, gcReq(map[string][]string{}, others, true)).GC
	if !out.Removed {
		t.Errorf("gc -force: removed %v", out.Removed)
	}
	if l := ofStack(hostAsk(t, a, gcReq(map[string][]string{}, nil, false)).GC.Orphans); len(l) != 0 {
		t.Errorf("gc after -force still lists %+v", l)
	}
	assertNothingLeft(t, r, stack)
}
