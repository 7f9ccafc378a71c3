package planner

import (
	"fmt"
	"maps"
	"sort"
	"strings"

	"github.com/kiln-dev/kiln/spec"
)

// Plan diffs the desired stack against the actual state. desired nil means
// destroy everything in actual; actual nil means nothing exists yet.
//
// Rules, in the order they are applied to each desired instance (walked in
// dependency order):
//
//   - After is the desired Attrs plus Computed. For an instance that exists,
//     computed attributes the state knows keep the state's value: computed
//     attributes never drive an action.
//   - Cascade: a configured attribute whose AttrRefs name a computed attribute
//     of a dependency that is created or replaced, and whose planned value is
//     unknown, becomes spec.Unknown.
//   - ignore_changes: the listed configured attributes (or all of them) keep
//     the state's value.
//   - A configured attribute that differs (an unknown value always differs)
//     makes an update; one that has ForceNew in spec.Schemas makes a replace.
//     A replaced instance's computed attributes are all unknown.
//
// Instances in actual but not in desired are deleted. prevent_destroy refuses
// the whole plan with a *PreventDestroyError.
func Plan(desired *spec.Stack, actual *State) (*Result, error) {
	res := &Result{}
	var actualRes []ResourceState
	if actual != nil {
		res.Stack = actual.Stack
		res.Serial = actual.Serial
		actualRes = actual.Resources
	}
	var desiredRes []*spec.Resource
	if desired != nil {
		res.Stack = desired.Name
		desiredRes = desired.Resources
		res.Outputs = copyOutputs(desired.Outputs)
	}

	act, err := indexState(actualRes)
	if err != nil {
		return nil, err
	}
	des, desAddrs, err := indexStack(desiredRes)
	if err != nil {
		return nil, err
	}
	order, err := topoSort(desAddrs, func(a string) []string { return des[a].DependsOn })
	if err != nil {
		return nil, err
	}

	// planned points into changes, so changes must never grow past its
	// capacity: it holds every desired instance and every delete.
	changes := make([]Change, 0, len(desAddrs)+len(actualRes))
	planned := make(map[string]*Change, len(desAddrs)+len(actualRes))
	var refused []string
	for _, addr := range order {
		c := planResource(des[addr], act[addr], planned)
		changes = append(changes, c)
		planned[addr] = &changes[len(changes)-1]
		if c.Action == Replace && des[addr].Lifecycle.PreventDestroy {
			refused = append(refused, addr)
		}
	}

	// Deletes: what exists but is no longer desired.
	var delAddrs []string
	for _, r := range actualRes {
		if _, ok := des[r.Address]; !ok {
			delAddrs = append(delAddrs, r.Address)
			if r.PreventDestroy {
				refused = append(refused, r.Address)
			}
		}
	}
	if len(refused) > 0 {
		sort.Strings(refused)
		return nil, &PreventDestroyError{Addresses: refused}
	}
	if len(delAddrs) > 0 {
		deletes, err := planDeletes(delAddrs, act, actualRes, planned)
		if err != nil {
			return nil, err
		}
		changes = append(changes, deletes...)
	}
	res.Changes = changes
	return res, nil
}

func copyOutputs(outputs map[string]spec.Output) map[string]spec.Output {
	if len(outputs) == 0 {
		return nil
	}
	return maps.Clone(outputs)
}

// indexState maps the state's instances by address; an address listed twice
// is an error.
func indexState(actualRes []ResourceState) (map[string]*ResourceState, error) {
	act := make(map[string]*ResourceState, len(actualRes))
	for i := range actualRes {
		r := &actualRes[i]
		if _, dup := act[r.Address]; dup {
			return nil, fmt.Errorf("plan: state lists %s twice", r.Address)
		}
		act[r.Address] = r
	}
	return act, nil
}

// indexStack maps the stack's instances by address and lists the addresses in
// stack order. An address listed twice, or a depends_on naming an instance
// that is not in the stack, is an error.
func indexStack(desiredRes []*spec.Resource) (map[string]*spec.Resource, []string, error) {
	des := make(map[string]*spec.Resource, len(desiredRes))
	desAddrs := make([]string, 0, len(desiredRes))
	for _, r := range desiredRes {
		if r == nil {
			continue
		}
		if _, dup := des[r.Address]; dup {
			return nil, nil, fmt.Errorf("plan: stack lists %s twice", r.Address)
		}
		des[r.Address] = r
		desAddrs = append(desAddrs, r.Address)
	}
	for _, addr := range desAddrs {
		for _, d := range des[addr].DependsOn {
			if _, ok := des[d]; !ok {
				return nil, nil, fmt.Errorf("plan: %s depends on %s, which is not in the stack", addr, d)
			}
		}
	}
	return des, desAddrs, nil
}

