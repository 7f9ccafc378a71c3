package spec

// The range of numbers: a template's numbers are arbitrary-precision, but
// writing one in decimal (a string template, a map key, jsonencode, an error
// message) takes time that grows faster than its exponent: 1e1000000 takes
// seconds, 1e-1000000 minutes, and no deadline can stop it. So every number a
// template makes (a literal, the result of an arithmetic operator or a
// function, a string converted to a number for a param or a field) must lie
// in the range of a 64-bit float, the range the Stack holds numbers in
// anyway (toGo); one outside it is an error at the place that made it.
//
// Reading a number from a string takes time that grows with the square of
// its length (a string of 10,000,000 digits, which format can make, takes
// minutes), so a string read as a number is bounded too: an operand of an
// operator, an argument a function reads as a number, a field or param of a
// number type, a number of jsondecode. A longer one spends the evaluation
// budget (limits.go), as a limit of its own.

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/big"
	"strings"

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

// maxNumberText bounds the bytes of a string read as a number; every number
// of the range is written in fewer.
const maxNumberText = 4096

// numberOperand is the name under which every operand of an operator that
// reads numbers (arithmetic, comparison) and every index key is checked:
// prepare wraps the operand in a call of it. It is not an identifier, so no
// template can call it.
const numberOperand = "(number operand)"

// longNumberText spends the budget on a string of n bytes read as a number.
func (b *budget) longNumberText(n int) error {
	return b.fail("evaluation exceeded its limit of %s bytes for a string read as a number (a string of %s bytes)", commas(maxNumberText), commas(int64(n)))
}

// operandFunc passes an operand through unchanged unless it is a string too
// long to read as a number.
func (b *budget) operandFunc() function.Function {
	return b.chargingIdentity("Refuses a string too long to be read as a number.", "operand",
		func(uv cty.Value) error {
			if n := longNumberString(uv, cty.Number); n > 0 {
				return b.longNumberText(n)
			}
			return nil
		})
}

// comparedOperand is the name under which every operand of == and != is
// charged: comparing takes time with the size of the values compared, and a
// for expression may compare large values once per element.
const comparedOperand = "(compared operand)"

// comparedFunc passes an operand of == or != through unchanged, charging
// every element and string byte of it.
func (b *budget) comparedFunc() function.Function {
	return b.chargingIdentity("Charges an operand of == or != to the evaluation budget.", "operand",
		func(uv cty.Value) error {
			if err := b.checkTime(); err != nil {
				return err
			}
			return b.chargeValue(uv, "a value compared with == or !=")
		})
}

// checkOperands makes every operand of an operator that reads numbers, and
// every index key, pass through numberOperand, and every operand of == and
// != through comparedOperand.
func checkOperands(n hclsyntax.Node) {
	wrap := func(name string, e hclsyntax.Expression) hclsyntax.Expression {
		if fc, ok := e.(*hclsyntax.FunctionCallExpr); ok && fc.Name == name {
			return e
		}
		if _, ok := e.(*hclsyntax.LiteralValueExpr); ok {
			return e
		}
		r := e.Range()
		return &hclsyntax.FunctionCallExpr{Name: name, Args: []hclsyntax.Expression{e},
			NameRange: r, OpenParenRange: r, CloseParenRange: r}
	}
	hclsyntax.VisitAll(n, func(n hclsyntax.Node) hcl.Diagnostics {
		switch e := n.(type) {
		case *hclsyntax.BinaryOpExpr:
			switch {
			case e.Op.Type == cty.Number || numberComparison[e.Op]:
				e.LHS, e.RHS = wrap(numberOperand, e.LHS), wrap(numberOperand, e.RHS)
			case e.Op == hclsyntax.OpEqual || e.Op == hclsyntax.OpNotEqual:
				e.LHS, e.RHS = wrap(comparedOperand, e.LHS), wrap(comparedOperand, e.RHS)
			}
		case *hclsyntax.UnaryOpExpr:
			if e.Op.Type == cty.Number {
				e.Val = wrap(numberOperand, e.Val)
			}
		case *hclsyntax.IndexExpr:
			e.Key = wrap(numberOperand, e.Key)
		}
		return nil
	})
}

var numberComparison = map[*hclsyntax.Operation]bool{
	hclsyntax.OpGreaterThan: true, hclsyntax.OpGreaterThanOrEqual: true,
	hclsyntax.OpLessThan: true, hclsyntax.OpLessThanOrEqual: true,
}

// longNumberString returns the length of the first string of v that
// converting v to ty reads as a number and that is longer than
// maxNumberText, or 0.
func longNumberString(v cty.Value, ty cty.Type) int {
	v, _ = v.UnmarkDeep()
	var walk func(v cty.Value, ty cty.Type) int
	walk = func(v cty.Value, ty cty.Type) int {
		if !v.IsKnown() || v.IsNull() {
			return 0
		}
		vt := v.Type()
		switch {
		case ty == cty.Number:
			if vt == cty.String && len(v.AsString()) > maxNumberText {
				return len(v.AsString())
			}
		case ty.IsListType() || ty.IsSetType() || ty.IsMapType():
			if v.CanIterateElements() {
				for it := v.ElementIterator(); it.Next(); {
					_, e := it.Element()
					if n := walk(e, ty.ElementType()); n > 0 {
						return n
					}
				}
			}
		case ty.IsObjectType():
			if vt.IsObjectType() || vt.IsMapType() {
				for it := v.ElementIterator(); it.Next(); {
					k, e := it.Element()
					if ty.HasAttribute(k.AsString()) {
						if n := walk(e, ty.AttributeType(k.AsString())); n > 0 {
							return n
						}
					}
				}
			}
		case ty.IsTupleType():
			ets := ty.TupleElementTypes()
			if vt.IsTupleType() || vt.IsListType() {
				i := 0
				for it := v.ElementIterator(); it.Next() && i < len(ets); i++ {
					_, e := it.Element()
					if n := walk(e, ets[i]); n > 0 {
						return n
					}
				}
			}
		}
		return 0
	}
	return walk(v, ty)
}

