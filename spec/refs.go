package spec

import (
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// checkRefs resolves every reference of every node statically: the thing
// referred to must be declared, attributes must exist, instance keys must be
// used exactly on counted resources. It builds the dependency edges.
func (l *loader) checkRefs() {
	for _, key := range sortedKeys(l.nodes) {
		n := l.nodes[key]
		deps := map[*node]bool{}
		n.fixedDeps = map[string]bool{}
		n.dynamicBlocks = map[*node]bool{}
		n.allBlocks = map[*node]bool{}
		for _, e := range n.exprs {
			for _, tr := range e.Variables() {
				if !l.checkRef(n, tr, e, deps, false) {
					l.badExprs[e] = true
				}
			}
		}
		for _, tr := range n.extraRefs {
			l.checkRef(n, tr, nil, deps, true)
		}
		if n.res != nil {
			for _, nb := range n.res.nets {
				t := l.nodes[KindNetwork+"."+nb.name]
				switch {
				case t == nil:
					l.errorf(rangePtr(nb.rng), "Reference to undeclared network", "This server attaches to network %q, but no network of that name is declared.", nb.name)
				case t.res.count != nil || t.res.forEach != nil:
					l.errorf(rangePtr(nb.rng), "Invalid network block", "A server attaches to a single network; network %q sets count or for_each.", nb.name)
				default:
					deps[t] = true
					n.fixedDeps[t.key] = true
				}
			}
		}
		for d := range deps {
			n.deps = append(n.deps, d)
		}
		sort.Slice(n.deps, func(i, j int) bool { return n.deps[i].key < n.deps[j].key })
	}
}

var refRoots = "param., local., image., network., volume., server., port_forward., count. or each."

// checkRef checks one reference made by node n. explicit is true for
// depends_on entries, which always make a dependency on whole instances.
func (l *loader) checkRef(n *node, tr hcl.Traversal, e hcl.Expression, deps map[*node]bool, explicit bool) bool {
	rng := tr.SourceRange()
	switch tr.RootName() {
	case "param":
		return l.checkRefToParam(tr, rng)
	case "local":
		return l.checkRefToLocal(tr, rng, deps)
	case "count":
		return l.checkRefToCount(n, tr, rng)
	case "each":
		return l.checkRefToEach(n, tr, rng)
	}
	return l.checkRefToResource(n, tr, rng, e, deps, explicit)
}

// refAttr returns the name of step i of tr if that step is an attribute.
func refAttr(tr hcl.Traversal, i int) (string, bool) {
	if len(tr) <= i {
		return "", false
	}
	a, ok := tr[i].(hcl.TraverseAttr)
	return a.Name, ok
}

// checkRefToParam checks param.NAME.
func (l *loader) checkRefToParam(tr hcl.Traversal, rng hcl.Range) bool {
	name, ok := refAttr(tr, 1)
	if !ok {
		l.errorf(&rng, "Invalid reference", "Refer to a param by name, such as param.web_count.")
		return false
	}
	if l.paramIdx[name] == nil {
		l.errorf(&rng, "Reference to undeclared param", "No param named %q is declared.", name)
		return false
	}
	return true
}

// checkRefToLocal checks local.NAME, which makes a dependency on the local.
func (l *loader) checkRefToLocal(tr hcl.Traversal, rng hcl.Range, deps map[*node]bool) bool {
	name, ok := refAttr(tr, 1)
	if !ok {
		l.errorf(&rng, "Invalid reference", "Refer to a local value by name, such as local.prefix.")
		return false
	}
	t := l.nodes["local."+name]
	if t == nil {
		l.errorf(&rng, "Reference to undeclared local value", "No local value named %q is declared in a locals block.", name)
		return false
	}
	deps[t] = true
	return true
}

// checkRefToCount checks count.index, which only a counted resource has.
func (l *loader) checkRefToCount(n *node, tr hcl.Traversal, rng hcl.Range) bool {
	if n.res == nil || n.res.count == nil {
		l.errorf(&rng, "Reference to count outside a counted resource", "count.index is available only in a resource that sets count.")
		return false
	}
	if name, ok := refAttr(tr, 1); !ok || name != "index" {
		l.errorf(&rng, "Invalid count reference", "The only attribute of count is count.index.")
		return false
	}
	return true
}

// checkRefToEach checks each.key and each.value, which only a for_each
// resource has.
func (l *loader) checkRefToEach(n *node, tr hcl.Traversal, rng hcl.Range) bool {
	if n.res == nil || n.res.forEach == nil {
		l.errorf(&rng, "Reference to each outside a for_each resource", "each.key and each.value are available only in a resource that sets for_each.")
		return false
	}
	if name, ok := refAttr(tr, 1); !ok || (name != "key" && name != "value") {
		l.errorf(&rng, "Invalid each reference", "The attributes of each are each.key and each.value.")
		return false
	}
	return true
}

// checkRefToResource checks KIND.NAME, KIND.NAME.ATTR and, for a counted or
// for_each resource, KIND.NAME[KEY].ATTR, and records the dependency.
func (l *loader) checkRefToResource(n *node, tr hcl.Traversal, rng hcl.Range, e hcl.Expression, deps map[*node]bool, explicit bool) bool {
	t, ks := l.refTarget(tr, rng)
	if t == nil {
		return false
	}
	key, rest, ok := l.refInstanceKey(t, tr[2:], rng)
	if !ok {
		return false
	}
	if len(rest) > 0 {
		if a, ok := rest[0].(hcl.TraverseAttr); ok && ks.Attr(a.Name) == nil {
			var names []string
			for _, as := range ks.Attrs {
				names = append(names, as.Name)
			}
			l.errorf(&rng, "Unsupported attribute", "A %s has no attribute %q; it has %s.", tr.RootName(), a.Name, strings.Join(names, ", "))
			return false
		}
	}
	deps[t] = true
	if t == n {
		// a resource referring to itself is a cycle of one, reported by order()
		return true
	}
	multi := t.res.count != nil || t.res.forEach != nil
	switch {
	case !multi:
		n.fixedDeps[t.key] = true
	case key != cty.NilVal:
		n.keyRefs = append(n.keyRefs, keyRef{target: t, key: key, rng: rng, expr: e})
	case explicit:
		n.allBlocks[t] = true // depends_on a whole block: every instance
	default:
		n.dynamicBlocks[t] = true
	}
	return true
}

// refTarget resolves the KIND.NAME a reference starts with to the declared
// resource and its kind's schema; it reports an error and returns nil if there
// is none.
func (l *loader) refTarget(tr hcl.Traversal, rng hcl.Range) (*node, *KindSchema) {
	root := tr.RootName()
	ks, isKind := Schemas[root]
	if !isKind {
		l.errorf(&rng, "Reference to undeclared name", "%q is not something a template can refer to; references start with %s", root, refRoots)
		return nil, nil
	}
	name, ok := refAttr(tr, 1)
	if !ok {
		l.errorf(&rng, "Invalid reference", "Refer to a resource by kind and name, such as %s.NAME.", root)
		return nil, nil
	}
	t := l.nodes[root+"."+name]
	if t == nil {
		l.errorf(&rng, "Reference to undeclared resource", "No %s named %q is declared.", root, name)
		return nil, nil
	}
	return t, ks
}

// refInstanceKey takes the instance key off rest, the steps of a reference
// after KIND.NAME: a counted or for_each resource is referred to by instance
// (or as a whole, with no further step), any other resource never is. key is
// cty.NilVal when the reference names no instance.
func (l *loader) refInstanceKey(t *node, rest hcl.Traversal, rng hcl.Range) (key cty.Value, after hcl.Traversal, ok bool) {
	if len(rest) == 0 {
		return cty.NilVal, rest, true
	}
	if t.res.count == nil && t.res.forEach == nil {
		if _, ok := rest[0].(hcl.TraverseIndex); ok {
			l.errorf(&rng, "Unexpected resource instance key", "%s sets neither count nor for_each, so it has no instances to index; write %s.ATTRIBUTE.", t.key, t.key)
			return cty.NilVal, nil, false
		}
		return cty.NilVal, rest, true
	}
	switch s := rest[0].(type) {
	case hcl.TraverseIndex:
		return s.Key, rest[1:], true
	case hcl.TraverseAttr:
		ex := "[0]"
		if t.res.forEach != nil {
			ex = `["KEY"]`
		}
		l.errorf(&rng, "Missing resource instance key", "%s sets count or for_each, so refer to one of its instances, such as %s%s.%s, or to all of them with %s[*].%s.", t.key, t.key, ex, s.Name, t.key, s.Name)
		return cty.NilVal, nil, false
	}
	return cty.NilVal, rest, true
}

// order returns the nodes in an order in which every node comes after those
// it depends on, and reports every dependency cycle (Tarjan's algorithm).
func (l *loader) order() []*node {
	var (
		out   []*node
		stack []*node
		index int
	)
	var visit func(n *node)
	visit = func(n *node) {
		n.visited = true
		n.index, n.low = index, index
		index++
		stack = append(stack, n)
		n.onStack = true
		for _, d := range n.deps {
			if !d.visited {
				visit(d)
				n.low = min(n.low, d.low)
			} else if d.onStack {
				n.low = min(n.low, d.index)
			}
		}
		if n.low != n.index {
			return
		}
		var scc []*node
		for {
			m := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			m.onStack = false
			scc = append(scc, m)
			if m == n {
				break
			}
		}
		if len(scc) > 1 || hasSelfEdge(n) {
			l.reportCycle(scc)
			for _, m := range scc {
				m.value = cty.DynamicVal.Mark(errMark{})
				m.evaluated = true
			}
		}
		out = append(out, scc...)
	}
	for _, key := range sortedKeys(l.nodes) {
		if n := l.nodes[key]; !n.visited {
			visit(n)
		}
	}
	return out
}

func hasSelfEdge(n *node) bool {
	for _, d := range n.deps {
		if d == n {
			return true
		}
	}
	return false
}

func (l *loader) reportCycle(scc []*node) {
	in := map[*node]bool{}
	start := scc[0]
	for _, m := range scc {
		in[m] = true
		if m.key < start.key {
			start = m
		}
	}
	// depth-first search inside the component for a path back to start
	var path []*node
	seen := map[*node]bool{}
	var dfs func(m *node) bool
	dfs = func(m *node) bool {
		path = append(path, m)
		seen[m] = true
		for _, d := range m.deps {
			if d == start {
				return true
			}
			if in[d] && !seen[d] && dfs(d) {
				return true
			}
		}
		path = path[:len(path)-1]
		return false
	}
	dfs(start)
	var names []string
	onPath := map[*node]bool{}
	for _, m := range path {
		names = append(names, m.key)
		onPath[m] = true
	}
	detail := strings.Join(append(names, start.key), " -> ")
	var others []string
	for _, m := range scc {
		if !onPath[m] {
			others = append(others, m.key)
		}
	}
	if len(others) > 0 {
		sort.Strings(others)
		detail += "; also in the cycle: " + strings.Join(others, ", ")
	}
	l.errorf(&start.decl, "Dependency cycle", "These blocks depend on each other in a cycle: %s.", detail)
}
