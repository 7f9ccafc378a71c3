package spec

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"math/big"
	"net/url"
	"path"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// functions returns the function table of a template. file, fileexists and
// templatefile read only from the bundle.
func (l *loader) functions() map[string]function.Function {
	fs := map[string]function.Function{
		// numbers
		"abs": stdlib.AbsoluteFunc, "ceil": stdlib.CeilFunc, "floor": stdlib.FloorFunc,
		"log": stdlib.LogFunc, "max": stdlib.MaxFunc, "min": stdlib.MinFunc,
		"parseint": stdlib.ParseIntFunc, "pow": stdlib.PowFunc, "signum": stdlib.SignumFunc,
		"sum": sumFunc,
		// strings
		"chomp": stdlib.ChompFunc, "format": stdlib.FormatFunc, "formatlist": stdlib.FormatListFunc,
		"indent": stdlib.IndentFunc, "join": stdlib.JoinFunc, "lower": stdlib.LowerFunc,
		"upper": stdlib.UpperFunc, "regex": stdlib.RegexFunc, "regexall": stdlib.RegexAllFunc,
		"replace": replaceFunc, "split": stdlib.SplitFunc, "strrev": stdlib.ReverseFunc,
		"substr": stdlib.SubstrFunc, "title": stdlib.TitleFunc, "trim": stdlib.TrimFunc,
		"trimprefix": stdlib.TrimPrefixFunc, "trimsuffix": stdlib.TrimSuffixFunc,
		"trimspace": stdlib.TrimSpaceFunc, "startswith": startsWithFunc, "endswith": endsWithFunc,
		"strcontains": strContainsFunc,
		// collections
		"alltrue": allTrueFunc, "anytrue": anyTrueFunc, "chunklist": stdlib.ChunklistFunc,
		"coalesce": coalesceFunc, "coalescelist": stdlib.CoalesceListFunc,
		"compact": stdlib.CompactFunc, "concat": stdlib.ConcatFunc, "contains": stdlib.ContainsFunc,
		"distinct": stdlib.DistinctFunc, "element": stdlib.ElementFunc, "flatten": stdlib.FlattenFunc,
		"index": indexFunc, "keys": stdlib.KeysFunc, "length": lengthFunc, "lookup": lookupFunc,
		"merge": stdlib.MergeFunc, "range": stdlib.RangeFunc, "reverse": stdlib.ReverseListFunc,
		"setintersection": stdlib.SetIntersectionFunc, "setproduct": stdlib.SetProductFunc,
		"setsubtract": stdlib.SetSubtractFunc, "setunion": stdlib.SetUnionFunc,
		"slice": stdlib.SliceFunc, "sort": stdlib.SortFunc, "values": stdlib.ValuesFunc,
		"zipmap": stdlib.ZipmapFunc,
		// encoding and hashing
		"base64encode": base64EncodeFunc, "base64decode": base64DecodeFunc,
		"csvdecode": stdlib.CSVDecodeFunc, "jsonencode": stdlib.JSONEncodeFunc,
		"jsondecode": stdlib.JSONDecodeFunc, "yamlencode": yamlEncodeFunc, "urlencode": urlEncodeFunc,
		"md5": hashFunc(md5.New), "sha1": hashFunc(sha1.New), "sha256": hashFunc(sha256.New),
		"sha512": hashFunc(sha512.New),
		// time (pure: no clock)
		"formatdate": stdlib.FormatDateFunc, "timeadd": stdlib.TimeAddFunc,
		// networks
		"cidrhost": cidrHostFunc, "cidrnetmask": cidrNetmaskFunc, "cidrsubnet": cidrSubnetFunc,
		"cidrsubnets": cidrSubnetsFunc,
		// types
		"can": tryfunc.CanFunc, "try": tryfunc.TryFunc,
		"tobool": stdlib.MakeToFunc(cty.Bool), "tonumber": stdlib.MakeToFunc(cty.Number),
		"tostring": stdlib.MakeToFunc(cty.String),
		"tolist":   stdlib.MakeToFunc(cty.List(cty.DynamicPseudoType)),
		"toset":    stdlib.MakeToFunc(cty.Set(cty.DynamicPseudoType)),
		"tomap":    stdlib.MakeToFunc(cty.Map(cty.DynamicPseudoType)),
	}
	fs["file"] = l.fileFunc()
	fs["fileexists"] = l.fileExistsFunc()
	if l.budget != nil {
		l.budget.wrapFunctions(fs)
		fs[forCollection] = l.budget.forFunc()
		fs[templatePart] = l.budget.partFunc()
		fs[numberOperand] = l.budget.operandFunc()
		fs[comparedOperand] = l.budget.comparedFunc()
	}
	inner := make(map[string]function.Function, len(fs))
	for k, v := range fs {
		inner[k] = v
	}
	fs["templatefile"] = l.templateFileFunc(inner) // a template cannot call templatefile
	if l.budget != nil {
		fs["templatefile"] = l.budget.wrap("templatefile", fs["templatefile"])
	}
	return fs
}

