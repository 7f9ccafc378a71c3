package planner

// The storage codec: State, ResourceState, Change and Result encode to JSON
// and back to exactly the same Go values, so the raftstore can keep them.
// Attribute values are tagged, because plain JSON loses the difference
// between int64 and float64 and has no unknown:
//
//	null                  nil
//	{"s": "text"}         string
//	{"i": 42}             int64 (also what an int decodes to)
//	{"f": 1.5}            float64
//	{"b": true}           bool
//	{"u": true}           spec.Unknown
//	{"l": [...]}          []any ({"l": null} is a nil slice)
//	{"m": {...}}          map[string]any ({"m": null} is a nil map)
//
// This is not the plan JSON users see (see RenderJSON and docs/plan-json.md).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/kiln-dev/kiln/spec"
)

// codecVersion is written in every State and Result; decoding refuses others.
const codecVersion = 1

// value wraps one attribute value for the tagged encoding.
type value struct{ v any }

func (t value) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	if err := encodeValue(&b, t.v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func encodeValue(b *bytes.Buffer, v any) error {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case string:
		b.WriteString(`{"s":`)
		s, err := json.Marshal(x)
		if err != nil {
			return err
		}
		b.Write(s)
		b.WriteByte('}')
	case int64:
		b.WriteString(`{"i":`)
		b.WriteString(strconv.FormatInt(x, 10))
		b.WriteByte('}')
	case int:
		b.WriteString(`{"i":`)
		b.WriteString(strconv.FormatInt(int64(x), 10))
		b.WriteByte('}')
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("encode value: %v has no JSON form", x)
		}
		b.WriteString(`{"f":`)
		b.WriteString(strconv.FormatFloat(x, 'g', -1, 64))
		b.WriteByte('}')
	case bool:
		if x {
			b.WriteString(`{"b":true}`)
		} else {
			b.WriteString(`{"b":false}`)
		}
	case spec.Unknown:
		b.WriteString(`{"u":true}`)
	case []any:
		if x == nil {
			b.WriteString(`{"l":null}`)
			return nil
		}
		b.WriteString(`{"l":[`)
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := encodeValue(b, e); err != nil {
				return err
			}
		}
		b.WriteString("]}")
	case map[string]any:
		if x == nil {
			b.WriteString(`{"m":null}`)
			return nil
		}
		b.WriteString(`{"m":{`)
		for i, k := range sortedKeys(x) {
			if i > 0 {
				b.WriteByte(',')
			}
			ks, err := json.Marshal(k)
			if err != nil {
				return err
			}
			b.Write(ks)
			b.WriteByte(':')
			if err := encodeValue(b, x[k]); err != nil {
				return err
			}
		}
		b.WriteString("}}")
	default:
		return fmt.Errorf("encode value: unsupported type %T", v)
	}
	return nil
}

func (t *value) UnmarshalJSON(data []byte) error {
	v, err := decodeValue(data)
	if err != nil {
		return err
	}
	t.v = v
	return nil
}

func decodeValue(data []byte) (any, error) {
	data = bytes.TrimSpace(data)
	if bytes.Equal(data, []byte("null")) {
		return nil, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		return nil, fmt.Errorf("decode value: %w", err)
	}
	if len(obj) != 1 {
		return nil, fmt.Errorf("decode value: want one tag, got %s", data)
	}
	for tag, raw := range obj {
		isNull := bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
		switch tag {
		case "s":
			var s string
			err := json.Unmarshal(raw, &s)
			return s, err
		case "i":
			i, err := strconv.ParseInt(string(bytes.TrimSpace(raw)), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("decode value: %w", err)
			}
			return i, nil
		case "f":
			f, err := strconv.ParseFloat(string(bytes.TrimSpace(raw)), 64)
			if err != nil {
				return nil, fmt.Errorf("decode value: %w", err)
			}
			return f, nil
		case "b":
			var b bool
			err := json.Unmarshal(raw, &b)
			return b, err
		case "u":
			return spec.Unknown{}, nil
		case "l":
			if isNull {
				return []any(nil), nil
			}
			var elems []json.RawMessage
			if err := json.Unmarshal(raw, &elems); err != nil {
				return nil, fmt.Errorf("decode value: %w", err)
			}
			l := make([]any, len(elems))
			for i, e := range elems {
				v, err := decodeValue(e)
				if err != nil {
					return nil, err
				}
				l[i] = v
			}
			return l, nil
		case "m":
			if isNull {
				return map[string]any(nil), nil
			}
			var elems map[string]json.RawMessage
			if err := json.Unmarshal(raw, &elems); err != nil {
				return nil, fmt.Errorf("decode value: %w", err)
			}
			m := make(map[string]any, len(elems))
			for k, e := range elems {
				v, err := decodeValue(e)
				if err != nil {
					return nil, err
				}
				m[k] = v
			}
			return m, nil
		default:
			return nil, fmt.Errorf("decode value: unknown tag %q", tag)
		}
	}
	panic("unreachable")
}

