package spec

import (
	"math/big"
	"net/netip"
	"sort"
	"strconv"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// Marks carried by values during evaluation.
type (
	// errMark marks a value that is unknown because of an error already
	// reported; it silences follow-on errors.
	errMark struct{}
	// depMark marks every attribute of a resource instance: a value carrying
	// it was derived from that instance.
	depMark struct{ block, addr string }
	// refMark marks a computed attribute of a resource instance.
	refMark struct{ block, addr, attr string }
)

// maxCount bounds count: a template that asks for more instances is a typo.
const maxCount = 10000

var netObjType = cty.Object(map[string]cty.Type{"name": cty.String, "address": cty.String})

func schemaType(t string) cty.Type {
	switch t {
	case "string":
		return cty.String
	case "number", "size":
		return cty.Number
	case "bool":
		return cty.Bool
	case "list(string)":
		return cty.List(cty.String)
	case "map(string)":
		return cty.Map(cty.String)
	case "list(object)":
		return cty.List(netObjType)
	}
	return cty.DynamicPseudoType
}

func hasErrMark(m cty.ValueMarks) bool { return m.Has(errMark{}) }

// eval evaluates an expression; on error the value is unknown and marked so
// that nothing downstream reports a second error.
func (l *loader) eval(e hcl.Expression, ctx *hcl.EvalContext) cty.Value {
	if l.badExprs[e] {
		return cty.DynamicVal.Mark(errMark{})
	}
	v, diags := e.Value(ctx)
	l.diags = append(l.diags, diags...)
	if diags.HasErrors() {
		return cty.DynamicVal.Mark(errMark{})
	}
	return v
}

func (l *loader) nodeContext(n *node) *hcl.EvalContext {
	vars := map[string]cty.Value{"param": l.paramObj}
	groups := map[string]map[string]cty.Value{}
	for _, d := range n.deps {
		g := groups[d.kind]
		if g == nil {
			g = map[string]cty.Value{}
			groups[d.kind] = g
		}
		g[d.name] = d.value
	}
	for kind, g := range groups {
		vars[kind] = cty.ObjectVal(g)
	}
	return &hcl.EvalContext{Variables: l.budget.track(vars), Functions: l.funcs}
}

func (l *loader) evalNode(n *node) {
	if n.evaluated {
		return
	}
	n.evaluated = true
	l.budgetAt = n.decl
	ctx := l.nodeContext(n)
	l.checkKeyRefs(n)
	switch n.kind {
	case nodeLocal:
		n.value = l.eval(n.local.Expr, ctx)
	case nodeOutput:
		l.evalOutput(n, ctx)
	default:
		l.evalResource(n, ctx)
	}
}

// checkKeyRefs checks references with a constant instance key
// (server.web[3]) against the instances the referenced block has.
func (l *loader) checkKeyRefs(n *node) {
	for _, kr := range n.keyRefs {
		t := kr.target
		if t.instKeys == nil { // the referenced block failed
			continue
		}
		addr, ok := "", false
		switch t.mode {
		case modeCount:
			if kr.key.Type() == cty.Number && kr.key.IsKnown() && !kr.key.IsNull() {
				if f := kr.key.AsBigFloat(); f.IsInt() {
					i, _ := f.Int64()
					addr = t.key + "[" + strconv.FormatInt(i, 10) + "]"
					ok = i >= 0 && i < int64(t.count)
				}
			}
			if !ok {
				l.errorf(&kr.rng, "Reference to undeclared resource instance", "%s has %d instances (count = %d), so %s[%s] does not exist.", t.key, t.count, t.count, t.key, keyString(kr.key))
			}
		case modeForEach:
			if kr.key.Type() == cty.String && kr.key.IsKnown() && !kr.key.IsNull() {
				addr = t.key + "[" + quote(kr.key.AsString()) + "]"
				ok = t.instKeys[kr.key.AsString()]
			}
			if !ok {
				l.errorf(&kr.rng, "Reference to undeclared resource instance", "%s has no instance with key %s; its for_each keys are %s.", t.key, keyString(kr.key), keyList(t.instKeys))
			}
		}
		if ok {
			n.fixedDeps[addr] = true
		} else if kr.expr != nil {
			l.badExprs[kr.expr] = true
		}
	}
}

func keyList(m map[string]bool) string {
	keys := sortedKeys(m)
	if len(keys) == 0 {
		return "none"
	}
	if len(keys) > 5 {
		keys = append(keys[:5], "...")
	}
	out := ""
	for i, k := range keys {
		if i > 0 {
			out += ", "
		}
		if k == "..." {
			out += k
		} else {
			out += quote(k)
		}
	}
	return out
}

func (l *loader) evalOutput(n *node, ctx *hcl.EvalContext) {
	if l.outputs == nil {
		l.outputs = map[string]Output{}
	}
	o := Output{Name: n.name, Description: n.out.description, Sensitive: n.out.sensitive}
	if n.out.value != nil {
		v := l.eval(n.out.value.Expr, ctx)
		n.value = v
		uv, marks := unmarkDeep(v)
		if marks.Has(sensitiveMark{}) {
			o.Sensitive = true
		}
		o.Value = toGo(uv)
	}
	l.outputs[n.name] = o
}

// instance is one instance to evaluate: its key and the count/each variables.
type instance struct {
	key  any
	addr string
	vars map[string]cty.Value
}

// expand works out the instances of a resource node from its count or
// for_each, or the one instance of a resource that sets neither; it also sets
// n.mode. On an error (already reported) ok is false.
func (l *loader) expand(n *node, ctx *hcl.EvalContext) (insts []instance, marks cty.ValueMarks, ok bool) {
	switch {
	case n.res.count != nil:
		return l.expandCount(n, ctx)
	case n.res.forEach != nil:
		return l.expandForEach(n, ctx)
	}
	n.mode = modeSingle
	return []instance{{addr: n.key}}, nil, true
}

// expandCount makes instances 0 to count-1, each with count.index.
func (l *loader) expandCount(n *node, ctx *hcl.EvalContext) ([]instance, cty.ValueMarks, bool) {
	n.mode = modeCount
	expr := n.res.count.Expr
	v, marks := unmarkDeep(l.eval(expr, ctx))
	if hasErrMark(marks) {
		return nil, nil, false
	}
	c, ok := l.countValue(v, rangePtr(expr.Range()))
	if !ok {
		return nil, nil, false
	}
	n.count = c
	out := make([]instance, c)
	for i := range out {
		addr := n.key + "[" + strconv.Itoa(i) + "]"
		out[i] = instance{key: i, addr: addr, vars: map[string]cty.Value{
			"count": cty.ObjectVal(map[string]cty.Value{"index": cty.NumberIntVal(int64(i))}),
		}}
	}
	return out, marks, true
}

// countValue checks that the value of count is a known whole number from 0 to
// maxCount, and reports at subj why it is not.
func (l *loader) countValue(v cty.Value, subj *hcl.Range) (int, bool) {
	if !v.IsKnown() {
		l.errorf(subj, "Invalid count argument", "The count value depends on attributes that are known only after apply; count must be known when planning.")
		return 0, false
	}
	if v.IsNull() {
		l.errorf(subj, "Invalid count argument", "count must be a whole number, not null.")
		return 0, false
	}
	if l.longNumberValue(v, cty.Number, subj) {
		return 0, false
	}
	cv, err := convert.Convert(v, cty.Number)
	if err != nil {
		l.errorf(subj, "Invalid count argument", "count must be a whole number: %s.", err)
		return 0, false
	}
	f := cv.AsBigFloat()
	if !f.IsInt() {
		l.errorf(subj, "Invalid count argument", "count must be a whole number, not %s.", numText(f))
		return 0, false
	}
	if f.Sign() < 0 {
		l.errorf(subj, "Invalid count argument", "count must not be negative (it is %s).", numText(f))
		return 0, false
	}
	c, acc := f.Int64()
	if acc != big.Exact || c > maxCount {
		l.errorf(subj, "Invalid count argument", "count %s is too large; the limit is %d instances per resource.", numText(f), maxCount)
		return 0, false
	}
	return int(c), true
}

// forEachItem is one key of a for_each value and the value each.value takes.
type forEachItem struct {
	key   string
	value cty.Value
}

// expandForEach makes one instance per for_each key, in key order, each with
// each.key and each.value. A key that is not valid is reported and skipped.
func (l *loader) expandForEach(n *node, ctx *hcl.EvalContext) ([]instance, cty.ValueMarks, bool) {
	n.mode = modeForEach
	expr := n.res.forEach.Expr
	raw := l.eval(expr, ctx)
	v, marks := unmarkDeep(raw)
	if hasErrMark(marks) {
		return nil, nil, false
	}
	subj := rangePtr(expr.Range())
	items, ok := l.forEachItems(raw, v, subj)
	if !ok {
		return nil, nil, false
	}
	out := make([]instance, 0, len(items))
	n.instKeys = map[string]bool{}
	for _, it := range items {
		if !forEachKeyRe.MatchString(it.key) {
			l.errorf(subj, "Invalid for_each key", "The key %q is not valid: keys become part of names on the host, so use letters, digits, '_', '-' and '.', starting with a letter or digit.", it.key)
			continue
		}
		n.instKeys[it.key] = true
		out = append(out, instance{key: it.key, addr: n.key + "[" + quote(it.key) + "]", vars: map[string]cty.Value{
			"each": cty.ObjectVal(map[string]cty.Value{"key": cty.StringVal(it.key), "value": it.value}),
		}})
	}
	return out, marks, true
}

// forEachItems lists the keys and values of a for_each value, sorted by key:
// a map or object, or a set of strings whose values are the keys. raw is the
// value as evaluated, v the same without marks. It reports at subj why the
// value is neither.
func (l *loader) forEachItems(raw, v cty.Value, subj *hcl.Range) ([]forEachItem, bool) {
	ty := v.Type()
	if !v.IsKnown() || (ty.IsSetType() && !v.IsWhollyKnown()) {
		l.errorf(subj, "Invalid for_each argument", "The for_each value depends on attributes that are known only after apply; its keys must be known when planning.")
		return nil, false
	}
	if v.IsNull() {
		l.errorf(subj, "Invalid for_each argument", "for_each must be a map or a set of strings, not null.")
		return nil, false
	}
	var items []forEachItem
	switch {
	case ty.IsMapType() || ty.IsObjectType():
		// keep the values' own marks (a sensitive value stays sensitive)
		rv, _ := raw.Unmark()
		for it := rv.ElementIterator(); it.Next(); {
			k, e := it.Element()
			items = append(items, forEachItem{k.AsString(), e})
		}
	case ty.IsSetType() && ty.ElementType() == cty.String:
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			if e.IsNull() {
				l.errorf(subj, "Invalid for_each argument", "A for_each set must not hold null.")
				return nil, false
			}
			items = append(items, forEachItem{e.AsString(), e})
		}
	default:
		hint := ""
		if ty.IsListType() || ty.IsTupleType() {
			hint = " Convert a list with toset(...)."
		}
		l.errorf(subj, "Invalid for_each argument", "for_each must be a map or a set of strings, not %s.%s", ty.FriendlyName(), hint)
		return nil, false
	}
	sort.Slice(items, func(i, j int) bool { return items[i].key < items[j].key })
	return items, true
}