// bundlePath resolves p against the bundle root and refuses paths that leave it.
func bundlePath(p string) (string, error) {
	if p == "" {
		return "", fmt.Errorf("the path is empty")
	}
	if strings.HasPrefix(p, "/") || strings.Contains(p, "\\") || (len(p) > 1 && p[1] == ':') {
		return "", fmt.Errorf("%q is an absolute path; file() and templatefile() read only files inside the template directory", p)
	}
	c := path.Clean(p)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("%q leaves the template directory; file() and templatefile() read only files inside it", p)
	}
	return c, nil
}

func (l *loader) readBundle(p string) (string, error) {
	c, err := bundlePath(p)
	if err != nil {
		return "", err
	}
	b, ok := l.bundle[c]
	if !ok {
		return "", fmt.Errorf("no file %q in the template directory", p)
	}
	if !utf8.Valid(b) {
		return "", fmt.Errorf("file %q is not valid UTF-8", p)
	}
	return string(b), nil
}

func (l *loader) fileFunc() function.Function {
	return unaryFunc("Reads a file of the template directory as a string.", "path", l.readBundle)
}

// stringResultFunc is a function of params that returns a string: impl's, or an
// unknown string with impl's error.
func stringResultFunc(description string, params []function.Parameter, impl func(args []cty.Value) (string, error)) function.Function {
	return function.New(&function.Spec{
		Description: description,
		Params:      params,
		Type:        function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			s, err := impl(args)
			if err != nil {
				return cty.UnknownVal(cty.String), err
			}
			return cty.StringVal(s), nil
		},
	})
}

func (l *loader) fileExistsFunc() function.Function {
	return function.New(&function.Spec{
		Description: "Reports whether a file exists in the template directory.",
		Params:      []function.Parameter{{Name: "path", Type: cty.String}},
		Type:        function.StaticReturnType(cty.Bool),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			c, err := bundlePath(args[0].AsString())
			if err != nil {
				return cty.UnknownVal(cty.Bool), function.NewArgError(0, err)
			}
			_, ok := l.bundle[c]
			return cty.BoolVal(ok), nil
		},
	})
}

type parsedTemplate struct {
	expr  hcl.Expression
	vars  []hcl.Traversal
	diags hcl.Diagnostics
}

