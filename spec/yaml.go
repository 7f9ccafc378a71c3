package spec

import (
	"encoding/json"
	"regexp"
	"strings"

	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// yamlencode is a small deterministic YAML emitter: map keys sorted, block
// style, strings quoted whenever a YAML reader could take them for something
// else, multi-line strings as literal blocks. Its output is YAML 1.2 and 1.1
// safe (cloud-init reads YAML 1.1).

var yamlPlain = regexp.MustCompile(`^[A-Za-z_/][A-Za-z0-9_./@+-]*$`)

var yamlReserved = map[string]bool{
	"y": true, "n": true, "yes": true, "no": true, "on": true, "off": true,
	"true": true, "false": true, "null": true, "~": true,
}

func yamlString(s string) string {
	if yamlPlain.MatchString(s) && !yamlReserved[strings.ToLower(s)] {
		return s
	}
	b, _ := json.Marshal(s) // a JSON string is a valid YAML double-quoted scalar
	return string(b)
}

func yamlScalar(v cty.Value) (string, bool) {
	if v.IsNull() {
		return "null", true
	}
	switch v.Type() {
	case cty.String:
		return yamlString(v.AsString()), true
	case cty.Number:
		return v.AsBigFloat().Text('f', -1), true
	case cty.Bool:
		if v.True() {
			return "true", true
		}
		return "false", true
	}
	return "", false
}

func isSeq(t cty.Type) bool { return t.IsListType() || t.IsSetType() || t.IsTupleType() }

func yamlEncode(b *strings.Builder, v cty.Value, indent string) {
	ty := v.Type()
	switch {
	case v.IsNull():
		b.WriteString("null\n")
	case isSeq(ty):
		if v.LengthInt() == 0 {
			b.WriteString("[]\n")
			return
		}
		first := true
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			if !first {
				b.WriteString(indent)
			}
			first = false
			b.WriteString("- ")
			yamlValue(b, e, indent+"  ", true)
		}
	case ty.IsMapType() || ty.IsObjectType():
		if v.LengthInt() == 0 {
			b.WriteString("{}\n")
			return
		}
		first := true
		for it := v.ElementIterator(); it.Next(); { // cty iterates map keys in sorted order
			k, e := it.Element()
			if !first {
				b.WriteString(indent)
			}
			first = false
			b.WriteString(yamlString(k.AsString()))
			b.WriteString(":")
			yamlValue(b, e, indent, false)
		}
	default:
		s, _ := yamlScalar(v)
		b.WriteString(s)
		b.WriteString("\n")
	}
}

// yamlValue writes a value that follows "- " (inSeq) or "key:".
func yamlValue(b *strings.Builder, v cty.Value, indent string, inSeq bool) {
	ty := v.Type()
	sep := " "
	if inSeq {
		sep = ""
	}
	if s, ok := yamlScalar(v); ok {
		if !v.IsNull() && ty == cty.String && strings.Contains(v.AsString(), "\n") && literalOK(v.AsString()) {
			str := v.AsString()
			chomp := "|-"
			if strings.HasSuffix(str, "\n") {
				chomp = "|"
				str = strings.TrimSuffix(str, "\n")
			}
			b.WriteString(sep + chomp + "\n")
			in := indent + "  "
			if inSeq {
				in = indent
			}
			for _, line := range strings.Split(str, "\n") {
				if line != "" {
					b.WriteString(in)
					b.WriteString(line)
				}
				b.WriteString("\n")
			}
			return
		}
		b.WriteString(sep + s + "\n")
		return
	}
	empty := v.LengthInt() == 0
	switch {
	case empty || inSeq:
		if !inSeq {
			b.WriteString(" ")
		}
		yamlEncode(b, v, indent)
	case isSeq(ty):
		b.WriteString("\n" + indent)
		yamlEncode(b, v, indent)
	default:
		b.WriteString("\n" + indent + "  ")
		yamlEncode(b, v, indent+"  ")
	}
}

// literalOK reports whether s can be written as a literal block scalar and read
// back unchanged.
func literalOK(s string) bool {
	if strings.ContainsAny(s, "\r\t") || strings.HasPrefix(s, " ") || strings.HasSuffix(s, "\n\n") {
		return false
	}
	for _, r := range s {
		if r < 0x20 && r != '\n' {
			return false
		}
	}
	for _, line := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		if strings.HasSuffix(line, " ") {
			return false
		}
	}
	return true
}

var yamlEncodeFunc = function.New(&function.Spec{
	Description: "Returns the value encoded as YAML.",
	Params:      []function.Parameter{{Name: "value", Type: cty.DynamicPseudoType, AllowNull: true}},
	Type:        function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		if !args[0].IsWhollyKnown() {
			return cty.UnknownVal(cty.String), nil
		}
		var b strings.Builder
		yamlEncode(&b, args[0], "")
		return cty.StringVal(b.String()), nil
	},
})