func (l *loader) evalResource(n *node, ctx *hcl.EvalContext) {
	insts, metaMarks, ok := l.expand(n, ctx)
	if !ok {
		n.value = cty.DynamicVal.Mark(errMark{})
		return
	}
	if n.instKeys == nil {
		n.instKeys = map[string]bool{}
		if n.mode == modeCount {
			for i := 0; i < n.count; i++ {
				n.instKeys[strconv.Itoa(i)] = true
			}
		}
	}
	if l.budget.charge(int64(len(insts)), 0, sprintf("%s has %d instances", n.key, len(insts))) != nil {
		n.value = cty.DynamicVal.Mark(errMark{})
		return
	}
	objs := make([]cty.Value, 0, len(insts))
	for _, in := range insts {
		if l.budget.spent() {
			n.value = cty.DynamicVal.Mark(errMark{})
			return
		}
		ictx := ctx
		if in.vars != nil {
			ictx = ctx.NewChild()
			ictx.Variables = in.vars
		}
		obj := l.evalInstance(n, in, ictx, metaMarks)
		objs = append(objs, obj)
		n.instAddrs = append(n.instAddrs, in.addr)
	}
	switch n.mode {
	case modeSingle:
		n.value = objs[0]
	case modeCount:
		if len(objs) == 0 {
			n.value = cty.EmptyTupleVal
		} else {
			n.value = cty.TupleVal(objs)
		}
	case modeForEach:
		m := make(map[string]cty.Value, len(objs))
		for i, in := range insts {
			m[in.key.(string)] = objs[i]
		}
		n.value = cty.ObjectVal(m)
	}
}

