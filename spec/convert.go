package spec

import (
	"math/big"
	"sort"

	"github.com/zclconf/go-cty/cty"
)

// toGo turns a cty value into the plain Go values of the Stack contract:
// string, int64, float64, bool, []any, map[string]any, nil and Unknown.
// Marks must have been removed.
func toGo(v cty.Value) any {
	if !v.IsKnown() {
		return Unknown{}
	}
	if v.IsNull() {
		return nil
	}
	ty := v.Type()
	switch {
	case ty == cty.String:
		return v.AsString()
	case ty == cty.Number:
		return numberToGo(v.AsBigFloat())
	case ty == cty.Bool:
		return v.True()
	case ty.IsListType() || ty.IsSetType() || ty.IsTupleType():
		out := make([]any, 0, v.LengthInt())
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			out = append(out, toGo(e))
		}
		return out
	case ty.IsMapType() || ty.IsObjectType():
		out := make(map[string]any, v.LengthInt())
		for it := v.ElementIterator(); it.Next(); {
			k, e := it.Element()
			out[k.AsString()] = toGo(e)
		}
		return out
	}
	return nil
}

func numberToGo(f *big.Float) any {
	if f.IsInt() {
		if i, acc := f.Int64(); acc == big.Exact {
			return i
		}
	}
	x, _ := f.Float64()
	return x
}

// fromGo turns a plain Go value (as found in Prior) into a cty value.
func fromGo(v any) cty.Value {
	switch t := v.(type) {
	case nil:
		return cty.NullVal(cty.DynamicPseudoType)
	case Unknown:
		return cty.DynamicVal
	case string:
		return cty.StringVal(t)
	case bool:
		return cty.BoolVal(t)
	case int:
		return cty.NumberIntVal(int64(t))
	case int64:
		return cty.NumberIntVal(t)
	case float64:
		return cty.NumberFloatVal(t)
	case []string:
		if len(t) == 0 {
			return cty.ListValEmpty(cty.String)
		}
		out := make([]cty.Value, len(t))
		for i, e := range t {
			out[i] = cty.StringVal(e)
		}
		return cty.ListVal(out)
	case []any:
		if len(t) == 0 {
			return cty.EmptyTupleVal
		}
		out := make([]cty.Value, len(t))
		for i, e := range t {
			out[i] = fromGo(e)
		}
		return cty.TupleVal(out)
	case map[string]string:
		if len(t) == 0 {
			return cty.MapValEmpty(cty.String)
		}
		out := make(map[string]cty.Value, len(t))
		for k, e := range t {
			out[k] = cty.StringVal(e)
		}
		return cty.MapVal(out)
	case map[string]any:
		if len(t) == 0 {
			return cty.EmptyObjectVal
		}
		out := make(map[string]cty.Value, len(t))
		for k, e := range t {
			out[k] = fromGo(e)
		}
		return cty.ObjectVal(out)
	}
	return cty.DynamicVal
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
