package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/daemon/scheduler"
)

// TestMemoryObjectsOutliveTheProcess: the memory driver's journal gives a
// new process (a new Memory on the same directory) the objects as the last
// one left them: created, replaced (two generations, the newest current),
// updated and deleted; a last line cut short by a kill is left out; loading
// compacts the journal to one line per address; the calls file counts this
// process's calls only.
func TestMemoryObjectsOutliveTheProcess(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	m := NewMemory(dir, 0)
	k := memKind{m}
	act := func(addr, gen string, attrs map[string]any) Action {
		return Action{Stack: "web", Kind: "volume", Address: addr, Generation: gen, Attrs: attrs}
	}
	if _, err := k.Create(ctx, act("volume.a", "", map[string]any{"size": "1MiB"})); err != nil {
		t.Fatal(err)
	}
	old, err := k.Create(ctx, act("volume.b", "", map[string]any{"size": "1MiB"}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Create(ctx, act("volume.b", "op2", map[string]any{"size": "2MiB"})); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Update(ctx, act("volume.a", "", map[string]any{"size": "3MiB"})); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Create(ctx, act("volume.c", "", map[string]any{"size": "1MiB"})); err != nil {
		t.Fatal(err)
	}
	if err := k.Delete(ctx, Action{Stack: "web", Kind: "volume", Address: "volume.c"}); err != nil {
		t.Fatal(err)
	}
	if calls, err := ReadMemoryCalls(dir); err != nil || len(calls) != 5 {
		t.Fatalf("calls: %v, %v; want 5 (address, op) counts", calls, err)
	}
	objects := filepath.Join(dir, MemoryObjectsFile)
	// A line cut short, as a killed process leaves it.
	appendFile(objects, []byte(`{"kind":"volume","address":"volume.a","objects":[`))

	m2 := NewMemory(dir, 0)
	got := map[string]string{}
	for _, o := range m2.D.Objects() {
		got[o.Address+"@"+o.Generation] = o.Attrs["size"].(string)
	}
	want := map[string]string{"volume.a@": "3MiB", "volume.b@": "1MiB", "volume.b@op2": "2MiB"}
	if len(got) != len(want) {
		t.Fatalf("objects after a restart: %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("object %s: size %q, want %q", k, got[k], v)
		}
	}
	o, ok, err := m2.D.Read(ctx, "volume", "volume.b")
	if err != nil || !ok || o.Generation != "op2" {
		t.Errorf("current volume.b after a restart: %+v %v %v, want generation op2", o, ok, err)
	}
	if err := (memKind{m2}).Delete(ctx, Action{Stack: "web", Kind: "volume", Address: "volume.b", ID: old.PhysicalName}); err != nil {
		t.Fatal(err)
	}
	if o, ok, _ := m2.D.Read(ctx, "volume", "volume.b"); !ok || o.Generation != "op2" {
		t.Errorf("deleting the old instance changed the current one: %+v %v", o, ok)
	}
	if m2.stackOf(o.ID) != "web" {
		t.Errorf("stack of volume.b after a restart: %q, want web", m2.stackOf(o.ID))
	}
	data, err := os.ReadFile(objects)
	if err != nil {
		t.Fatal(err)
	}
	// Compacted on load (volume.a, volume.b), then volume.b's delete.
	if n := strings.Count(string(data), "\n"); n != 3 {
		t.Errorf("journal has %d lines after a load and one delete, want 3:\n%s", n, data)
	}
	if calls, err := ReadMemoryCalls(dir); err != nil || len(calls) != 2 {
		t.Errorf("calls of the second process: %v, %v; want its read and delete only", calls, err)
	}
}

// TestAgentKindSlots: an agent runs at most scheduler.KindParallelism
// actions of a bounded kind at once, and a full kind does not hold up the
// others.
func TestAgentKindSlots(t *testing.T) {
	a, err := New(Config{DataDir: t.TempDir(), Servers: []string{"127.0.0.1:1"}, Drivers: NewMemory("", 0).Drivers()})
	if err != nil {
		t.Fatal(err)
	}
	bound := scheduler.KindParallelism["server"]
	live := context.Background()
	done, cancel := context.WithCancel(live)
	cancel()
	var releases []func()
	for range bound {
		rel, ok := a.acquire(live, "server")
		if !ok {
			t.Fatal("a server slot below the bound was refused")
		}
		releases = append(releases, rel)
	}
	if _, ok := a.acquire(done, "server"); ok {
		t.Fatalf("a server slot above the bound of %d was given", bound)
	}
	rel, ok := a.acquire(live, "volume")
	if !ok {
		t.Fatal("a volume waited for the servers' slots")
	}
	rel()
	releases[0]()
	rel, ok = a.acquire(live, "server")
	if !ok {
		t.Fatal("a released server slot was not given again")
	}
	rel()
}
