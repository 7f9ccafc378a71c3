package spec

import (
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// sensitiveMark marks values derived from a sensitive param.
type sensitiveMark struct{}

// paramSource is where a param's value came from, for diagnostics.
type paramSource struct {
	val  cty.Value
	rng  *hcl.Range
	what string
}

// resolveParams gives every param its value: -var beats -var-file beats
// KILN_VAR_ beats the default. It then runs the validation rules.
func (l *loader) resolveParams() {
	given := map[string]paramSource{}
	// -var-file, in order: a later file wins.
	for _, vf := range l.opts.VarFiles {
		f, diags := hclsyntax.ParseConfig(vf.Bytes, vf.Name, hcl.InitialPos)
		l.diags = append(l.diags, diags...)
		if diags.HasErrors() {
			continue
		}
		if b, ok := f.Body.(*hclsyntax.Body); ok {
			l.diags = append(l.diags, l.prepare(b)...)
		}
		attrs, diags := f.Body.JustAttributes()
		l.diags = append(l.diags, diags...)
		for _, name := range sortedKeys(attrs) {
			a := attrs[name]
			if l.paramIdx[name] == nil {
				l.errorf(&a.NameRange, "Value for undeclared param", "The var file sets %q, but the template declares no param of that name.", name)
				continue
			}
			v, diags := a.Expr.Value(l.countCtx())
			l.diags = append(l.diags, diags...)
			if diags.HasErrors() {
				continue
			}
			given[name] = paramSource{val: v, rng: rangePtr(a.Expr.Range()), what: "the var file " + vf.Name}
		}
	}
	// -var beats every file.
	for _, rv := range l.opts.Vars {
		p := l.paramIdx[rv.Name]
		if p == nil {
			l.errorf(nil, "Value for undeclared param", "-var %s=... was given, but the template declares no param %q.", rv.Name, rv.Name)
			continue
		}
		if v, ok := l.rawVar(p, rv.Value, "-var "+rv.Name); ok {
			given[rv.Name] = paramSource{val: v, what: "-var " + rv.Name}
		}
	}
	for _, p := range l.params {
		src, ok := given[p.name]
		if !ok {
			if raw, isSet := l.opts.Env[p.name]; isSet {
				v, ok2 := l.rawVar(p, raw, "KILN_VAR_"+p.name)
				if !ok2 {
					p.failed = true
					continue
				}
				src, ok = paramSource{val: v, what: "KILN_VAR_" + p.name}, true
			}
		}
		if !ok && p.def != nil {
			v, diags := p.def.Expr.Value(&hcl.EvalContext{Functions: l.funcs})
			l.diags = append(l.diags, diags...)
			if diags.HasErrors() {
				p.failed = true
				continue
			}
			src, ok = paramSource{val: v, rng: rangePtr(p.def.Expr.Range()), what: "the default"}, true
		}
		if !ok {
			l.errorf(&p.block.DefRange, "No value for required param", "Param %q has no default, so give it a value with -var %s=..., a -var-file or KILN_VAR_%s.", p.name, p.name, p.name)
			p.failed = true
			continue
		}
		subj := src.rng
		if subj == nil {
			subj = &p.block.DefRange
		}
		if l.longNumberValue(src.val, p.typ, subj) {
			p.failed = true
			continue
		}
		v, err := convert.Convert(src.val, p.typ)
		if err != nil {
			l.errorf(subj, "Invalid value for param", "The value for param %q from %s is not a %s: %s.", p.name, src.what, p.typ.FriendlyName(), err)
			p.failed = true
			continue
		}
		if bad := outOfRange(v); bad != nil {
			l.errorf(subj, "Number out of range", "The value for param %q from %s: %s.", p.name, src.what, rangeError("a number of it", bad))
			p.failed = true
			continue
		}
		if v.IsNull() {
			l.errorf(&p.block.DefRange, "No value for required param", "Param %q is null; give it a value.", p.name)
			p.failed = true
			continue
		}
		p.value = v
	}
	vals := map[string]cty.Value{}
	for _, p := range l.params {
		switch {
		case p.failed:
			vals[p.name] = cty.DynamicVal.Mark(errMark{})
		case p.sensitive:
			vals[p.name] = p.value.Mark(sensitiveMark{})
		default:
			vals[p.name] = p.value
		}
	}
	l.paramObj = cty.ObjectVal(vals)
	l.validateParams()
}

// rawVar reads a value given as text: a string param takes the text as is,
// any other type parses it as an HCL expression.
func (l *loader) rawVar(p *paramDecl, raw, what string) (cty.Value, bool) {
	if p.typ == cty.String || p.typ == cty.DynamicPseudoType {
		return cty.StringVal(raw), true
	}
	expr, diags := hclsyntax.ParseExpression([]byte(raw), what, hcl.InitialPos)
	if !diags.HasErrors() {
		if diags = l.prepare(expr); diags.HasErrors() {
			l.errorf(&p.block.DefRange, "Number out of range", "The value given by %s for param %q holds a number out of range: %s.", what, p.name, numberRangeText)
			return cty.NilVal, false
		}
	}
	if !diags.HasErrors() {
		var v cty.Value
		v, diags = expr.Value(l.countCtx())
		if !diags.HasErrors() {
			return v, true
		}
	}
	if l.budget.spent() {
		l.errorf(&p.block.DefRange, LimitSummary, "%s, in the value given by %s for param %q.", capitalize(l.budget.err.msg), what, p.name)
		return cty.NilVal, false
	}
	l.errorf(&p.block.DefRange, "Invalid value for param", "The value %q given by %s for param %q is not a valid %s.", raw, what, p.name, p.typ.FriendlyName())
	return cty.NilVal, false
}

func (l *loader) validateParams() {
	ctx := &hcl.EvalContext{Variables: map[string]cty.Value{"param": l.paramObj}, Functions: l.funcs}
	for _, p := range l.params {
		for _, v := range p.validations {
			ok := true
			for _, tr := range v.condition.Variables() {
				if !l.checkParamRef(tr) {
					ok = false
				}
			}
			if !ok || p.failed {
				continue
			}
			res, diags := v.condition.Value(ctx)
			l.diags = append(l.diags, diags...)
			if diags.HasErrors() {
				continue
			}
			res, _ = res.UnmarkDeep()
			if !res.IsKnown() {
				continue
			}
			if res.IsNull() || res.Type() != cty.Bool {
				l.errorf(rangePtr(v.condition.Range()), "Invalid validation condition", "A validation condition must be true or false.")
				continue
			}
			if res.True() {
				continue
			}
			msg := "The value does not satisfy the validation rule."
			if m, diags := v.message.Value(ctx); !diags.HasErrors() {
				m, _ = m.UnmarkDeep()
				if m.IsKnown() && !m.IsNull() && m.Type() == cty.String {
					msg = m.AsString()
				}
			}
			l.errorf(rangePtr(v.condition.Range()), "Invalid value for param", "Param %q: %s", p.name, msg)
		}
	}
}

// checkParamRef checks a reference inside a param validation rule: only
// params may be used there.
func (l *loader) checkParamRef(tr hcl.Traversal) bool {
	rng := tr.SourceRange()
	if tr.RootName() != "param" {
		l.errorf(&rng, "Invalid reference in validation", "A param validation rule may refer only to params, not to %q.", traversalString(tr))
		return false
	}
	if len(tr) < 2 {
		l.errorf(&rng, "Invalid reference", "Refer to a param by name, such as param.web_count.")
		return false
	}
	a, ok := tr[1].(hcl.TraverseAttr)
	if !ok || l.paramIdx[a.Name] == nil {
		l.errorf(&rng, "Reference to undeclared param", "No param named %q is declared.", traversalName(tr[1]))
		return false
	}
	return true
}

func traversalName(s hcl.Traverser) string {
	switch t := s.(type) {
	case hcl.TraverseAttr:
		return t.Name
	case hcl.TraverseIndex:
		return keyString(t.Key)
	}
	return "?"
}