// mapValues applies f to every value of m; nil stays nil.
func mapValues[V, W any](m map[string]V, f func(V) W) map[string]W {
	if m == nil {
		return nil
	}
	out := make(map[string]W, len(m))
	for k, v := range m {
		out[k] = f(v)
	}
	return out
}

func wrapValues(m map[string]any) map[string]value { return mapValues(m, wrapValue) }

func unwrapValues(m map[string]value) map[string]any { return mapValues(m, unwrapValue) }

// MapValue rebuilds an attribute value with leaf applied to every part of
// it that is not a []any or map[string]any, at any depth; nil lists and maps
// stay nil.
func MapValue(v any, leaf func(any) any) any {
	switch x := v.(type) {
	case []any:
		if x == nil {
			return x
		}
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = MapValue(e, leaf)
		}
		return out
	case map[string]any:
		if x == nil {
			return x
		}
		return mapValues(x, func(e any) any { return MapValue(e, leaf) })
	}
	return leaf(v)
}

// marshalMap encodes m with its values wrapped by wrap; nil is null.
func marshalMap[V, W any](m map[string]V, wrap func(V) W) ([]byte, error) {
	if m == nil {
		return []byte("null"), nil
	}
	return json.Marshal(mapValues(m, wrap))
}

// unmarshalMap decodes what marshalMap wrote into *dst.
func unmarshalMap[W, V any](data []byte, dst *map[string]V, unwrap func(W) V) error {
	var w map[string]W
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	*dst = mapValues(w, unwrap)
	return nil
}

// Values is a map of attribute values that encodes to JSON with every
// value tagged (as above) and decodes back to the same Go values: for wire
// types that carry attributes (see api's host operations).
type Values map[string]any

// MarshalJSON encodes the values tagged; nil is null.
func (v Values) MarshalJSON() ([]byte, error) { return marshalMap(v, wrapValue) }

// UnmarshalJSON decodes what MarshalJSON wrote.
func (v *Values) UnmarshalJSON(data []byte) error {
	return unmarshalMap(data, (*map[string]any)(v), unwrapValue)
}

func wrapValue(v any) value   { return value{v} }
func unwrapValue(v value) any { return v.v }

type stateJSON struct {
	Version   int             `json:"v"`
	Stack     string          `json:"stack"`
	Serial    uint64          `json:"serial"`
	Resources []ResourceState `json:"resources"`
}

// MarshalJSON encodes the state for storage.
func (s State) MarshalJSON() ([]byte, error) {
	return json.Marshal(stateJSON{codecVersion, s.Stack, s.Serial, s.Resources})
}

// UnmarshalJSON decodes what MarshalJSON wrote.
func (s *State) UnmarshalJSON(data []byte) error {
	var w stateJSON
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	if w.Version != codecVersion {
		return fmt.Errorf("decode state: codec version %d, want %d", w.Version, codecVersion)
	}
	*s = State{Stack: w.Stack, Serial: w.Serial, Resources: w.Resources}
	return nil
}

type resourceStateJSON struct {
	Address        string           `json:"address"`
	Kind           string           `json:"kind"`
	Attrs          map[string]value `json:"attrs"`
	Computed       map[string]value `json:"computed"`
	DependsOn      []string         `json:"depends_on"`
	Sensitive      map[string]bool  `json:"sensitive"`
	PreventDestroy bool             `json:"prevent_destroy"`
}

// MarshalJSON encodes the resource for storage.
func (r ResourceState) MarshalJSON() ([]byte, error) {
	return json.Marshal(resourceStateJSON{
		Address:        r.Address,
		Kind:           r.Kind,
		Attrs:          wrapValues(r.Attrs),
		Computed:       wrapValues(r.Computed),
		DependsOn:      r.DependsOn,
		Sensitive:      r.Sensitive,
		PreventDestroy: r.PreventDestroy,
	})
}

// UnmarshalJSON decodes what MarshalJSON wrote.
func (r *ResourceState) UnmarshalJSON(data []byte) error {
	var w resourceStateJSON
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	*r = ResourceState{
		Address:        w.Address,
		Kind:           w.Kind,
		Attrs:          unwrapValues(w.Attrs),
		Computed:       unwrapValues(w.Computed),
		DependsOn:      w.DependsOn,
		Sensitive:      w.Sensitive,
		PreventDestroy: w.PreventDestroy,
	}
	return nil
}

