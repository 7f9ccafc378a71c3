package spec

// The range of numbers: a template's numbers are arbitrary-precision, but
// writing one in decimal (a string template, a map key, jsonencode, an error
// message) takes time that grows faster than its exponent: 1e1000000 takes
// seconds, 1e-1000000 minutes, and no deadline can stop it. So every number a
// template makes (a literal, the result of an arithmetic operator or a
// function, a string converted to a number for a param or a field) must lie
// in the range of a 64-bit float, the range the Stack holds numbers in
// anyway (toGo); one outside it is an error at the place that made it.

import (
	"fmt"
	"math"
	"math/big"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
)

// The binary exponents (x = m * 2^exp, 0.5 <= |m| < 1) of the numbers in the
// range: up to the largest float64 (about 1.8e308), down to its smallest
// denormal (about 4.9e-324).
const (
	maxNumberExp = 1024
	minNumberExp = -1073
)

// numberRangeText says what the range is, for the diagnostics.
const numberRangeText = "a number must be 0 or between about 4.9e-324 and 1.8e308 in magnitude (the range of a 64-bit float)"

// numberInRange reports whether f is 0, infinite or in the range.
func numberInRange(f *big.Float) bool {
	if f.Sign() == 0 || f.IsInf() {
		return true
	}
	e := f.MantExp(nil)
	return e >= minNumberExp && e <= maxNumberExp
}

// outOfRange returns the first number of v (walking its elements) that is
// outside the range, or nil.
func outOfRange(v cty.Value) *big.Float {
	v, _ = v.UnmarkDeep()
	var bad *big.Float
	var walk func(v cty.Value)
	walk = func(v cty.Value) {
		if bad != nil || !v.IsKnown() || v.IsNull() {
			return
		}
		ty := v.Type()
		switch {
		case ty == cty.Number:
			if f := v.AsBigFloat(); !numberInRange(f) {
				bad = f
			}
		case v.CanIterateElements():
			for it := v.ElementIterator(); it.Next() && bad == nil; {
				_, e := it.Element()
				walk(e)
			}
		}
	}
	walk(v)
	return bad
}

// aboutText renders f as "about 1.1e+11111001" without writing it in
// decimal, which is what an out-of-range number may not be.
func aboutText(f *big.Float) string {
	if numberInRange(f) {
		x, _ := f.Float64()
		return fmt.Sprintf("about %.2g", x)
	}
	mant := new(big.Float)
	exp := f.MantExp(mant)
	m, _ := mant.Float64() // 0.5 <= |m| < 1
	l := math.Log10(math.Abs(m)) + float64(exp)*math.Log10(2)
	e := math.Floor(l)
	d := math.Pow(10, l-e)
	if d >= 9.95 {
		d, e = 1, e+1
	}
	sign := ""
	if f.Sign() < 0 {
		sign = "-"
	}
	return fmt.Sprintf("about %s%.1fe%+d", sign, d, int64(e))
}

// numText renders f in decimal when it is in the range, else as aboutText.
func numText(f *big.Float) string {
	if numberInRange(f) {
		return f.Text('f', -1)
	}
	return aboutText(f)
}

// rangeError is the error of a number out of the range; what names the
// number ("the result").
func rangeError(what string, f *big.Float) error {
	return fmt.Errorf("%s, %s, is out of range: %s", what, aboutText(f), numberRangeText)
}

// checkNumberLiterals reports every number literal of n outside the range
// (in expressions and in the index keys of references) and makes it an
// unknown number marked as an error, so that nothing writes it out.
func checkNumberLiterals(n hclsyntax.Node) hcl.Diagnostics {
	var diags hcl.Diagnostics
	bad := func(f *big.Float, rng hcl.Range) {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Number out of range",
			Detail:   fmt.Sprintf("This number, %s, is out of range: %s.", aboutText(f), numberRangeText),
			Subject:  rangePtr(rng),
		})
	}
	checkTraversal := func(tr hcl.Traversal) {
		for i, step := range tr {
			if ix, ok := step.(hcl.TraverseIndex); ok && ix.Key.Type() == cty.Number && ix.Key.IsKnown() && !ix.Key.IsNull() {
				if f := ix.Key.AsBigFloat(); !numberInRange(f) {
					bad(f, ix.SrcRange)
					ix.Key = cty.UnknownVal(cty.Number)
					tr[i] = ix
				}
			}
		}
	}
	hclsyntax.VisitAll(n, func(n hclsyntax.Node) hcl.Diagnostics {
		switch e := n.(type) {
		case *hclsyntax.LiteralValueExpr:
			if e.Val.Type() == cty.Number && e.Val.IsKnown() && !e.Val.IsNull() {
				if f := e.Val.AsBigFloat(); !numberInRange(f) {
					bad(f, e.SrcRange)
					e.Val = cty.UnknownVal(cty.Number).Mark(errMark{})
				}
			}
		case *hclsyntax.ScopeTraversalExpr:
			checkTraversal(e.Traversal)
		case *hclsyntax.RelativeTraversalExpr:
			checkTraversal(e.Traversal)
		}
		return nil
	})
	return diags
}

