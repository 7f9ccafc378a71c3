package agent

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/executors/kinds"
	"github.com/kiln-dev/kiln/executors/memdriver"
	"github.com/kiln-dev/kiln/planner"
)

// MemoryCallsFile is where a memory-driver agent writes its call counts
// (in its data directory) after every action, for tests that run the agent
// as a separate process.
const MemoryCallsFile = "memdriver-calls.json"

// MemoryObjectsFile holds the memory driver's objects, so that they outlive
// the process as a host's objects do (the embedded CLI starts a new agent
// for every command, and a plan reads what exists).
const MemoryObjectsFile = "memdriver-objects.json"

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
	// ObjectsFile, when set, is where the objects are kept (see
	// MemoryObjectsFile).
	ObjectsFile string

	mu     sync.Mutex
	stacks map[string]string // object id -> stack, for Orphans
}

// NewMemory returns a memory driver set that writes its counts under
// dataDir (when not "").
func NewMemory(dataDir string, delay time.Duration) *Memory {
	m := &Memory{D: memdriver.New(), Delay: delay}
	if dataDir != "" {
		m.CallsFile = filepath.Join(dataDir, MemoryCallsFile)
		m.ObjectsFile = filepath.Join(dataDir, MemoryObjectsFile)
		m.load()
	}
	return m
}

// Drivers returns every kind served by m.
func (m *Memory) Drivers() Drivers {
	d := Drivers{}
	for _, k := range kinds.Names() {
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
	if data, err := json.MarshalIndent(m.Calls(), "", "  "); err == nil {
		writeFileAtomic(m.CallsFile, data)
	}
	if m.ObjectsFile != "" {
		if data, err := m.saveObjects(); err == nil {
			writeFileAtomic(m.ObjectsFile, data)
		}
	}
}

func writeFileAtomic(path string, data []byte) {
	tmp := path + ".tmp"
	if os.WriteFile(tmp, data, 0o644) == nil {
		_ = os.Rename(tmp, path)
	}
}

// savedObject is one memdriver object on disk, its values in the tagged
// encoding so that numbers keep their types.
type savedObject struct {
	memdriver.Object
	Attrs    planner.Values `json:"Attrs"`
	Computed planner.Values `json:"Computed"`
	Stack    string         `json:"Stack,omitempty"`
}

type savedObjects struct {
	Objects []savedObject
	Current []memdriver.Current
}

// saveObjects encodes the driver's objects; m.mu is held.
func (m *Memory) saveObjects() ([]byte, error) {
	s := m.D.Save()
	out := savedObjects{Current: s.Current}
	for _, o := range s.Objects {
		out.Objects = append(out.Objects, savedObject{Object: o, Attrs: o.Attrs, Computed: o.Computed, Stack: m.stacks[o.ID]})
	}
	return json.MarshalIndent(out, "", "  ")
}

// load restores the objects a previous process saved; a missing or
// unreadable file leaves the driver empty.
func (m *Memory) load() {
	data, err := os.ReadFile(m.ObjectsFile)
	if err != nil {
		return
	}
	var in savedObjects
	if json.Unmarshal(data, &in) != nil {
		return
	}
	s := memdriver.Saved{Current: in.Current}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, so := range in.Objects {
		o := so.Object
		o.Attrs, o.Computed = so.Attrs, so.Computed
		s.Objects = append(s.Objects, o)
		if so.Stack != "" {
			if m.stacks == nil {
				m.stacks = map[string]string{}
			}
			m.stacks[o.ID] = so.Stack
		}
	}
	m.D.Load(s)
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

// memAddress is the address the memory driver keeps an action's object
// under. memdriver knows no stacks: in the default project it is the
// resource address (so tests count calls and inject faults by address);
// in any other project it is "<project>/<stack>/<address>" (the scope,
// see executors.Scope, and the address), so that stacks of one name in two
// projects never share an object.
func memAddress(a Action) string {
	if strings.Contains(a.Stack, "/") {
		return a.Stack + "/" + a.Address
	}
	return a.Address
}

func (k memKind) Create(ctx context.Context, a Action) (Object, error) {
	defer k.m.written()
	if err := k.m.delay(ctx); err != nil {
		return Object{}, err
	}
	o, err := k.m.D.Create(ctx, a.Kind, memAddress(a), a.Generation, a.Attrs)
	k.m.rememberStack(o.ID, a.Stack)
	return Object{PhysicalName: o.ID, Attrs: o.Values()}, err
}

func (k memKind) Update(ctx context.Context, a Action) (Object, error) {
	defer k.m.written()
	if err := k.m.delay(ctx); err != nil {
		return Object{}, err
	}
	o, err := k.m.D.Update(ctx, a.Kind, memAddress(a), a.Attrs)
	return Object{PhysicalName: o.ID, Attrs: o.Values()}, err
}

func (k memKind) Delete(ctx context.Context, a Action) error {
	defer k.m.written()
	if err := k.m.delay(ctx); err != nil {
		return err
	}
	return k.m.D.Delete(ctx, a.Kind, memAddress(a), a.ID)
}

func (k memKind) Read(ctx context.Context, a Action) (Object, bool, error) {
	defer k.m.written()
	var (
		o   memdriver.Object
		ok  bool
		err error
	)
	if a.Op == api.OpDelete && a.ID != "" {
		o, ok, err = k.m.D.ReadID(ctx, a.Kind, memAddress(a), a.ID)
	} else {
		o, ok, err = k.m.D.Read(ctx, a.Kind, memAddress(a))
		// A create of a new generation is not done until that generation
		// exists.
		if ok && a.Op == api.OpCreate && o.Generation != a.Generation {
			ok = false
		}
	}
	if err != nil || !ok {
		return Object{}, false, err
	}
	return Object{PhysicalName: o.ID, Attrs: o.Values()}, true, nil
}