func (l *loader) templateFileFunc(funcs map[string]function.Function) function.Function {
	return function.New(&function.Spec{
		Description: "Renders a template file of the template directory with the given variables.",
		Params: []function.Parameter{
			{Name: "path", Type: cty.String},
			{Name: "vars", Type: cty.DynamicPseudoType},
		},
		Type: function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			p := args[0].AsString()
			c, err := bundlePath(p)
			if err != nil {
				return cty.UnknownVal(cty.String), function.NewArgError(0, err)
			}
			t, ok := l.templates[c]
			if !ok {
				src, err := l.readBundle(c)
				if err != nil {
					return cty.UnknownVal(cty.String), function.NewArgError(0, err)
				}
				expr, diags := hclsyntax.ParseTemplate([]byte(src), l.display(c), hcl.InitialPos)
				t = &parsedTemplate{expr: expr, diags: diags}
				if !diags.HasErrors() {
					t.vars = expr.Variables()
					t.diags = append(t.diags, l.prepare(expr)...)
				}
				l.templates[c] = t
			}
			if t.diags.HasErrors() {
				return cty.UnknownVal(cty.String), function.NewArgErrorf(0, "template %q: %s", p, t.diags.Error())
			}
			vars := args[1]
			ty := vars.Type()
			if !(ty.IsObjectType() || ty.IsMapType()) || vars.IsNull() {
				return cty.UnknownVal(cty.String), function.NewArgErrorf(1, "vars must be an object, such as { index = count.index }")
			}
			if !vars.IsWhollyKnown() {
				return cty.UnknownVal(cty.String), nil
			}
			ctxVars := map[string]cty.Value{}
			for it := vars.ElementIterator(); it.Next(); {
				k, v := it.Element()
				if !hclsyntax.ValidIdentifier(k.AsString()) {
					return cty.UnknownVal(cty.String), function.NewArgErrorf(1, "vars key %q is not a valid identifier", k.AsString())
				}
				ctxVars[k.AsString()] = v
			}
			for _, tr := range t.vars {
				if _, ok := ctxVars[tr.RootName()]; !ok {
					r := tr.SourceRange()
					return cty.UnknownVal(cty.String), function.NewArgErrorf(1, "template %q uses %q (line %d), which vars does not define", p, tr.RootName(), r.Start.Line)
				}
			}
			if l.budget != nil {
				l.budget.track(ctxVars)
			}
			v, diags := t.expr.Value(&hcl.EvalContext{Variables: ctxVars, Functions: funcs})
			if l.budget != nil && l.budget.spent() {
				return cty.UnknownVal(cty.String), l.budget.err
			}
			if diags.HasErrors() {
				return cty.UnknownVal(cty.String), function.NewArgErrorf(0, "template %q: %s", p, diags.Error())
			}
			v, err = convert.Convert(v, cty.String)
			if err != nil {
				return cty.UnknownVal(cty.String), function.NewArgErrorf(0, "template %q did not produce a string: %s", p, err)
			}
			return v, nil
		},
	})
}

var lengthFunc = function.New(&function.Spec{
	Description: "Returns the number of elements of a collection or characters of a string.",
	Params:      []function.Parameter{{Name: "value", Type: cty.DynamicPseudoType, AllowDynamicType: true, AllowUnknown: true}},
	Type:        function.StaticReturnType(cty.Number),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		v := args[0]
		ty := v.Type()
		switch {
		case ty == cty.DynamicPseudoType:
			return cty.UnknownVal(cty.Number), nil
		case ty == cty.String:
			if !v.IsKnown() {
				return cty.UnknownVal(cty.Number), nil
			}
			return stdlib.Strlen(v)
		case ty.IsObjectType():
			return cty.NumberIntVal(int64(len(ty.AttributeTypes()))), nil
		case ty.IsTupleType():
			return cty.NumberIntVal(int64(len(ty.TupleElementTypes()))), nil
		case ty.IsListType() || ty.IsSetType() || ty.IsMapType():
			return stdlib.Length(v)
		}
		return cty.UnknownVal(cty.Number), function.NewArgErrorf(0, "length needs a string, list, set, map, tuple or object, not %s", ty.FriendlyName())
	},
})