// checkedOperations are the arithmetic operators, each checking that its
// result is in the range (an operator's error is reported at the
// operation).
var checkedOperations = map[*hclsyntax.Operation]*hclsyntax.Operation{}

func init() {
	for _, op := range []*hclsyntax.Operation{hclsyntax.OpAdd, hclsyntax.OpSubtract, hclsyntax.OpMultiply,
		hclsyntax.OpDivide, hclsyntax.OpModulo, hclsyntax.OpNegate} {
		checkedOperations[op] = &hclsyntax.Operation{Impl: checkResult(op.Impl), Type: op.Type}
	}
}

// checkOperators makes every arithmetic operator of n check its result.
func checkOperators(n hclsyntax.Node) {
	hclsyntax.VisitAll(n, func(n hclsyntax.Node) hcl.Diagnostics {
		switch e := n.(type) {
		case *hclsyntax.BinaryOpExpr:
			if c, ok := checkedOperations[e.Op]; ok {
				e.Op = c
			}
		case *hclsyntax.UnaryOpExpr:
			if c, ok := checkedOperations[e.Op]; ok {
				e.Op = c
			}
		}
		return nil
	})
}

// checkResult is f, failing when its result holds a number out of the range.
func checkResult(f function.Function) function.Function {
	spec := &function.Spec{
		Description: f.Description(),
		Params:      f.Params(),
		VarParam:    f.VarParam(),
		Type: func(args []cty.Value) (cty.Type, error) {
			return f.ReturnTypeForValues(args)
		},
		Impl: func(args []cty.Value, retType cty.Type) (cty.Value, error) {
			v, err := f.Call(args)
			if err != nil {
				return v, err
			}
			if bad := outOfRange(v); bad != nil {
				return cty.UnknownVal(retType), rangeError("the result", bad)
			}
			return v, nil
		},
	}
	return function.New(spec)
}

// argsInRange checks the arguments of a function call that the function
// would convert to numbers: those of its number-typed parameters, and (for
// format and formatlist, whose verbs convert) every string that reads as a
// number.
func argsInRange(name string, params []function.Parameter, vp *function.Parameter, args []cty.Value) error {
	for i, a := range args {
		var ty cty.Type
		switch {
		case i < len(params):
			ty = params[i].Type
		case vp != nil:
			ty = vp.Type
		default:
			continue
		}
		a, _ = a.UnmarkDeep()
		if !a.IsWhollyKnown() || a.IsNull() {
			continue
		}
		if ty == cty.DynamicPseudoType {
			if name != "format" && name != "formatlist" {
				continue
			}
			ty = cty.Number // a string that reads as a number: %d, %f...
			if a.Type() != cty.String {
				continue
			}
		}
		if !ty.HasDynamicTypes() {
			cv, err := convert.Convert(a, ty)
			if err != nil {
				continue // the call reports it
			}
			a = cv
		}
		if bad := outOfRange(a); bad != nil {
			return function.NewArgError(i, rangeError("a number of this argument", bad))
		}
	}
	return nil
}

// prepare readies a parsed template, var file or value for evaluation: its
// number literals are checked, its arithmetic operators check their results
// and its for-expressions and string templates charge the budget.
func (l *loader) prepare(n hclsyntax.Node) hcl.Diagnostics {
	diags := checkNumberLiterals(n)
	checkOperators(n)
	if l.budget != nil {
		l.budget.countForExprs(n)
	}
	return diags
}
