package agent

import (
	"bytes"
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

// MemoryCallsFile is where a memory-driver agent appends its calls (in its
// data directory), one JSON line per call as it is made, for tests that run
// the agent as a separate process (ReadMemoryCalls counts them). A new
// process starts it again.
const MemoryCallsFile = "memdriver-calls.jsonl"

// MemoryObjectsFile holds the memory driver's objects, so that they outlive
// the process as a host's objects do (the embedded CLI starts a new agent
// for every command, and a plan reads what exists). It is a journal: after
// every call, one JSON line per address the call changed, with that
// address's instances as they are now; a later line for an address replaces
// the earlier ones. A process compacts it when it loads it.
const MemoryObjectsFile = "memdriver-objects.jsonl"

// MemoryCall is what ReadMemoryCalls returns: how many times one op was
// called on one address.
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
	// CallsFile, when set, is where the calls are appended (see
	// MemoryCallsFile).
	CallsFile string
	// ObjectsFile, when set, is where the objects are kept (see
	// MemoryObjectsFile).
	ObjectsFile string

	mu     sync.Mutex
	stacks map[string]string // object id -> stack, for Orphans
	logged int               // calls of D's log already in CallsFile
}

// NewMemory returns a memory driver set that writes its counts under
// dataDir (when not "").
func NewMemory(dataDir string, delay time.Duration) *Memory {
	m := &Memory{D: memdriver.New(), Delay: delay}
	if dataDir != "" {
		m.CallsFile = filepath.Join(dataDir, MemoryCallsFile)
		m.ObjectsFile = filepath.Join(dataDir, MemoryObjectsFile)
		_ = os.Remove(m.CallsFile)
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
func (m *Memory) Calls() []MemoryCall { return countCalls(m.D.Log()) }

// countCalls counts calls by kind, address and op, sorted by address and op.
func countCalls(calls []memdriver.Call) []MemoryCall {
	counts := map[memdriver.Call]int{}
	for _, c := range calls {
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

// ReadMemoryCalls counts the calls a memory-driver agent wrote in dataDir,
// sorted by address and op. A last line cut short (the agent was killed
// while it wrote it) is left out.
func ReadMemoryCalls(dataDir string) ([]MemoryCall, error) {
	data, err := os.ReadFile(filepath.Join(dataDir, MemoryCallsFile))
	if err != nil {
		return nil, err
	}
	var calls []memdriver.Call
	for _, line := range bytes.Split(data, []byte("\n")) {
		var c MemoryCall
		if len(line) == 0 || json.Unmarshal(line, &c) != nil {
			continue
		}
		calls = append(calls, memdriver.Call{Kind: c.Kind, Address: c.Address, Op: c.Op})
	}
	return countCalls(calls), nil
}

// written appends to the files what the calls since the last time did: the
// calls, and the state of each address they changed. Appending keeps the
// cost of a call the same however many objects there are.
func (m *Memory) written() {
	if m.CallsFile == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	calls := m.D.LogSince(m.logged)
	m.logged += len(calls)
	for _, c := range calls {
		_ = enc.Encode(MemoryCall{Kind: c.Kind, Address: c.Address, Op: c.Op})
	}
	appendFile(m.CallsFile, buf.Bytes())
	if m.ObjectsFile == "" {
		return
	}
	buf.Reset()
	for _, c := range m.D.TakeChanges() {
		_ = enc.Encode(m.savedChange(c))
	}
	appendFile(m.ObjectsFile, buf.Bytes())
}

// appendFile appends data to path in one write (so that a killed process
// leaves at most its last line cut short).
func appendFile(path string, data []byte) {
	if len(data) == 0 {
		return
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	_, _ = f.Write(data)
	_ = f.Close()
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

// savedChange is one line of MemoryObjectsFile: an address's instances as
// they are after a call changed them.
type savedChange struct {
	Kind    string        `json:"kind"`
	Address string        `json:"address"`
	Current string        `json:"current,omitempty"`
	Objects []savedObject `json:"objects,omitempty"`
}

// savedChange encodes a change with each object's stack; m.mu is held.
func (m *Memory) savedChange(c memdriver.Change) savedChange {
	out := savedChange{Kind: c.Kind, Address: c.Address, Current: c.Current}
	for _, o := range c.Objects {
		out.Objects = append(out.Objects, savedObject{Object: o, Attrs: o.Attrs, Computed: o.Computed, Stack: m.stacks[o.ID]})
	}
	return out
}

// load restores the objects a previous process saved (the last line of
// each address wins; a line cut short is left out), then compacts the file
// to one line per address that has instances.
func (m *Memory) load() {
	data, err := os.ReadFile(m.ObjectsFile)
	if err != nil {
		return
	}
	type key struct{ kind, address string }
	last := map[key]savedChange{}
	for _, line := range bytes.Split(data, []byte("\n")) {
		var c savedChange
		if len(line) == 0 || json.Unmarshal(line, &c) != nil {
			continue
		}
		last[key{c.Kind, c.Address}] = c
	}
	var s memdriver.Saved
	var compact bytes.Buffer
	enc := json.NewEncoder(&compact)
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range last {
		if len(c.Objects) == 0 {
			continue
		}
		_ = enc.Encode(c)
		if c.Current != "" {
			s.Current = append(s.Current, memdriver.Current{Kind: c.Kind, Address: c.Address, ID: c.Current})
		}
		for _, so := range c.Objects {
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
	}
	m.D.Load(s)
	writeFileAtomic(m.ObjectsFile, compact.Bytes())
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
