// Package memdriver is an in-memory stand-in for every executor kind (image,
// network, volume, server, port_forward). It exists for the orchestration
// tests of the engine, the agent loop and the daemon: it keeps objects in a
// map, is idempotent the way the real drivers are (a create of something that
// exists adopts it, a delete of something missing succeeds), counts every call
// so a test can assert that each action ran exactly once, and can be told to
// fail or to block on an address.
//
// It is compiled into the kiln binary but is never a default: only the
// test-only options `kiln agent -driver=memory`, `kiln server -agent
// -agent-driver=memory` and KILN_EMBEDDED_DRIVER=memory select it.
package memdriver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"sort"
	"sync"
)

// Kinds the driver knows, spelled as spec spells them. (memdriver does not
// import spec so that it builds on its own.)
const (
	kindImage       = "image"
	kindNetwork     = "network"
	kindVolume      = "volume"
	kindServer      = "server"
	kindPortForward = "port_forward"
)

// Operations counted by the driver.
const (
	OpCreate = "create"
	OpRead   = "read"
	OpUpdate = "update"
	OpDelete = "delete"
)

// ErrNotFound is returned by Update when there is nothing at the address.
var ErrNotFound = errors.New("not found")

// Object is one thing the driver holds.
type Object struct {
	ID      string
	Kind    string
	Address string
	// Generation tells apart the instances of one address made by a replace
	// (see Create).
	Generation string
	// Attrs are the configured attributes as last created or updated.
	Attrs map[string]any
	// Computed are the attributes the driver derived (id, bridge, gateway,
	// address, mac, ...), deterministic in kind, address and generation.
	Computed map[string]any
}

// Values returns the configured and computed attributes in one map.
func (o Object) Values() map[string]any {
	m := make(map[string]any, len(o.Attrs)+len(o.Computed))
	maps.Copy(m, o.Attrs)
	maps.Copy(m, o.Computed)
	return m
}

func (o Object) clone() Object {
	o.Attrs = maps.Clone(o.Attrs)
	o.Computed = maps.Clone(o.Computed)
	return o
}

// Call is one counted call.
type Call struct {
	Kind    string
	Address string
	Op      string
}

// When says whether a Block holds a call before or after its effect.
type When int

const (
	// BeforeEffect blocks before anything changes: a run killed there
	// leaves nothing behind.
	BeforeEffect When = iota
	// AfterEffect blocks after the object was changed but before the call
	// returns: a run killed there leaves the effect without a report.
	AfterEffect
)

// Gate holds calls on one address until it is released.
type Gate struct {
	when     When
	reached  chan struct{}
	released chan struct{}
	once     sync.Once
	relOnce  sync.Once
}

// Reached is closed when the first call arrives at the gate.
func (g *Gate) Reached() <-chan struct{} { return g.reached }

// Release lets every held and future call through.
func (g *Gate) Release() { g.relOnce.Do(func() { close(g.released) }) }

func (g *Gate) wait(ctx context.Context) error {
	g.once.Do(func() { close(g.reached) })
	select {
	case <-g.released:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type fault struct {
	address, op string
}

type addrKey struct{ kind, address string }

// Driver is the in-memory executor. The zero value is not usable; call New.
type Driver struct {
	mu      sync.Mutex
	objects map[string]*Object          // by ID
	current map[addrKey]string          // address -> ID of the newest instance
	byAddr  map[addrKey]map[string]bool // address -> IDs of its instances
	dirty   map[addrKey]bool            // addresses changed since TakeChanges
	calls   map[Call]int
	log     []Call
	fails   map[fault]error
	gates   map[fault]*Gate
}

// New returns an empty driver.
func New() *Driver {
	return &Driver{
		objects: map[string]*Object{},
		current: map[addrKey]string{},
		byAddr:  map[addrKey]map[string]bool{},
		dirty:   map[addrKey]bool{},
		calls:   map[Call]int{},
		fails:   map[fault]error{},
		gates:   map[fault]*Gate{},
	}
}

// FailOn makes every later call of op ("" for any) on address return err.
// A nil err removes the fault.
func (d *Driver) FailOn(address, op string, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := fault{address, op}
	if err == nil {
		delete(d.fails, k)
		return
	}
	d.fails[k] = err
}

// Block holds calls of op ("" for any) on address at the given point until
// the returned gate is released or the call's context ends.
func (d *Driver) Block(address, op string, when When) *Gate {
	d.mu.Lock()
	defer d.mu.Unlock()
	g := &Gate{when: when, reached: make(chan struct{}), released: make(chan struct{})}
	d.gates[fault{address, op}] = g
	return g
}

// Calls returns how many times op was called on (kind, address).
func (d *Driver) Calls(kind, address, op string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls[Call{kind, address, op}]
}

// Log returns every call in the order made.
func (d *Driver) Log() []Call {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Call(nil), d.log...)
}

// Objects returns every object held, sorted by kind, address and generation.
func (d *Driver) Objects() []Object {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Object, 0, len(d.objects))
	for _, o := range d.objects {
		out = append(out, o.clone())
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.Address != b.Address {
			return a.Address < b.Address
		}
		return a.Generation < b.Generation
	})
	return out
}

