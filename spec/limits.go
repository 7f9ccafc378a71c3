package spec

// Evaluation budget: a template is untrusted input, so evaluating it may not
// take unbounded CPU or memory. Every function result, every for-expression's
// collection, every interpolated part of a string template, every resource
// instance and every evaluated local, resource and output is charged to one
// budget per Load; functions that can make a large result from small
// arguments (range, setproduct, format, join, indent, replace, jsonencode...)
// are charged for their result before it is built. Once the
// budget is spent (or Options.Context is done) evaluation stops: everything
// still to evaluate becomes unknown and Load returns one "Evaluation limit
// exceeded" diagnostic at the place that spent it.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// Default limits of one evaluation.
const (
	// DefaultMaxValues bounds the values (collection elements, resource
	// instances) one evaluation may make.
	DefaultMaxValues = 1_000_000
	// DefaultMaxStringBytes bounds the bytes of strings one evaluation may
	// make.
	DefaultMaxStringBytes = 64 << 20
)

// Limits bound the work of one Load. Zero fields take the defaults.
type Limits struct {
	// MaxValues bounds the collection elements and resource instances made
	// while evaluating (counted cumulatively over the whole evaluation).
	MaxValues int64
	// MaxStringBytes bounds the bytes of the strings made while evaluating
	// (counted cumulatively).
	MaxStringBytes int64
}

func (lim Limits) withDefaults() Limits {
	if lim.MaxValues <= 0 {
		lim.MaxValues = DefaultMaxValues
	}
	if lim.MaxStringBytes <= 0 {
		lim.MaxStringBytes = DefaultMaxStringBytes
	}
	return lim
}

// LimitSummary is the Summary of the diagnostic of a spent budget; callers
// may look for it to answer differently (the API answers 422).
const LimitSummary = "Evaluation limit exceeded"

// errLimit marks the errors of a spent budget.
var errLimit = errors.New("evaluation limit exceeded")

type limitError struct{ msg string }

func (e *limitError) Error() string { return e.msg }
func (e *limitError) Is(t error) bool {
	return t == errLimit
}

// budget is what one evaluation may still spend.
type budget struct {
	lim    Limits
	ctx    context.Context
	values int64
	bytes  int64
	steps  int
	// err is set once the budget is spent.
	err *limitError
	// vars are the variables of the EvalContexts in use; once the budget is
	// spent each becomes unknown, so that what is still evaluated (a for
	// expression goes on over its elements) reads no large value.
	vars []map[string]cty.Value
}

// track makes vars unknown once the budget is spent, and returns it.
func (b *budget) track(vars map[string]cty.Value) map[string]cty.Value {
	if b.err != nil {
		for k := range vars {
			vars[k] = cty.DynamicVal
		}
		return vars
	}
	b.vars = append(b.vars, vars)
	return vars
}

func newBudget(ctx context.Context, lim Limits) *budget {
	if ctx == nil {
		ctx = context.Background()
	}
	return &budget{lim: lim.withDefaults(), ctx: ctx}
}

func (b *budget) spent() bool { return b.err != nil }

func (b *budget) fail(format string, args ...any) error {
	if b.err == nil {
		b.err = &limitError{msg: fmt.Sprintf(format, args...)}
		for _, vars := range b.vars {
			for k := range vars {
				vars[k] = cty.DynamicVal
			}
		}
		b.vars = nil
	}
	return b.err
}

// checkTime fails once the context is done.
func (b *budget) checkTime() error {
	if b.err != nil {
		return b.err
	}
	if err := b.ctx.Err(); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return b.fail("evaluation took longer than its time limit")
		}
		return b.fail("evaluation was cancelled")
	}
	return nil
}

// charge adds values and bytes, failing when a limit is passed; what names
// the thing charged ("setproduct would make 3,375,000 values").
func (b *budget) charge(values, bytes int64, what string) error {
	if b.err != nil {
		return b.err
	}
	if values > b.lim.MaxValues-b.values {
		b.values = b.lim.MaxValues
		return b.fail("evaluation exceeded its limit of %s values (%s)", commas(b.lim.MaxValues), what)
	}
	if bytes > b.lim.MaxStringBytes-b.bytes {
		b.bytes = b.lim.MaxStringBytes
		return b.fail("evaluation exceeded its limit of %s bytes of strings (%s)", commas(b.lim.MaxStringBytes), what)
	}
	b.values += values
	b.bytes += bytes
	return nil
}