// instState collects what one instance's values were derived from.
type instState struct {
	res    *Resource
	deps   map[string]bool
	blocks map[string]bool
	refs   map[string]map[string]bool
}

func (s *instState) collect(attr string, marks cty.ValueMarks) {
	for m := range marks {
		switch t := m.(type) {
		case depMark:
			s.deps[t.addr] = true
			s.blocks[t.block] = true
		case refMark:
			s.deps[t.addr] = true
			s.blocks[t.block] = true
			if attr != "" {
				if s.refs[attr] == nil {
					s.refs[attr] = map[string]bool{}
				}
				s.refs[attr][t.addr+"."+t.attr] = true
			}
		case sensitiveMark:
			if attr != "" {
				s.res.Sensitive[attr] = true
			}
		}
	}
}

// evalInstance evaluates one instance of a resource node: it appends the
// instance's Resource to l.instances and returns the object that references
// to the instance see.
func (l *loader) evalInstance(n *node, in instance, ctx *hcl.EvalContext, metaMarks cty.ValueMarks) cty.Value {
	r := n.res
	ks := Schemas[n.kind]
	res := &Resource{
		Address: in.addr, Kind: n.kind, Name: n.name, Key: in.key,
		Attrs: map[string]any{}, Sensitive: map[string]bool{}, Computed: map[string]any{},
		AttrRefs: map[string][]string{}, Lifecycle: r.lifecycle, DeclRange: r.block.DefRange,
	}
	st := &instState{res: res, deps: map[string]bool{}, blocks: map[string]bool{}, refs: map[string]map[string]bool{}}
	for d := range n.fixedDeps {
		st.deps[d] = true
	}
	st.collect("", metaMarks)
	dep := depMark{block: n.key, addr: in.addr}
	obj := make(map[string]cty.Value, len(ks.Attrs))
	vals := map[string]cty.Value{} // known, converted values of set attributes
	for _, as := range ks.Attrs {
		if as.Computed || nestedBlockAttr(n.kind, as.Name) {
			continue
		}
		v, marks := l.evalAttr(n, in.addr, &as, ctx)
		if !v.IsNull() {
			res.Attrs[as.Name] = toGo(v)
			vals[as.Name] = v
		}
		st.collect(as.Name, marks)
		obj[as.Name] = withMarks(v, marks, dep)
	}
	if n.kind == KindServer {
		obj["networks"] = l.evalServerNets(n, in, ctx, st, res, dep)
		obj["ready"] = l.evalServerReady(n, ctx, st, res, dep)
	}
	if n.kind == KindPortForward {
		l.checkPort(in.addr, r, vals)
	}
	prior := l.opts.Prior[in.addr]
	for _, as := range ks.Attrs {
		if !as.Computed {
			continue
		}
		v := l.computedValue(n, in.addr, &as, vals, res, prior)
		res.Computed[as.Name] = toGo(v)
		obj[as.Name] = v.WithMarks(cty.NewValueMarks(dep, refMark{block: n.key, addr: in.addr, attr: as.Name}))
	}
	st.recordDeps(n, in.addr)
	l.instances = append(l.instances, res)
	return cty.ObjectVal(obj)
}

