package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/daemon/api"
	"github.com/kiln-dev/kiln/daemon/engine"
	"github.com/kiln-dev/kiln/executors/server"
	"github.com/kiln-dev/kiln/internal/testguest"
	"github.com/kiln-dev/kiln/internal/testwait"
)

// hostAsk runs a host work item through the agent's own path (the wire
// encoding of its parameters and answer included) and returns the decoded
// answer; a failed item fails the test.
func hostAsk(t *testing.T, a *Agent, op string, params map[string]any) map[string]any {
	t.Helper()
	enc, err := api.EncodeValues(params)
	if err != nil {
		t.Fatal(err)
	}
	rep := a.runHost(context.Background(), api.WorkItem{Kind: HostKind, Op: op, Attrs: enc, WorkID: "h-test"})
	if !rep.OK {
		t.Fatalf("host %s %v: %s", op, params, rep.Error)
	}
	out, err := api.DecodeValues(rep.Attrs)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRealHostOps: the host operations on the real drivers. An image is
// cached and listed; prune keeps it while in use and removes it when not;
// gc lists the domain and volumes of a stack nobody owns and -force removes
// them; console returns the guest's boot log with its ready line.
func TestRealHostOps(t *testing.T) {
	ctx := context.Background()
	r := openRealForTest(t)
	d := r.Drivers()
	a := &Agent{id: "host-test", cfg: Config{Drivers: d}, log: slog.New(slog.DiscardHandler)}
	path, sum := testGuest(t)
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
	extraImg := create(engine.Action{Stack: stack, Address: "image.extra", Kind: "image", Attrs: map[string]any{"source": extra, "sha256": extraSum}})
	if _, err := d["image"].Create(pctx, extraImg); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(msgs) == 0 || !strings.HasPrefix(msgs[len(msgs)-1], "image.extra: fetched 3.0 MiB in ") {
		t.Errorf("progress of the fetch = %q, want it to end with the size and duration", msgs)
	}
	mu.Unlock()

	results := map[string]map[string]any{}
	img := create(engine.Action{Stack: stack, Address: "image.guest", Kind: "image", Attrs: map[string]any{"source": path, "sha256": sum}})
	run(t, d["image"], &img, results)

	// images: both, with format and size.
	listed := map[string]map[string]any{}
	for _, v := range hostAsk(t, a, HostImages, map[string]any{})["images"].([]any) {
		m := v.(map[string]any)
		listed[m["sha256"].(string)] = m
	}
	if m := listed[sum]; m == nil || m["format"] != "qcow2" || m["size"].(int64) <= 0 {
		t.Errorf("test guest in the list: %v", m)
	}
	if m := listed[extraSum]; m == nil || m["format"] != "raw" || m["size"].(int64) != int64(len(data)) {
		t.Errorf("extra image in the list: %v", m)
	}

	// prune: both in use, nothing goes; the extra one unused, it goes.
	inUse := []any{sum, extraSum}
	if removed := hostAsk(t, a, HostPrune, map[string]any{"in_use": inUse})["removed"].([]any); len(removed) != 0 {
		t.Fatalf("prune with both in use removed %v", removed)
	}
	removed := hostAsk(t, a, HostPrune, map[string]any{"in_use": []any{sum}})["removed"].([]any)
	if len(removed) != 1 || removed[0].(map[string]any)["sha256"] != extraSum {
		t.Fatalf("prune removed %v, want only %s", removed, extraSum)
	}
	if _, err := os.Stat(filepath.Join(r.images.Dir(), extraSum+".raw")); !os.IsNotExist(err) {
		t.Errorf("pruned image file still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(r.images.Dir(), sum+".qcow2")); err != nil {
		t.Errorf("image in use was removed: %v", err)
	}

	// A server of the stack.
	lan := create(engine.Action{Stack: stack, Address: "network.lan", Kind: "network", Attrs: map[string]any{"cidr": "10.79.0.0/24"}})
	run(t, d["network"], &lan, results)
	srv := create(engine.Action{Stack: stack, Address: "server.web", Kind: "server", Attrs: map[string]any{
		"image": sum, "cpus": int64(1), "memory": int64(128 << 20),
		"networks": []any{map[string]any{"name": "lan", "address": "10.79.0.10"}},
	}})
	run(t, d["server"], &srv, results)
	domain := server.Name(stack, "server.web")

	// console: the boot log, until the guest says it is ready.
	var text string
	ready := testwait.Until(150*time.Second, 2*time.Second, func() bool {
		c := hostAsk(t, a, HostConsole, map[string]any{"stack": stack, "name": domain, "offset": int64(-1)})
		text, _ = c["text"].(string)
		i := strings.Index(text, testguest.ReadyMarker)
		if i < 0 {
			return false
		}
		line, _, _ := strings.Cut(text[i:], "\n")
		t.Logf("console of %s (%d bytes) says %q", domain, len(text), strings.TrimSpace(line))
		size := c["size"].(int64)
		if c["next"] != size || int64(len(text)) != min(size, ConsoleMax) {
			t.Errorf("console answer: %d bytes, next %v, size %d", len(text), c["next"], size)
		}
		// From the end: nothing new yet.
		c = hostAsk(t, a, HostConsole, map[string]any{"stack": stack, "name": domain, "offset": size})
		if c["text"] != "" || c["next"] != size {
			t.Errorf("console from its end = %v", c)
		}
		return true
	})
	if !ready {
		t.Fatalf("no %s in the console of %s after 150s:\n%s", testguest.ReadyMarker, domain, text)
	}
	rep := a.runHost(ctx, api.WorkItem{Kind: HostKind, Op: HostConsole, WorkID: "h-bad",
		Attrs: mustEncode(t, map[string]any{"stack": "other", "name": domain})})
	if rep.OK || !strings.Contains(rep.Error, "belongs to stack hostops") {
		t.Errorf("console of another stack's domain: %+v", rep)
	}

	// gc: owned, or with an operation in progress, nothing of the stack is
	// listed; unowned, its domain and volumes are; -force removes them.
	addrs := []any{"image.guest", "network.lan", "server.web"}
	ofStack := func(v any) []api.Orphan {
		var out []api.Orphan
		for _, e := range v.([]any) {
			m := e.(map[string]any)
			if strings.HasPrefix(m["owner"].(string), "kiln:"+stack+"/") {
				out = append(out, api.Orphan{Kind: m["kind"].(string), Name: m["name"].(string), Owner: m["owner"].(string)})
			}
		}
		return out
	}
	if l := ofStack(hostAsk(t, a, HostGC, map[string]any{"owned": map[string]any{stack: addrs}})["orphans"]); len(l) != 0 {
		t.Errorf("gc with the stack owned lists %+v", l)
	}
	if l := ofStack(hostAsk(t, a, HostGC, map[string]any{"owned": map[string]any{}, "busy": []any{stack}})["orphans"]); len(l) != 0 {
		t.Errorf("gc with the stack busy lists %+v", l)
	}
	out := hostAsk(t, a, HostGC, map[string]any{"owned": map[string]any{}})
	kinds := map[string]int{}
	for _, o := range ofStack(out["orphans"]) {
		kinds[o.Kind]++
	}
	if out["removed"] != false || kinds[OrphanDomain] != 1 || kinds[OrphanVolume] != 2 || kinds[OrphanBridge] != 1 {
		t.Fatalf("gc of the unowned stack: removed %v, kinds %v, want 1 domain, 2 volumes (overlay, seed), 1 bridge", out["removed"], kinds)
	}
	// Only this stack's objects go: any other stack's leftovers on the
	// shared libvirtd are left alone (busy).
	others := []any{}
	for _, e := range out["orphans"].([]any) {
		if s, _, ok := strings.Cut(strings.TrimPrefix(e.(map[string]any)["owner"].(string), "kiln:"), "/"); ok && s != stack {
			others = append(others, s)
		}
	}
	out = hostAsk(t, a, HostGC, map[string]any{"owned": map[string]any{}, "busy": others, "force": true})
	if out["removed"] != true {
		t.Errorf("gc -force: removed %v", out["removed"])
	}
	if l := ofStack(hostAsk(t, a, HostGC, map[string]any{"owned": map[string]any{}})["orphans"]); len(l) != 0 {
		t.Errorf("gc after -force still lists %+v", l)
	}
	assertNothingLeft(t, r, stack)
}

func mustEncode(t *testing.T, m map[string]any) map[string]any {
	t.Helper()
	enc, err := api.EncodeValues(m)
	if err != nil {
		t.Fatal(err)
	}
	return enc
}