// planDeletes plans the delete of each instance in delAddrs, ordered so that
// an instance is deleted after the deleted instances that depended on it.
// planned holds the changes of the desired instances.
func planDeletes(delAddrs []string, act map[string]*ResourceState, actualRes []ResourceState, planned map[string]*Change) ([]Change, error) {
	waits, delWaits := deleteWaits(delAddrs, actualRes, planned)
	delOrder, err := topoSort(delAddrs, func(a string) []string { return delWaits[a] })
	if err != nil {
		return nil, err
	}
	deletes := make([]Change, 0, len(delOrder))
	for _, addr := range delOrder {
		r := act[addr]
		deletes = append(deletes, Change{
			Address:   addr,
			Kind:      r.Kind,
			Action:    Delete,
			Before:    merge(r.Attrs, r.Computed),
			DependsOn: sortedUnique(waits[addr]),
			Sensitive: copyBools(r.Sensitive),
		})
	}
	return deletes, nil
}

// deleteWaits works out what must happen before each instance in delAddrs is
// deleted. waits[d] lists the deletes of the instances that depended on d, and
// the updates and replaces of desired instances that depended on d when they
// were last applied; delWaits[d] holds only the deletes.
func deleteWaits(delAddrs []string, actualRes []ResourceState, planned map[string]*Change) (waits, delWaits map[string][]string) {
	deleted := make(map[string]bool, len(delAddrs))
	for _, a := range delAddrs {
		deleted[a] = true
	}
	waits = make(map[string][]string)
	delWaits = make(map[string][]string)
	for _, r := range actualRes {
		for _, d := range r.DependsOn {
			if !deleted[d] || d == r.Address {
				continue
			}
			if deleted[r.Address] {
				waits[d] = append(waits[d], r.Address)
				delWaits[d] = append(delWaits[d], r.Address)
			} else if c := planned[r.Address]; c != nil && (c.Action == Update || c.Action == Replace) {
				waits[d] = append(waits[d], r.Address)
			}
		}
	}
	return waits, delWaits
}

// planResource computes the change of one desired instance. planned holds the
// changes of every instance that comes before it in dependency order.
func planResource(r *spec.Resource, a *ResourceState, planned map[string]*Change) Change {
	c := Change{
		Address:   r.Address,
		Kind:      r.Kind,
		DependsOn: sortedUnique(r.DependsOn),
	}
	schema := spec.Schemas[r.Kind]

	// cfg is the configured attributes as they will be applied; the steps
	// below adjust this copy.
	cfg := merge(r.Attrs, nil)
	cascaded := cascadeUnknown(r, cfg, planned)

	if a == nil {
		c.Action = Create
		c.After = merge(cfg, r.Computed)
		c.Sensitive = copyBools(r.Sensitive)
		return c
	}

	keepIgnoredChanges(r.Lifecycle.IgnoreChanges, cfg, a.Attrs, cascaded)
	changed, forcing := compareConfig(schema, cfg, a.Attrs)
	comp := merge(r.Computed, a.Computed)

	c.Before = merge(a.Attrs, a.Computed)
	c.Sensitive = unionBools(r.Sensitive, a.Sensitive)
	switch {
	case !changed:
		c.Action = NoOp
	case len(forcing) > 0:
		c.Action = Replace
		c.CreateBeforeDestroy = r.Lifecycle.CreateBeforeDestroy
		sort.Strings(forcing)
		c.ReplaceAttrs = forcing
		c.ReplaceBecause = replaceReasons(forcing, cascaded)
		forgetComputed(comp, schema)
	default:
		c.Action = Update
	}
	c.After = merge(cfg, comp)
	if c.Action != NoOp {
		c.Changed = diffKeys(c.Before, c.After)
	}
	return c
}

// cascadeUnknown sets to spec.Unknown each configured attribute of r whose
// AttrRefs name an unknown computed attribute of a dependency that is created
// or replaced. It returns, for each attribute it changed, the references that
// made it unknown.
func cascadeUnknown(r *spec.Resource, cfg map[string]any, planned map[string]*Change) map[string][]string {
	var cascaded map[string][]string
	for attr, refs := range r.AttrRefs {
		if _, ok := cfg[attr]; !ok {
			continue
		}
		var unknown []string
		for _, ref := range refs {
			dep, depAttr := splitRef(ref)
			dc := planned[dep]
			if dc == nil || (dc.Action != Create && dc.Action != Replace) {
				continue
			}
			if v, ok := dc.After[depAttr]; ok && spec.IsUnknown(v) {
				unknown = append(unknown, ref)
			}
		}
		if len(unknown) == 0 || spec.IsUnknown(cfg[attr]) {
			continue
		}
		cfg[attr] = spec.Unknown{}
		if cascaded == nil {
			cascaded = make(map[string][]string)
		}
		cascaded[attr] = unknown
	}
	return cascaded
}