// evalAttr evaluates one configured attribute of an instance: its expression
// converted to the schema's type and checked, else the schema's default, else
// null. The marks say what the value was derived from; an error mark means the
// value is unknown because of an error already reported.
func (l *loader) evalAttr(n *node, addr string, as *AttrSchema, ctx *hcl.EvalContext) (cty.Value, cty.ValueMarks) {
	ty := schemaType(as.Type)
	v := cty.NullVal(ty)
	var marks cty.ValueMarks
	if a := n.res.attrs[as.Name]; a != nil {
		raw := l.eval(a.Expr, ctx)
		l.checkRefKinds(n, addr, as.Name, raw, a)
		var uv cty.Value
		uv, marks = unmarkDeep(raw)
		switch {
		case hasErrMark(marks):
			v = cty.UnknownVal(ty)
		default:
			cv, cm := l.convertAttr(n.kind, as, a, uv, ctx).Unmark()
			v = cv
			if hasErrMark(cm) {
				marks = cty.NewValueMarks(errMark{}) // the error replaces the value
			} else if v.IsWhollyKnown() && !v.IsNull() {
				l.checkAttr(n, addr, as.Name, v, a)
			}
		}
	}
	if v.IsNull() && as.Default != nil {
		v, _ = convert.Convert(fromGo(as.Default), ty)
	}
	return v, marks
}

// computedValue is a computed attribute of an instance: derived when it can be
// known now, else the value in prior (the instance's last applied computed
// attributes), else unknown.
func (l *loader) computedValue(n *node, addr string, as *AttrSchema, vals map[string]cty.Value, res *Resource, prior map[string]any) cty.Value {
	ty := schemaType(as.Type)
	v := l.derived(n, addr, as.Name, vals, res)
	if v == cty.NilVal {
		if pv, ok := prior[as.Name]; ok {
			if cv, err := convert.Convert(fromGo(pv), ty); err == nil {
				v = cv
			}
		}
	}
	if v == cty.NilVal {
		v = cty.UnknownVal(ty)
	}
	return v
}

