package agent

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/daemon/engine"
	"github.com/kiln-dev/kiln/executors/memdriver"
)

// MemoryCallsFile is where a memory-driver agent writes its call counts
// (in its data directory) after every action, for tests that run the agent
// as a separate process.
const MemoryCallsFile = "memdriver-calls.json"

// MemoryCall is one line of MemoryCallsFile.
type MemoryCall struct {
	Kind    string `json:"kind"`
	Address string `json:"address"`
	Op      string `json:"op"`
	Count   int    `json:"count"`
}

// Memory is the in-memory driver set, for tests only: every kind is served
// by one memdriver.Driver. It is never a default; `kiln agent -driver=memory`
// and KILN_EMBEDDED_DRIVER=memory select it explicitly.
type Memory struct {
	D *memdriver.Driver
	// Delay, when set, makes every create, update and delete wait this long
	// before its effect, so a test can kill a server in the middle of an
	// apply.
	Delay time.Duration
	// CallsFile, when set, is rewritten with the call counts after every
	// call.
	CallsFile string

	mu     sync.Mutex
	stacks map[string]string // object id -> stack, for Orphans
}

// NewMemory returns a memory driver set that writes its counts under
// dataDir (when not "").
func NewMemory(dataDir string, delay time.Duration) *Memory {
	m := &Memory{D: memdriver.New(), Delay: delay}
	if dataDir != "" {
		m.CallsFile = filepath.Join(dataDir, MemoryCallsFile)
	}
	return m
}

// Drivers returns every kind served by m.
func (m *Memory) Drivers() Drivers {
	d := Drivers{}
	for _, k := range []string{"image", "network", "volume", "server", "port_forward"} {
		d[k] = memKind{m}
	}
	return d
}

// Calls returns the counts of every call made, sorted.
func (m *Memory) Calls() []MemoryCall {
	counts := map[memdriver.Call]int{}
	for _, c := range m.D.Log() {
		counts[c]++
	}
	out := make([]MemoryCall, 0, len(counts))
	for c, n := range counts {
		out = append(out, MemoryCall{Kind: c.Kind, Address: c.Address, Op: c.Op, Count: n})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Address != b.Address {
			return a.Address < b.Address
		}
		return a.Op < b.Op
	})
	return out
}

// ReadMemoryCalls reads the counts a memory-driver agent wrote in dataDir.
func ReadMemoryCalls(dataDir string) ([]MemoryCall, error) {
	data, err := os.ReadFile(filepath.Join(dataDir, MemoryCallsFile))
	if err != nil {
		return nil, err
	}
	var out []MemoryCall
	return out, json.Unmarshal(data, &out)
}

func (m *Memory) written() {
	if m.CallsFile == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	data, err := json.MarshalIndent(m.Calls(), "", "  ")
	if err != nil {
		return
	}
	tmp := m.CallsFile + ".tmp"
	if os.WriteFile(tmp, data, 0o644) == nil {
		_ = os.Rename(tmp, m.CallsFile)
	}
}

func (m *Memory) delay(ctx context.Context) error {
	if m.Delay <= 0 {
		return nil
	}
	t := time.NewTimer(m.Delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type memKind struct{ m *Memory }

func (k memKind) Create(ctx context.Context, a engine.Action) (Object, error) {
	defer k.m.written()
	if err := k.m.delay(ctx); err != nil {
		return Object{}, err
	}
	o, err := k.m.D.Create(ctx, a.Kind, a.Address, a.Generation, a.Attrs)
	k.m.rememberStack(o.ID, a.Stack)
	return Object{PhysicalName: o.ID, Attrs: o.Values()}, err
}

func (k memKind) Update(ctx context.Context, a engine.Action) (Object, error) {
	defer k.m.written()
	if err := k.m.delay(ctx); err != nil {
		return Object{}, err
	}
	o, err := k.m.D.Update(ctx, a.Kind, a.Address, a.Attrs)
	return Object{PhysicalName: o.ID, Attrs: o.Values()}, err
}

func (k memKind) Delete(ctx context.Context, a engine.Action) error {
	defer k.m.written()
	if err := k.m.delay(ctx); err != nil {
		return err
	}
	return k.m.D.Delete(ctx, a.Kind, a.Address, a.ID)
}

func (k memKind) Read(ctx context.Context, a engine.Action) (Object, bool, error) {
	defer k.m.written()
	var (
		o   memdriver.Object
		ok  bool
		err error
	)
	if a.Op == engine.OpDelete && a.ID != "" {
		o, ok, err = k.m.D.ReadID(ctx, a.Kind, a.Address, a.ID)
	} else {
		o, ok, err = k.m.D.Read(ctx, a.Kind, a.Address)
		// A create of a new generation is not done until that generation
		// exists.
		if ok && a.Op == engine.OpCreate && o.Generation != a.Generation {
			ok = false
		}
	}
	if err != nil || !ok {
		return Object{}, false, err
	}
	return Object{PhysicalName: o.ID, Attrs: o.Values()}, true, nil
}