// keepIgnoredChanges applies ignore_changes: each listed attribute (every
// attribute for "all") keeps what was last applied, and no longer counts as
// cascaded.
func keepIgnoredChanges(ignore []string, cfg, applied map[string]any, cascaded map[string][]string) {
	for _, name := range ignore {
		names := []string{name}
		if name == "all" {
			names = names[:0]
			for k := range cfg {
				names = append(names, k)
			}
			for k := range applied {
				names = append(names, k)
			}
		}
		for _, n := range names {
			if v, ok := applied[n]; ok {
				cfg[n] = v
			} else {
				delete(cfg, n)
			}
			delete(cascaded, n)
		}
	}
}

// compareConfig compares the configured attributes with those last applied:
// changed is true if any differs, and forcing lists (unsorted) the differing
// ones that are ForceNew in schema.
func compareConfig(schema *spec.KindSchema, cfg, applied map[string]any) (changed bool, forcing []string) {
	for k, v := range cfg {
		if av, ok := applied[k]; !ok || !valueEqual(v, av) {
			changed = true
			if forcesNew(schema, k) {
				forcing = append(forcing, k)
			}
		}
	}
	for k := range applied {
		if _, ok := cfg[k]; !ok {
			changed = true
			if forcesNew(schema, k) {
				forcing = append(forcing, k)
			}
		}
	}
	return changed, forcing
}

// forcesNew reports whether a change of attr replaces the instance.
func forcesNew(schema *spec.KindSchema, attr string) bool {
	if schema == nil {
		return false
	}
	s := schema.Attr(attr)
	return s != nil && s.ForceNew
}

// replaceReasons lists why an instance is replaced: each forcing attribute,
// or for one that cascaded, the references that made it unknown.
func replaceReasons(forcing []string, cascaded map[string][]string) []string {
	var because []string
	for _, f := range forcing {
		if refs, ok := cascaded[f]; ok {
			because = append(because, refs...)
		} else {
			because = append(because, f)
		}
	}
	return sortedUnique(because)
}

// forgetComputed makes every computed attribute of a replaced instance
// unknown: the ones it had and every one its schema declares.
func forgetComputed(comp map[string]any, schema *spec.KindSchema) {
	for k := range comp {
		comp[k] = spec.Unknown{}
	}
	if schema != nil {
		for _, s := range schema.Attrs {
			if s.Computed {
				comp[s.Name] = spec.Unknown{}
			}
		}
	}
}

// PreventDestroyError refuses a plan that would delete or replace instances
// whose lifecycle sets prevent_destroy.
type PreventDestroyError struct {
	// Addresses of every refused instance, sorted.
	Addresses []string
}

func (e *PreventDestroyError) Error() string {
	return fmt.Sprintf("plan would destroy %s, which %s prevent_destroy set; remove it from the lifecycle block first",
		strings.Join(e.Addresses, ", "), plural(len(e.Addresses), "has", "have"))
}

// CycleError reports a dependency cycle. spec rejects cycles with a diagnostic;
// the planner checks again so that a bad state can never yield a plan.
type CycleError struct {
	// Addresses of the instances on or between cycles, sorted.
	Addresses []string
}