var lookupFunc = function.New(&function.Spec{
	Description: "Returns the element of a map with the given key, or the default.",
	Params: []function.Parameter{
		{Name: "map", Type: cty.DynamicPseudoType},
		{Name: "key", Type: cty.String},
	},
	VarParam: &function.Parameter{Name: "default", Type: cty.DynamicPseudoType, AllowNull: true},
	Type: func(args []cty.Value) (cty.Type, error) {
		if len(args) > 3 {
			return cty.NilType, fmt.Errorf("lookup takes 2 or 3 arguments")
		}
		if len(args) == 3 {
			return stdlib.LookupFunc.ReturnType([]cty.Type{args[0].Type(), args[1].Type(), args[2].Type()})
		}
		ty := args[0].Type()
		switch {
		case ty.IsMapType():
			return ty.ElementType(), nil
		case ty.IsObjectType() && args[1].IsKnown() && ty.HasAttribute(args[1].AsString()):
			return ty.AttributeType(args[1].AsString()), nil
		}
		return cty.DynamicPseudoType, nil
	},
	Impl: func(args []cty.Value, retType cty.Type) (cty.Value, error) {
		if len(args) == 3 {
			return stdlib.LookupFunc.Call(args)
		}
		m, k := args[0], args[1].AsString()
		ty := m.Type()
		if !(ty.IsMapType() || ty.IsObjectType()) {
			return cty.DynamicVal, function.NewArgErrorf(0, "lookup needs a map or an object")
		}
		if ty.IsObjectType() {
			if !ty.HasAttribute(k) {
				return cty.DynamicVal, function.NewArgErrorf(1, "no key %q and no default given", k)
			}
			return m.GetAttr(k), nil
		}
		if m.HasIndex(cty.StringVal(k)).False() {
			return cty.DynamicVal, function.NewArgErrorf(1, "no key %q and no default given", k)
		}
		return m.Index(cty.StringVal(k)), nil
	},
})

var replaceFunc = function.New(&function.Spec{
	Description: "Replaces substr in str; a substr written /like this/ is a regular expression.",
	Params: []function.Parameter{
		{Name: "str", Type: cty.String}, {Name: "substr", Type: cty.String}, {Name: "replace", Type: cty.String},
	},
	Type: function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		sub := args[1].AsString()
		if len(sub) > 1 && strings.HasPrefix(sub, "/") && strings.HasSuffix(sub, "/") {
			re, err := regexp.Compile(sub[1 : len(sub)-1])
			if err != nil {
				return cty.UnknownVal(cty.String), function.NewArgError(1, err)
			}
			return cty.StringVal(re.ReplaceAllString(args[0].AsString(), args[2].AsString())), nil
		}
		return cty.StringVal(strings.ReplaceAll(args[0].AsString(), sub, args[2].AsString())), nil
	},
})

var indexFunc = function.New(&function.Spec{
	Description: "Returns the index of the first element of list equal to value.",
	Params: []function.Parameter{
		{Name: "list", Type: cty.DynamicPseudoType}, {Name: "value", Type: cty.DynamicPseudoType},
	},
	Type: function.StaticReturnType(cty.Number),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		l := args[0]
		if !(l.Type().IsListType() || l.Type().IsTupleType()) {
			return cty.UnknownVal(cty.Number), function.NewArgErrorf(0, "index needs a list or tuple")
		}
		if !l.IsWhollyKnown() {
			return cty.UnknownVal(cty.Number), nil
		}
		for it := l.ElementIterator(); it.Next(); {
			i, e := it.Element()
			eq, err := stdlib.Equal(e, args[1])
			if err != nil {
				continue
			}
			if !eq.IsKnown() {
				return cty.UnknownVal(cty.Number), nil
			}
			if eq.True() {
				return i, nil
			}
		}
		return cty.UnknownVal(cty.Number), function.NewArgErrorf(1, "the value is not in the list")
	},
})

func boolListFunc(desc string, all bool) function.Function {
	return function.New(&function.Spec{
		Description: desc,
		Params:      []function.Parameter{{Name: "list", Type: cty.List(cty.Bool)}},
		Type:        function.StaticReturnType(cty.Bool),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			for it := args[0].ElementIterator(); it.Next(); {
				_, e := it.Element()
				if !e.IsKnown() {
					return cty.UnknownVal(cty.Bool), nil
				}
				if e.IsNull() {
					continue
				}
				if e.True() != all {
					return cty.BoolVal(!all), nil
				}
			}
			return cty.BoolVal(all), nil
		},
	})
}

var (
	allTrueFunc = boolListFunc("Reports whether every element of the list is true.", true)
	anyTrueFunc = boolListFunc("Reports whether any element of the list is true.", false)
)

