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

func wrapValues(m map[string]any) map[string]value {
	if m == nil {
		return nil
	}
	out := make(map[string]value, len(m))
	for k, v := range m {
		out[k] = value{v}
	}
	return out
}

func unwrapValues(m map[string]value) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v.v
	}
	return out
}

// Values is a map of attribute values that encodes to JSON with every
// value tagged (as above) and decodes back to the same Go values: for wire
// types that carry attributes (see api's host operations).
type Values map[string]any

// MarshalJSON encodes the values tagged; nil is null.
func (v Values) MarshalJSON() ([]byte, error) {
	if v == nil {
		return []byte("null"), nil
	}
	return json.Marshal(wrapValues(v))
}

// UnmarshalJSON decodes what MarshalJSON wrote.
func (v *Values) UnmarshalJSON(data []byte) error {
	var w map[string]value
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	*v = unwrapValues(w)
	return nil
}

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
		Outputs: wrapOutputs(p.Outputs)})
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
	*p = Result{Stack: w.Stack, Serial: w.Serial, Changes: w.Changes, Outputs: unwrapOutputs(w.Outputs)}
	return nil
}

func wrapOutputs(m map[string]spec.Output) map[string]outputJSON {
	if m == nil {
		return nil
	}
	out := make(map[string]outputJSON, len(m))
	for k, o := range m {
		out[k] = outputJSON{o.Name, value{o.Value}, o.Sensitive, o.Description}
	}
	return out
}

func unwrapOutputs(m map[string]outputJSON) map[string]spec.Output {
	if m == nil {
		return nil
	}
	out := make(map[string]spec.Output, len(m))
	for k, o := range m {
		out[k] = spec.Output{Name: o.Name, Value: o.Value.v, Sensitive: o.Sensitive, Description: o.Description}
	}
	return out
}

// Outputs are a stack's outputs by name, encoded as in a Result (values
// tagged): for wire and storage types that carry outputs without a plan.
type Outputs map[string]spec.Output

// MarshalJSON encodes the outputs as a Result does; nil is null.
func (o Outputs) MarshalJSON() ([]byte, error) {
	if o == nil {
		return []byte("null"), nil
	}
	return json.Marshal(wrapOutputs(o))
}

// UnmarshalJSON decodes what MarshalJSON wrote.
func (o *Outputs) UnmarshalJSON(data []byte) error {
	var w map[string]outputJSON
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	*o = unwrapOutputs(w)
	return nil
}