// chargeValue charges every element and string byte of v, stopping as soon
// as the budget is spent (a value may share structure and be far larger than
// the memory it holds).
func (b *budget) chargeValue(v cty.Value, what string) error {
	if b.err != nil {
		return b.err
	}
	var walk func(v cty.Value) error
	walk = func(v cty.Value) error {
		v, _ = v.Unmark()
		if !v.IsKnown() || v.IsNull() {
			return nil
		}
		b.steps++
		if b.steps%4096 == 0 {
			if err := b.checkTime(); err != nil {
				return err
			}
		}
		ty := v.Type()
		switch {
		case ty == cty.String:
			return b.charge(0, int64(len(v.AsString())), what)
		case ty.IsListType() || ty.IsSetType() || ty.IsMapType() || ty.IsTupleType() || ty.IsObjectType():
			n := int64(v.LengthInt())
			if ty.IsObjectType() {
				n = int64(len(ty.AttributeTypes()))
			}
			if err := b.charge(n, 0, what); err != nil {
				return err
			}
			for it := v.ElementIterator(); it.Next(); {
				_, e := it.Element()
				if err := walk(e); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(v)
}

// wrapFunctions makes every function of fs charge its result to the budget
// (and its predicted result first, for the functions that can make a large
// result from small arguments). can and try only evaluate expressions whose
// own function calls are charged, so they stay as they are.
func (b *budget) wrapFunctions(fs map[string]function.Function) {
	for name, f := range fs {
		if name == "can" || name == "try" {
			continue
		}
		fs[name] = b.wrap(name, f)
	}
}

func (b *budget) wrap(name string, f function.Function) function.Function {
	params := f.Params()
	for i := range params {
		params[i].AllowUnknown = true
		params[i].AllowMarked = true
	}
	var vp *function.Parameter
	if p := f.VarParam(); p != nil {
		c := *p
		c.AllowUnknown = true
		c.AllowMarked = true
		vp = &c
	}
	pre := predict[name]
	origParams, origVP := f.Params(), f.VarParam()
	return function.New(&function.Spec{
		Description: f.Description(),
		Params:      params,
		VarParam:    vp,
		Type: func(args []cty.Value) (cty.Type, error) {
			return f.ReturnTypeForValues(args)
		},
		Impl: func(args []cty.Value, retType cty.Type) (cty.Value, error) {
			if b.err != nil {
				return cty.UnknownVal(retType), nil
			}
			if err := b.checkTime(); err != nil {
				return cty.UnknownVal(retType), err
			}
			if err := b.numberTextArgs(name, origParams, origVP, args); err != nil {
				return cty.UnknownVal(retType), err
			}
			if err := argsInRange(name, origParams, origVP, args); err != nil {
				return cty.UnknownVal(retType), err
			}
			if pre != nil {
				plain := make([]cty.Value, len(args))
				known := true
				for i, a := range args {
					plain[i], _ = a.UnmarkDeep()
					known = known && plain[i].IsWhollyKnown() && !plain[i].IsNull()
				}
				if known {
					values, bytes := pre(plain)
					if err := b.charge(values, bytes, fmt.Sprintf("%s would make %s", name, sizeText(values, bytes))); err != nil {
						return cty.UnknownVal(retType), err
					}
				}
			}
			v, err := f.Call(args)
			if err != nil {
				return v, err
			}
			if bad := outOfRange(v); bad != nil {
				return cty.UnknownVal(retType), rangeError("a number of the result", bad)
			}
			if err := b.chargeValue(v, "the result of "+name); err != nil {
				return cty.UnknownVal(retType), err
			}
			return v, nil
		},
	})
}

func sizeText(values, bytes int64) string {
	if bytes > 0 && values == 0 {
		return commas(bytes) + " bytes"
	}
	return commas(values) + " values"
}

// predict estimates, before they are built, the results of the functions
// that can make a large result from small arguments: values and string bytes.
// An estimate may be high, never low.
var predict = map[string]func(args []cty.Value) (values, bytes int64){
	"range": func(args []cty.Value) (int64, int64) {
		f := make([]float64, len(args))
		for i, a := range args {
			if a.Type() != cty.Number {
				return 0, 0
			}
			f[i], _ = a.AsBigFloat().Float64()
		}
		start, end, step := 0.0, 0.0, 1.0
		switch len(f) {
		case 1:
			end = f[0]
		case 2:
			start, end = f[0], f[1]
			if end < start {
				step = -1
			}
		case 3:
			start, end, step = f[0], f[1], f[2]
		default:
			return 0, 0
		}
		if step == 0 {
			return 0, 0
		}
		return clampInt(math.Ceil((end - start) / step)), 0
	},
	"setproduct": func(args []cty.Value) (int64, int64) {
		n := big.NewInt(1)
		for _, a := range args {
			if !a.CanIterateElements() {
				return 0, 0
			}
			n.Mul(n, big.NewInt(int64(a.LengthInt())))
		}
		// each element is a tuple of len(args) values
		n.Mul(n, big.NewInt(int64(len(args)+1)))
		return clampBig(n), 0
	},
	"format":     func(args []cty.Value) (int64, int64) { return 0, formatBytes(args) },
	"jsonencode": encodedSize,
	"yamlencode": encodedSize,
	"formatlist": formatListSize,
	"join": func(args []cty.Value) (int64, int64) {
		if len(args) < 1 || args[0].Type() != cty.String {
			return 0, 0
		}
		sep := int64(len(args[0].AsString()))
		var n, total int64
		for _, l := range args[1:] {
			if !l.CanIterateElements() {
				continue
			}
			for it := l.ElementIterator(); it.Next(); {
				_, e := it.Element()
				n++
				if e.Type() == cty.String {
					total += int64(len(e.AsString()))
				}
			}
		}
		return 0, satAdd(total, satMul(sep, n))
	},
	"indent": func(args []cty.Value) (int64, int64) {
		if len(args) != 2 || args[0].Type() != cty.Number || args[1].Type() != cty.String {
			return 0, 0
		}
		w, _ := args[0].AsBigFloat().Float64()
		s := args[1].AsString()
		lines := int64(strings.Count(s, "\n") + 1)
		return 0, satAdd(int64(len(s)), satMul(clampInt(w), lines))
	},
	"replace": func(args []cty.Value) (int64, int64) {
		if len(args) != 3 {
			return 0, 0
		}
		for _, a := range args {
			if a.Type() != cty.String {
				return 0, 0
			}
		}
		s, sub, repl := args[0].AsString(), args[1].AsString(), args[2].AsString()
		if len(sub) > 1 && strings.HasPrefix(sub, "/") && strings.HasSuffix(sub, "/") {
			// a regular expression: at most one match per position, each
			// replaced by repl with its $ references expanded
			per := satMul(int64(len(repl)+1), int64(strings.Count(repl, "$")+1))
			return 0, satAdd(int64(len(s)), satMul(int64(len(s)+1), per))
		}
		if sub == "" {
			return 0, satAdd(int64(len(s)), satMul(int64(len(s)+1), int64(len(repl))))
		}
		return 0, satAdd(int64(len(s)), satMul(int64(strings.Count(s, sub)), int64(len(repl))))
	},
	"chunklist": func(args []cty.Value) (int64, int64) {
		if len(args) < 1 || !args[0].CanIterateElements() {
			return 0, 0
		}
		return 2 * int64(args[0].LengthInt()), 0
	},
}

// verbRe finds the width and precision of a format verb.
var verbRe = regexp.MustCompile(`%[-+# 0]*([0-9]*)(?:\.([0-9]*))?`)

// formatBytes bounds the length of format(spec, args...): the spec, every
// argument rendered (JSON-like, so bounded by its size twice), and every
// width and precision written in the spec.
func formatBytes(args []cty.Value) int64 {
	if len(args) < 1 || args[0].Type() != cty.String {
		return 0
	}
	spec := args[0].AsString()
	total := int64(len(spec))
	for _, m := range verbRe.FindAllStringSubmatch(spec, -1) {
		for _, d := range m[1:] {
			if d == "" {
				continue
			}
			w, err := strconv.ParseInt(d, 10, 64)
			if err != nil {
				return math.MaxInt64
			}
			total = satAdd(total, w)
		}
	}
	for _, a := range args[1:] {
		total = satAdd(total, satMul(2, approxSize(a)))
	}
	return total
}

func formatListSize(args []cty.Value) (int64, int64) {
	n := int64(1)
	for _, a := range args[1:] {
		if (a.Type().IsListType() || a.Type().IsTupleType()) && a.LengthInt() > 0 {
			n = int64(a.LengthInt())
		}
	}
	return n, satMul(n, formatBytes(args))
}

// encodedSize bounds the text of jsonencode/yamlencode: every string as
// often as the value holds it (a value may share one string many times),
// escaped, plus the punctuation and indentation of every element.
func encodedSize(args []cty.Value) (int64, int64) {
	if len(args) != 1 {
		return 0, 0
	}
	return 0, satMul(2, approxSize(args[0]))
}

// approxSizeCap bounds how far approxSize walks: past it the answer is "too
// much" and the walk stops (a value sharing structure can be far larger than
// its memory).
const approxSizeCap = 1 << 40

// approxSize is the string bytes plus the number of elements of v (plus
// their nesting), at most about approxSizeCap.
func approxSize(v cty.Value) int64 {
	var n int64
	var walk func(v cty.Value, depth int64)
	walk = func(v cty.Value, depth int64) {
		if n > approxSizeCap || !v.IsKnown() || v.IsNull() {
			return
		}
		ty := v.Type()
		switch {
		case ty == cty.String:
			n = satAdd(n, int64(len(v.AsString())))
		case ty == cty.Number || ty == cty.Bool:
			n = satAdd(n, 32)
		case v.CanIterateElements():
			for it := v.ElementIterator(); it.Next() && n <= approxSizeCap; {
				k, e := it.Element()
				n = satAdd(n, depth+2)
				if ty.IsMapType() || ty.IsObjectType() {
					walk(k, depth+1)
				}
				walk(e, depth+1)
			}
		}
	}
	walk(v, 0)
	return n
}

func clampInt(f float64) int64 {
	if math.IsNaN(f) || f <= 0 {
		return 0
	}
	if f >= math.MaxInt64/2 {
		return math.MaxInt64 / 2
	}
	return int64(f)
}

func clampBig(n *big.Int) int64 {
	if !n.IsInt64() || n.Int64() > math.MaxInt64/2 {
		return math.MaxInt64 / 2
	}
	return n.Int64()
}

func satAdd(a, b int64) int64 {
	if a > math.MaxInt64/2 || b > math.MaxInt64/2 {
		return math.MaxInt64 / 2
	}
	return a + b
}

func satMul(a, b int64) int64 {
	if a == 0 || b == 0 {
		return 0
	}
	if a > (math.MaxInt64/2)/b {
		return math.MaxInt64 / 2
	}
	return a * b
}

// commas renders 1000000 as "1,000,000".
func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// forCollection is the name under which the collection of every
// for-expression is charged: countForExprs wraps the collection in a call of
// it. It is not an identifier, so no template can call it.
const forCollection = "(for collection)"

// forFunc passes a for-expression's collection through unchanged, charging
// its length: a for-expression over n elements makes n values, and nested
// ones multiply.
func (b *budget) forFunc() function.Function {
	return b.chargingIdentity("Charges the collection of a for expression to the evaluation budget.", "collection",
		func(uv cty.Value) error {
			if err := b.checkTime(); err != nil {
				return err
			}
			if uv.IsKnown() && !uv.IsNull() && uv.CanIterateElements() {
				n := int64(uv.LengthInt())
				return b.charge(n, 0, fmt.Sprintf("a for expression over %s elements", commas(n)))
			}
			return nil
		})
}

// chargingIdentity is a function of one argument that returns it unchanged
// once charge (given it unmarked) has charged it to the budget; once the
// budget is spent it returns an unknown value without charging.
func (b *budget) chargingIdentity(description, param string, charge func(cty.Value) error) function.Function {
	return function.New(&function.Spec{
		Description: description,
		Params: []function.Parameter{{Name: param, Type: cty.DynamicPseudoType,
			AllowNull: true, AllowUnknown: true, AllowDynamicType: true, AllowMarked: true}},
		Type: func(args []cty.Value) (cty.Type, error) { return args[0].Type(), nil },
		Impl: func(args []cty.Value, retType cty.Type) (cty.Value, error) {
			if b.err != nil {
				return cty.UnknownVal(retType), nil
			}
			uv, _ := args[0].Unmark()
			if err := charge(uv); err != nil {
				return cty.UnknownVal(retType), err
			}
			return args[0], nil
		},
	})
}

// templatePart is the name under which each interpolated part of a string
// template is charged before the template joins the parts: a template that
// repeats a large string would otherwise build the whole result first.
const templatePart = "(template part)"

// partFunc passes a template part through unchanged, charging its bytes.
func (b *budget) partFunc() function.Function {
	return b.chargingIdentity("Charges an interpolated part of a string template to the evaluation budget.", "part",
		func(uv cty.Value) error {
			if uv.IsKnown() && !uv.IsNull() && uv.Type() == cty.String {
				n := int64(len(uv.AsString()))
				return b.charge(0, n, fmt.Sprintf("a string template part of %s bytes", commas(n)))
			}
			return nil
		})
}

// countForExprs makes every for-expression under n charge its collection,
// by wrapping the collection in a call of forCollection (a real syntax node:
// Variables() still sees the references inside). Every EvalContext the
// loader evaluates in holds forCollection.
func (b *budget) countForExprs(n hclsyntax.Node) {
	var fes []*hclsyntax.ForExpr
	var tes []*hclsyntax.TemplateExpr
	hclsyntax.VisitAll(n, func(n hclsyntax.Node) hcl.Diagnostics {
		switch e := n.(type) {
		case *hclsyntax.ForExpr:
			fes = append(fes, e)
		case *hclsyntax.TemplateExpr:
			tes = append(tes, e)
		}
		return nil
	})
	for _, te := range tes {
		for i, part := range te.Parts {
			switch p := part.(type) {
			case *hclsyntax.LiteralValueExpr:
				continue
			case *hclsyntax.FunctionCallExpr:
				if p.Name == templatePart {
					continue
				}
			}
			r := part.Range()
			te.Parts[i] = &hclsyntax.FunctionCallExpr{
				Name: templatePart, Args: []hclsyntax.Expression{part},
				NameRange: r, OpenParenRange: r, CloseParenRange: r,
			}
		}
	}
	for _, fe := range fes {
		if fc, ok := fe.CollExpr.(*hclsyntax.FunctionCallExpr); ok && fc.Name == forCollection {
			continue
		}
		r := fe.CollExpr.Range()
		fe.CollExpr = &hclsyntax.FunctionCallExpr{
			Name: forCollection, Args: []hclsyntax.Expression{fe.CollExpr},
			NameRange: r, OpenParenRange: r, CloseParenRange: r,
		}
	}
}

// countCtx is the EvalContext of expressions that may call no function (var
// files, -var values): only forCollection.
func (l *loader) countCtx() *hcl.EvalContext {
	return &hcl.EvalContext{Functions: map[string]function.Function{
		forCollection: l.funcs[forCollection], templatePart: l.funcs[templatePart],
		numberOperand: l.funcs[numberOperand], comparedOperand: l.funcs[comparedOperand],
	}}
}

// limitDiags turns the diagnostics of a spent budget into one diagnostic
// with LimitSummary at the place that spent it, dropping the follow-on
// errors of everything evaluated after (which saw only unknown values).
func (b *budget) limitDiags(diags hcl.Diagnostics, fallback *hcl.Range) hcl.Diagnostics {
	if b.err == nil {
		return diags
	}
	var out hcl.Diagnostics
	var first *hcl.Diagnostic
	for _, d := range diags {
		if d.Summary == LimitSummary {
			first = d
			break
		}
		if x, ok := d.Extra.(hclsyntax.FunctionCallDiagExtra); ok && errors.Is(x.FunctionCallError(), errLimit) {
			detail := fmt.Sprintf("%s, in the call of %s.", capitalize(b.err.msg), x.CalledFunctionName())
			if x.CalledFunctionName() == forCollection || x.CalledFunctionName() == templatePart || x.CalledFunctionName() == numberOperand || x.CalledFunctionName() == comparedOperand {
				detail = capitalize(b.err.msg) + "."
			}
			first = &hcl.Diagnostic{Severity: hcl.DiagError, Summary: LimitSummary,
				Detail:  detail,
				Subject: d.Subject, Context: d.Context, Expression: d.Expression, EvalContext: d.EvalContext}
			break
		}
		// errors before the budget was spent are the template's own
		out = append(out, d)
	}
	// what came after it are follow-on errors of values that became unknown
	if first == nil {
		if fallback != nil && fallback.Filename == "" {
			fallback = nil
		}
		first = &hcl.Diagnostic{Severity: hcl.DiagError, Summary: LimitSummary, Detail: capitalize(b.err.msg) + ".", Subject: fallback}
	}
	return append(hcl.Diagnostics{first}, out...)
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