var sumFunc = function.New(&function.Spec{
	Description: "Returns the sum of a list of numbers.",
	Params:      []function.Parameter{{Name: "list", Type: cty.List(cty.Number)}},
	Type:        function.StaticReturnType(cty.Number),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		s := new(big.Float)
		for it := args[0].ElementIterator(); it.Next(); {
			_, e := it.Element()
			if !e.IsKnown() {
				return cty.UnknownVal(cty.Number), nil
			}
			if e.IsNull() {
				return cty.UnknownVal(cty.Number), function.NewArgErrorf(0, "sum cannot add null")
			}
			s.Add(s, e.AsBigFloat())
		}
		return cty.NumberVal(s), nil
	},
})

func stringFunc(desc string, f func(a, b string) cty.Value, ret cty.Type) function.Function {
	return function.New(&function.Spec{
		Description: desc,
		Params:      []function.Parameter{{Name: "str", Type: cty.String}, {Name: "other", Type: cty.String}},
		Type:        function.StaticReturnType(ret),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			return f(args[0].AsString(), args[1].AsString()), nil
		},
	})
}

var (
	startsWithFunc = stringFunc("Reports whether str starts with prefix.",
		func(a, b string) cty.Value { return cty.BoolVal(strings.HasPrefix(a, b)) }, cty.Bool)
	endsWithFunc = stringFunc("Reports whether str ends with suffix.",
		func(a, b string) cty.Value { return cty.BoolVal(strings.HasSuffix(a, b)) }, cty.Bool)
	strContainsFunc = stringFunc("Reports whether str contains substr.",
		func(a, b string) cty.Value { return cty.BoolVal(strings.Contains(a, b)) }, cty.Bool)
)

func unaryStringFunc(desc string, f func(string) (string, error)) function.Function {
	return unaryFunc(desc, "str", f)
}

// unaryFunc is a function of one string argument, named param, that f maps
// to a string; f's error is an error of the argument.
func unaryFunc(desc, param string, f func(string) (string, error)) function.Function {
	return stringResultFunc(desc, []function.Parameter{{Name: param, Type: cty.String}},
		func(args []cty.Value) (string, error) {
			s, err := f(args[0].AsString())
			if err != nil {
				return "", function.NewArgError(0, err)
			}
			return s, nil
		})
}

var (
	base64EncodeFunc = unaryStringFunc("Encodes a string as base64.", func(s string) (string, error) {
		return base64.StdEncoding.EncodeToString([]byte(s)), nil
	})
	base64DecodeFunc = unaryStringFunc("Decodes a base64 string.", func(s string) (string, error) {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return "", fmt.Errorf("not valid base64: %w", err)
		}
		if !utf8.Valid(b) {
			return "", fmt.Errorf("the decoded bytes are not valid UTF-8")
		}
		return string(b), nil
	})
	urlEncodeFunc = unaryStringFunc("Percent-encodes a string for a URL query.", func(s string) (string, error) {
		return url.QueryEscape(s), nil
	})
)

func hashFunc(h func() hash.Hash) function.Function {
	return unaryStringFunc("Returns the hex digest of a string.", func(s string) (string, error) {
		d := h()
		d.Write([]byte(s))
		return hex.EncodeToString(d.Sum(nil)), nil
	})
}

// coalesceFunc returns the first argument that is neither null nor an empty
// string, as Terraform's coalesce does.
var coalesceFunc = function.New(&function.Spec{
	Description: "Returns the first argument that is neither null nor an empty string.",
	VarParam:    &function.Parameter{Name: "vals", Type: cty.DynamicPseudoType, AllowNull: true, AllowUnknown: true, AllowDynamicType: true},
	Type: func(args []cty.Value) (cty.Type, error) {
		tys := make([]cty.Type, len(args))
		for i, a := range args {
			tys[i] = a.Type()
		}
		return stdlib.CoalesceFunc.ReturnType(tys)
	},
	Impl: func(args []cty.Value, retType cty.Type) (cty.Value, error) {
		for _, a := range args {
			if !a.IsKnown() {
				return cty.UnknownVal(retType), nil
			}
			if a.IsNull() {
				continue
			}
			cv, err := convert.Convert(a, retType)
			if err != nil {
				return cty.UnknownVal(retType), err
			}
			if cv.Type() == cty.String && cv.AsString() == "" {
				continue
			}
			return cv, nil
		}
		return cty.UnknownVal(retType), fmt.Errorf("every argument is null or empty")
	},
})