// enter counts a call and returns the gate that applies to it.
func (d *Driver) enter(kind, address, op string) *Gate {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := Call{kind, address, op}
	d.calls[c]++
	d.log = append(d.log, c)
	g := d.gates[fault{address, op}]
	if g == nil {
		g = d.gates[fault{address, ""}]
	}
	return g
}

// fault returns the error a call is told to fail with, looked up when the
// call gets past a BeforeEffect gate (so a test can decide while it is held).
func (d *Driver) fault(address, op string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.fails[fault{address, op}]; err != nil {
		return err
	}
	return d.fails[fault{address, ""}]
}

func (d *Driver) before(ctx context.Context, kind, address, op string) (*Gate, error) {
	if !known(kind) {
		return nil, fmt.Errorf("%s %s: unknown kind %q", op, address, kind)
	}
	g := d.enter(kind, address, op)
	if g != nil && g.when == BeforeEffect {
		if werr := g.wait(ctx); werr != nil {
			return nil, fmt.Errorf("%s %s: %w", op, address, werr)
		}
	}
	if err := d.fault(address, op); err != nil {
		return nil, fmt.Errorf("%s %s: %w", op, address, err)
	}
	if g != nil && g.when == AfterEffect {
		return g, nil
	}
	return nil, nil
}

func after(ctx context.Context, g *Gate, op, address string) error {
	if g == nil {
		return nil
	}
	if err := g.wait(ctx); err != nil {
		return fmt.Errorf("%s %s: %w", op, address, err)
	}
	return nil
}

// Create makes the object at address, or adopts it if an instance of the
// same generation exists already. generation tells apart the instances of
// one address that a replace makes ("" for the first); the ID and every
// computed attribute derive from kind, address and generation only.
func (d *Driver) Create(ctx context.Context, kind, address, generation string, attrs map[string]any) (Object, error) {
	g, err := d.before(ctx, kind, address, OpCreate)
	if err != nil {
		return Object{}, err
	}
	id := makeID(kind, address, generation)
	d.mu.Lock()
	o, ok := d.objects[id]
	if !ok {
		o = &Object{
			ID:         id,
			Kind:       kind,
			Address:    address,
			Generation: generation,
			Attrs:      maps.Clone(attrs),
			Computed:   compute(kind, id, attrs),
		}
		d.put(o)
	}
	d.current[addrKey{kind, address}] = id
	d.dirty[addrKey{kind, address}] = true
	out := o.clone()
	d.mu.Unlock()
	return out, after(ctx, g, OpCreate, address)
}