// recordDeps writes the instance's dependencies into its Resource: every
// instance its values were derived from; every instance of a block it
// depends_on as a whole, or refers to without a constant key when none of its
// values was derived from that block; and the computed attributes each of its
// attributes refers to. addr is the instance's own address, never a
// dependency.
func (s *instState) recordDeps(n *node, addr string) {
	for b := range n.dynamicBlocks {
		if !s.blocks[b.key] {
			for _, a := range b.instAddrs {
				s.deps[a] = true
			}
		}
	}
	for b := range n.allBlocks {
		for _, a := range b.instAddrs {
			s.deps[a] = true
		}
	}
	delete(s.deps, addr)
	s.res.DependsOn = sortedKeys(s.deps)
	for attr, refs := range s.refs {
		s.res.AttrRefs[attr] = sortedKeys(refs)
	}
}

// derived returns a computed attribute that is known before apply, or NilVal.
func (l *loader) derived(n *node, addr, attr string, vals map[string]cty.Value, res *Resource) cty.Value {
	switch {
	case n.kind == KindNetwork && attr == "gateway":
		if st := l.netInfo[addr]; st != nil {
			return cty.StringVal(firstHost(st.prefix).String())
		}
	case n.kind == KindServer && (attr == "address" || attr == "addresses"):
		nets, _ := res.Attrs["networks"].([]any)
		if len(nets) == 0 {
			return cty.NilVal
		}
		m := map[string]cty.Value{}
		for _, e := range nets {
			a, ok := e.(map[string]any)["address"].(string)
			if !ok {
				if attr == "addresses" {
					return cty.NilVal
				}
				continue
			}
			m[e.(map[string]any)["name"].(string)] = cty.StringVal(a)
		}
		if attr == "address" {
			if a, ok := nets[0].(map[string]any)["address"].(string); ok {
				return cty.StringVal(a)
			}
			return cty.NilVal
		}
		return cty.MapVal(m)
	}
	return cty.NilVal
}

func (l *loader) evalServerNets(n *node, in instance, ctx *hcl.EvalContext, st *instState, res *Resource, dep depMark) cty.Value {
	if len(n.res.nets) == 0 {
		return cty.ListValEmpty(netObjType).Mark(dep)
	}
	var objs []cty.Value
	var goNets []any
	all := make(cty.ValueMarks)
	for _, nb := range n.res.nets {
		addr := cty.NullVal(cty.String)
		if nb.address != nil {
			raw := l.eval(nb.address.Expr, ctx)
			l.checkAddressRefs(in.addr, nb, raw)
			uv, marks := unmarkDeep(raw)
			st.collect("networks", marks)
			for m := range marks {
				all[m] = struct{}{}
			}
			switch {
			case hasErrMark(marks):
				addr = cty.UnknownVal(cty.String)
			default:
				cv, err := convert.Convert(uv, cty.String)
				if err != nil {
					l.diags = append(l.diags, typeDiag("address", err, nb.address, ctx))
					addr = cty.UnknownVal(cty.String)
				} else {
					addr = cv
					if cv.IsKnown() && !cv.IsNull() {
						l.checkServerAddress(in.addr, nb, cv.AsString())
					}
				}
			}
		}
		objs = append(objs, cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal(nb.name), "address": addr}))
		g := map[string]any{"name": nb.name}
		if !addr.IsNull() {
			g["address"] = toGo(addr)
		}
		goNets = append(goNets, g)
	}
	res.Attrs["networks"] = goNets
	return withMarks(cty.ListVal(objs), all, dep)
}

type netState struct {
	prefix netip.Prefix
}

type netCheck struct {
	prefix netip.Prefix
	addr   string
	rng    hcl.Range
}

// withMarks marks v with marks and one more mark, copying the set once.
func withMarks(v cty.Value, marks cty.ValueMarks, extra any) cty.Value {
	m := make(cty.ValueMarks, len(marks)+1)
	for k := range marks {
		m[k] = struct{}{}
	}
	m[extra] = struct{}{}
	return v.WithMarks(m)
}

// unmarkDeep is Value.UnmarkDeep without the copying walk for the common
// value that carries no mark at all.
func unmarkDeep(v cty.Value) (cty.Value, cty.ValueMarks) {
	if !v.ContainsMarked() {
		return v, nil
	}
	return v.UnmarkDeep()
}