// formatNumberArgs returns, for a format spec, which arguments (0 for the
// first after the spec) its verbs read as numbers.
func formatNumberArgs(spec string) map[int]bool {
	out := map[int]bool{}
	next := 0
	for i := 0; i < len(spec); i++ {
		if spec[i] != '%' {
			continue
		}
		i++
		for i < len(spec) && strings.IndexByte("-+# 0123456789.", spec[i]) >= 0 {
			i++
		}
		if i < len(spec) && spec[i] == '[' {
			j := strings.IndexByte(spec[i:], ']')
			if j < 0 {
				break
			}
			var n int
			if _, err := fmt.Sscanf(spec[i+1:i+j], "%d", &n); err == nil && n > 0 && n < 1<<20 {
				next = n - 1
			}
			i += j + 1
			for i < len(spec) && strings.IndexByte("-+# 0123456789.", spec[i]) >= 0 {
				i++
			}
		}
		if i >= len(spec) || spec[i] == '%' {
			continue
		}
		if strings.IndexByte("dfeEgGxXob", spec[i]) >= 0 {
			out[next] = true
		}
		next++
	}
	return out
}

// jsonLongNumber returns the length of the first number of the JSON text s
// longer than maxNumberText, or 0 (also for text that is not JSON: the call
// reports that).
func jsonLongNumber(s string) int {
	if len(s) <= maxNumberText {
		return 0
	}
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	for {
		t, err := d.Token()
		if err == io.EOF || err != nil {
			return 0
		}
		if n, ok := t.(json.Number); ok && len(n) > maxNumberText {
			return len(n)
		}
	}
}

// numberTextArgs spends the budget when an argument of a call of name holds
// a string the function would read as a number that is too long to read.
func (b *budget) numberTextArgs(name string, params []function.Parameter, vp *function.Parameter, args []cty.Value) error {
	var numeric map[int]bool
	if (name == "format" || name == "formatlist") && len(args) > 0 {
		if s, _ := args[0].Unmark(); s.IsKnown() && !s.IsNull() && s.Type() == cty.String {
			numeric = formatNumberArgs(s.AsString())
		}
	}
	for i, a := range args {
		ty, ok := paramType(params, vp, i)
		if !ok {
			continue
		}
		switch {
		case name == "tonumber":
			ty = cty.Number
		case name == "jsondecode":
			if s, _ := a.Unmark(); s.IsKnown() && !s.IsNull() && s.Type() == cty.String {
				if n := jsonLongNumber(s.AsString()); n > 0 {
					return b.longNumberText(n)
				}
			}
			continue
		case numeric != nil && i > 0:
			if !numeric[i-1] {
				continue
			}
			ty = cty.Number
			if name == "formatlist" {
				if u, _ := a.Unmark(); u.Type().IsListType() || u.Type().IsTupleType() {
					ty = cty.List(cty.Number)
				}
			}
		}
		if n := longNumberString(a, ty); n > 0 {
			return b.longNumberText(n)
		}
	}
	return nil
}

// paramType is the type of the parameter that argument i of a call is
// passed to: one of params, then the variadic vp (if any); ok is false when
// there is none.
func paramType(params []function.Parameter, vp *function.Parameter, i int) (ty cty.Type, ok bool) {
	switch {
	case i < len(params):
		return params[i].Type, true
	case vp != nil:
		return vp.Type, true
	}
	return cty.NilType, false
}

// argsInRange checks the arguments of a function call that the function
// would convert to numbers: those of its number-typed parameters, and (for
// format and formatlist, whose verbs convert) every string that reads as a
// number.
func argsInRange(name string, params []function.Parameter, vp *function.Parameter, args []cty.Value) error {
	for i, a := range args {
		ty, ok := paramType(params, vp, i)
		if !ok {
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
			if a.Type() != cty.String || len(a.AsString()) > maxNumberText {
				continue // a longer one is read by %s (numberTextArgs)
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
// and their operands, its for-expressions and string templates charge the
// budget.
func (l *loader) prepare(n hclsyntax.Node) hcl.Diagnostics {
	diags := checkNumberLiterals(n)
	checkOperators(n)
	if l.budget != nil {
		checkOperands(n)
		l.budget.countForExprs(n)
	}
	return diags
}

// longNumberValue reports at subj, as a spent budget, a string of v that
// converting v to ty would read as a number and that is too long to read.
func (l *loader) longNumberValue(v cty.Value, ty cty.Type, subj *hcl.Range) bool {
	n := longNumberString(v, ty)
	if n == 0 {
		return false
	}
	err := l.budget.longNumberText(n)
	l.errorf(subj, LimitSummary, "%s.", capitalize(err.Error()))
	return true
}