type changeJSON struct {
	Address             string           `json:"address"`
	Kind                string           `json:"kind"`
	Action              string           `json:"action"`
	Before              map[string]value `json:"before"`
	After               map[string]value `json:"after"`
	Changed             []string         `json:"changed"`
	ReplaceBecause      []string         `json:"replace_because"`
	ReplaceAttrs        []string         `json:"replace_attrs"`
	CreateBeforeDestroy bool             `json:"create_before_destroy"`
	DependsOn           []string         `json:"depends_on"`
	Sensitive           map[string]bool  `json:"sensitive"`
}

// MarshalJSON encodes the change for storage.
func (c Change) MarshalJSON() ([]byte, error) {
	return json.Marshal(changeJSON{
		Address:             c.Address,
		Kind:                c.Kind,
		Action:              c.Action.String(),
		Before:              wrapValues(c.Before),
		After:               wrapValues(c.After),
		Changed:             c.Changed,
		ReplaceBecause:      c.ReplaceBecause,
		ReplaceAttrs:        c.ReplaceAttrs,
		CreateBeforeDestroy: c.CreateBeforeDestroy,
		DependsOn:           c.DependsOn,
		Sensitive:           c.Sensitive,
	})
}

// UnmarshalJSON decodes what MarshalJSON wrote.
func (c *Change) UnmarshalJSON(data []byte) error {
	var w changeJSON
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	a, err := ParseAction(w.Action)
	if err != nil {
		return err
	}
	*c = Change{
		Address:             w.Address,
		Kind:                w.Kind,
		Action:              a,
		Before:              unwrapValues(w.Before),
		After:               unwrapValues(w.After),
		Changed:             w.Changed,
		ReplaceBecause:      w.ReplaceBecause,
		ReplaceAttrs:        w.ReplaceAttrs,
		CreateBeforeDestroy: w.CreateBeforeDestroy,
		DependsOn:           w.DependsOn,
		Sensitive:           w.Sensitive,
	}
	return nil
}

// ParseAction is the inverse of Action.String.
func ParseAction(s string) (Action, error) {
	for a := NoOp; a <= Delete; a++ {
		if a.String() == s {
			return a, nil
		}
	}
	return NoOp, fmt.Errorf("unknown action %q", s)
}

type outputJSON struct {
	Name        string `json:"name"`
	Value       value  `json:"value"`
	Sensitive   bool   `json:"sensitive"`
	Description string `json:"description"`
}

type resultJSON struct {
	Version int                   `json:"v"`
	Stack   string                `json:"stack"`
	Serial  uint64                `json:"serial"`
	Changes []Change              `json:"changes"`
	Outputs map[string]outputJSON `json:"outputs"`
}

// MarshalJSON encodes the plan for storage.
func (p Result) MarshalJSON() ([]byte, error) {
	return json.Marshal(resultJSON{Version: codecVersion, Stack: p.Stack, Serial: p.Serial, Changes: p.Changes,
		Outputs: mapValues(p.Outputs, wrapOutput)})
}

// UnmarshalJSON decodes what MarshalJSON wrote.
func (p *Result) UnmarshalJSON(data []byte) error {
	var w resultJSON
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	if w.Version != codecVersion {
		return fmt.Errorf("decode plan: codec version %d, want %d", w.Version, codecVersion)
	}
	*p = Result{Stack: w.Stack, Serial: w.Serial, Changes: w.Changes, Outputs: mapValues(w.Outputs, unwrapOutput)}
	return nil
}

func wrapOutput(o spec.Output) outputJSON {
	return outputJSON{o.Name, value{o.Value}, o.Sensitive, o.Description}
}

func unwrapOutput(o outputJSON) spec.Output {
	return spec.Output{Name: o.Name, Value: o.Value.v, Sensitive: o.Sensitive, Description: o.Description}
}

// Outputs are a stack's outputs by name, encoded as in a Result (values
// tagged): for wire and storage types that carry outputs without a plan.
type Outputs map[string]spec.Output

// MarshalJSON encodes the outputs as a Result does; nil is null.
func (o Outputs) MarshalJSON() ([]byte, error) { return marshalMap(o, wrapOutput) }

// UnmarshalJSON decodes what MarshalJSON wrote.
func (o *Outputs) UnmarshalJSON(data []byte) error {
	return unmarshalMap(data, (*map[string]spec.Output)(o), unwrapOutput)
}