func (e *CycleError) Error() string {
	return "plan: dependency cycle between " + strings.Join(e.Addresses, ", ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// topoSort orders nodes (each of deps(n) that is itself a node comes first),
// breaking ties by the smallest address: the lexicographically smallest
// topological order, so the result depends only on the graph.
func topoSort(nodes []string, deps func(string) []string) ([]string, error) {
	index := make(map[string]int, len(nodes))
	for i, n := range nodes {
		index[n] = i
	}
	indeg := make([]int, len(nodes))
	dependents := make([][]int, len(nodes))
	for i, n := range nodes {
		seen := map[int]bool(nil)
		for _, d := range deps(n) {
			j, ok := index[d]
			if !ok || j == i {
				if j == i && ok {
					return nil, &CycleError{Addresses: []string{n}}
				}
				continue
			}
			if seen == nil {
				seen = make(map[int]bool)
			}
			if seen[j] {
				continue
			}
			seen[j] = true
			indeg[i]++
			dependents[j] = append(dependents[j], i)
		}
	}
	h := &addrHeap{nodes: nodes}
	for i := range nodes {
		if indeg[i] == 0 {
			h.push(i)
		}
	}
	out := make([]string, 0, len(nodes))
	for h.len() > 0 {
		i := h.pop()
		out = append(out, nodes[i])
		for _, j := range dependents[i] {
			indeg[j]--
			if indeg[j] == 0 {
				h.push(j)
			}
		}
	}
	if len(out) == len(nodes) {
		return out, nil
	}
	// Peel off what merely hangs below a cycle: repeatedly drop remaining
	// nodes that no remaining node depends on.
	remaining := make(map[int]bool)
	for i := range nodes {
		if indeg[i] > 0 {
			remaining[i] = true
		}
	}
	for changed := true; changed; {
		changed = false
		needed := make(map[int]bool)
		for i := range remaining {
			for _, d := range deps(nodes[i]) {
				if j, ok := index[d]; ok && remaining[j] {
					needed[j] = true
				}
			}
		}
		for i := range remaining {
			if !needed[i] {
				delete(remaining, i)
				changed = true
			}
		}
	}
	var addrs []string
	for i := range remaining {
		addrs = append(addrs, nodes[i])
	}
	sort.Strings(addrs)
	return nil, &CycleError{Addresses: addrs}
}

// addrHeap is a min-heap of node indexes ordered by address.
type addrHeap struct {
	nodes []string
	items []int
}

func (h *addrHeap) len() int { return len(h.items) }

func (h *addrHeap) less(a, b int) bool { return h.nodes[h.items[a]] < h.nodes[h.items[b]] }

func (h *addrHeap) push(i int) {
	h.items = append(h.items, i)
	for k := len(h.items) - 1; k > 0; {
		p := (k - 1) / 2
		if !h.less(k, p) {
			break
		}
		h.items[k], h.items[p] = h.items[p], h.items[k]
		k = p
	}
}

func (h *addrHeap) pop() int {
	top := h.items[0]
	last := len(h.items) - 1
	h.items[0] = h.items[last]
	h.items = h.items[:last]
	for k := 0; ; {
		l, r, m := 2*k+1, 2*k+2, k
		if l < last && h.less(l, m) {
			m = l
		}
		if r < last && h.less(r, m) {
			m = r
		}
		if m == k {
			break
		}
		h.items[k], h.items[m] = h.items[m], h.items[k]
		k = m
	}
	return top
}

// splitRef splits "server.web[0].address" into the address and the attribute.
// Attribute names hold no dot, so the last dot separates them even when a
// for_each key does.
func splitRef(ref string) (addr, attr string) {
	i := strings.LastIndexByte(ref, '.')
	if i < 0 {
		return ref, ""
	}
	return ref[:i], ref[i+1:]
}

func merge(a, b map[string]any) map[string]any {
	m := make(map[string]any, len(a)+len(b))
	maps.Copy(m, a)
	maps.Copy(m, b)
	return m
}

func copyBools(m map[string]bool) map[string]bool {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]bool, len(m))
	for k, v := range m {
		if v {
			out[k] = true
		}
	}
	return out
}

func unionBools(a, b map[string]bool) map[string]bool {
	if len(a) == 0 {
		return copyBools(b)
	}
	out := copyBools(a)
	for k, v := range b {
		if v {
			if out == nil {
				out = make(map[string]bool)
			}
			out[k] = true
		}
	}
	return out
}

func sortedUnique(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	out := append([]string(nil), s...)
	sort.Strings(out)
	j := 1
	for i := 1; i < len(out); i++ {
		if out[i] != out[j-1] {
			out[j] = out[i]
			j++
		}
	}
	return out[:j]
}

// diffKeys lists the keys whose value differs between before and after, sorted.
func diffKeys(before, after map[string]any) []string {
	var out []string
	for _, k := range unionKeys(before, after) {
		bv, inBefore := before[k]
		av, inAfter := after[k]
		if !inBefore || !inAfter || !valueEqual(bv, av) {
			out = append(out, k)
		}
	}
	return out
}

// valueEqual compares attribute values. Numbers compare by value whatever their
// Go type; an unknown value equals nothing, not even another unknown.
func valueEqual(a, b any) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case spec.Unknown:
		return false
	case string:
		y, ok := b.(string)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case int, int64, float64:
		switch b.(type) {
		case int, int64, float64:
			return numEqual(a, b)
		}
		return false
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !valueEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !valueEqual(v, w) {
				return false
			}
		}
		return true
	}
	return false
}

func numEqual(a, b any) bool {
	ai, aInt := asInt(a)
	bi, bInt := asInt(b)
	if aInt && bInt {
		return ai == bi
	}
	return asFloat(a) == asFloat(b)
}

func asInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int:
		return int64(x), true
	case int64:
		return x, true
	}
	return 0, false
}

func asFloat(v any) float64 {
	switch x := v.(type) {
	case int:
		return float64(x)
	case int64:
		return float64(x)
	case float64:
		return x
	}
	return 0
}