// Read returns the newest instance at address.
func (d *Driver) Read(ctx context.Context, kind, address string) (Object, bool, error) {
	if _, err := d.before(ctx, kind, address, OpRead); err != nil {
		return Object{}, false, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	o, ok := d.objects[d.current[addrKey{kind, address}]]
	if !ok {
		return Object{}, false, nil
	}
	return o.clone(), true, nil
}

// ReadID returns the object with the given ID, which may be an older
// instance of its address than the one Read returns.
func (d *Driver) ReadID(ctx context.Context, kind, address, id string) (Object, bool, error) {
	if _, err := d.before(ctx, kind, address, OpRead); err != nil {
		return Object{}, false, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	o, ok := d.objects[id]
	if !ok || o.Kind != kind {
		return Object{}, false, nil
	}
	return o.clone(), true, nil
}

// Update sets the configured attributes of the newest instance at address.
func (d *Driver) Update(ctx context.Context, kind, address string, attrs map[string]any) (Object, error) {
	g, err := d.before(ctx, kind, address, OpUpdate)
	if err != nil {
		return Object{}, err
	}
	d.mu.Lock()
	o, ok := d.objects[d.current[addrKey{kind, address}]]
	if !ok {
		d.mu.Unlock()
		return Object{}, fmt.Errorf("update %s: %w", address, ErrNotFound)
	}
	o.Attrs = maps.Clone(attrs)
	o.Computed = compute(kind, o.ID, attrs)
	d.dirty[addrKey{kind, address}] = true
	out := o.clone()
	d.mu.Unlock()
	return out, after(ctx, g, OpUpdate, address)
}

// Delete removes the object with the given ID, or the newest instance at
// address when id is "". Deleting what does not exist succeeds.
func (d *Driver) Delete(ctx context.Context, kind, address, id string) error {
	g, err := d.before(ctx, kind, address, OpDelete)
	if err != nil {
		return err
	}
	d.mu.Lock()
	k := addrKey{kind, address}
	if id == "" {
		id = d.current[k]
	}
	if o, ok := d.objects[id]; ok && o.Kind == kind {
		ak := addrKey{o.Kind, o.Address}
		delete(d.objects, id)
		delete(d.byAddr[ak], id)
		if len(d.byAddr[ak]) == 0 {
			delete(d.byAddr, ak)
		}
		d.dirty[ak] = true
		if d.current[ak] == id {
			delete(d.current, ak)
			// Fall back to another live instance of the address, if any.
			var newest *Object
			for oid := range d.byAddr[ak] {
				if o := d.objects[oid]; newest == nil || o.Generation > newest.Generation {
					newest = o
				}
			}
			if newest != nil {
				d.current[ak] = newest.ID
			}
		}
	}
	d.mu.Unlock()
	return after(ctx, g, OpDelete, address)
}

func known(kind string) bool {
	switch kind {
	case kindImage, kindNetwork, kindVolume, kindServer, kindPortForward:
		return true
	}
	return false
}

func hash(parts ...string) []byte {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return h.Sum(nil)
}

func makeID(kind, address, generation string) string {
	return "mem-" + kind + "-" + hex.EncodeToString(hash(kind, address, generation))[:12]
}

// compute derives the computed attributes of a kind, deterministically.
func compute(kind, id string, attrs map[string]any) map[string]any {
	c := map[string]any{"id": id}
	h := hash(id)
	switch kind {
	case kindImage:
		c["size"] = int64(1 << 30)
	case kindNetwork:
		c["bridge"] = "kb-" + hex.EncodeToString(h)[:8]
		if cidr, ok := attrs["cidr"].(string); ok {
			if p, err := netip.ParsePrefix(cidr); err == nil {
				c["gateway"] = p.Masked().Addr().Next().String()
			}
		}
	case kindServer:
		c["mac"] = fmt.Sprintf("52:54:00:%02x:%02x:%02x", h[0], h[1], h[2])
		addrs := map[string]any{}
		first := ""
		if nets, ok := attrs["networks"].([]any); ok {
			for _, n := range nets {
				m, _ := n.(map[string]any)
				name, _ := m["name"].(string)
				a, _ := m["address"].(string)
				if name == "" || a == "" {
					continue
				}
				addrs[name] = a
				if first == "" {
					first = a
				}
			}
		}
		c["addresses"] = addrs
		c["address"] = first
	}
	return c
}

// Saved is what Save returns and Load takes: every object and which
// instance is the newest at each address.
type Saved struct {
	Objects []Object
	Current []Current
}

// Current names the newest instance of one address.
type Current struct {
	Kind, Address, ID string
}

// Save returns a copy of every object the driver holds (call counts, faults
// and gates are not part of it).
func (d *Driver) Save() Saved {
	s := Saved{Objects: d.Objects()}
	d.mu.Lock()
	for k, id := range d.current {
		s.Current = append(s.Current, Current{Kind: k.kind, Address: k.address, ID: id})
	}
	d.mu.Unlock()
	sort.Slice(s.Current, func(i, j int) bool {
		if s.Current[i].Kind != s.Current[j].Kind {
			return s.Current[i].Kind < s.Current[j].Kind
		}
		return s.Current[i].Address < s.Current[j].Address
	})
	return s
}

// Load replaces the objects with saved ones, as if the driver had made them
// (a test driver that must outlive its process, like a host's objects do).
func (d *Driver) Load(s Saved) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.objects = map[string]*Object{}
	d.current = map[addrKey]string{}
	d.byAddr = map[addrKey]map[string]bool{}
	for _, o := range s.Objects {
		o := o.clone()
		d.put(&o)
	}
	for _, c := range s.Current {
		if _, ok := d.objects[c.ID]; ok {
			d.current[addrKey{c.Kind, c.Address}] = c.ID
		}
	}
}

// put adds an object; d.mu is held.
func (d *Driver) put(o *Object) {
	d.objects[o.ID] = o
	k := addrKey{o.Kind, o.Address}
	if d.byAddr[k] == nil {
		d.byAddr[k] = map[string]bool{}
	}
	d.byAddr[k][o.ID] = true
}

// LogSince returns the calls made after the first n, in the order made: a
// caller that keeps a log of its own takes only what is new.
func (d *Driver) LogSince(n int) []Call {
	d.mu.Lock()
	defer d.mu.Unlock()
	if n >= len(d.log) {
		return nil
	}
	return append([]Call(nil), d.log[n:]...)
}

// Change is the state of one address after calls changed it: its
// instances (none once deleted) and the newest one's ID ("" none).
type Change struct {
	Kind, Address, Current string
	Objects                []Object
}

// TakeChanges returns the state of every address changed since the last
// call, and forgets that they changed: a caller that keeps the objects on
// disk writes only what changed.
func (d *Driver) TakeChanges() []Change {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Change, 0, len(d.dirty))
	for k := range d.dirty {
		c := Change{Kind: k.kind, Address: k.address, Current: d.current[k]}
		for id := range d.byAddr[k] {
			c.Objects = append(c.Objects, d.objects[id].clone())
		}
		sort.Slice(c.Objects, func(i, j int) bool { return c.Objects[i].Generation < c.Objects[j].Generation })
		out = append(out, c)
	}
	clear(d.dirty)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].Address < out[j].Address
	})
	return out
}
