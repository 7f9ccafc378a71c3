package raftstore

import (
	"encoding/json"
	"fmt"

	"github.com/kiln-dev/kiln/planner"
	"github.com/kiln-dev/kiln/spec"
)

// Values and Outputs travel through the log in the planner's tagged storage
// codec, so an int64 stays an int64 (plain JSON would make it a float64) and
// an unknown stays unknown: every node decodes exactly what the leader
// proposed. They borrow the codec of planner.ResourceState (its "attrs") and
// planner.Result (its "outputs") rather than keep a second copy of it; the
// round-trip test in values_test.go notices if that ever changes.

// Values are attribute values: string, int64, float64, bool, []any,
// map[string]any, spec.Unknown or nil.
type Values map[string]any

// Outputs are a stack's outputs by name.
type Outputs map[string]spec.Output

// MarshalJSON encodes the values with the planner's tagged codec.
func (v Values) MarshalJSON() ([]byte, error) {
	if v == nil {
		return []byte("null"), nil
	}
	b, err := json.Marshal(planner.ResourceState{Attrs: v})
	if err != nil {
		return nil, err
	}
	var w struct{ Attrs json.RawMessage }
	if err := json.Unmarshal(b, &w); err != nil || len(w.Attrs) == 0 {
		return nil, fmt.Errorf("encode values: unexpected planner encoding %s", b)
	}
	return w.Attrs, nil
}

// UnmarshalJSON decodes what MarshalJSON wrote.
func (v *Values) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		*v = nil
		return nil
	}
	var rs planner.ResourceState
	if err := json.Unmarshal(fmt.Appendf(nil, `{"attrs":%s}`, data), &rs); err != nil {
		return fmt.Errorf("decode values: %w", err)
	}
	*v = rs.Attrs
	return nil
}

// MarshalJSON encodes the outputs with the planner's tagged codec.
func (o Outputs) MarshalJSON() ([]byte, error) {
	if o == nil {
		return []byte("null"), nil
	}
	b, err := json.Marshal(planner.Result{Outputs: o})
	if err != nil {
		return nil, err
	}
	var w struct{ Outputs json.RawMessage }
	if err := json.Unmarshal(b, &w); err != nil || len(w.Outputs) == 0 {
		return nil, fmt.Errorf("encode outputs: unexpected planner encoding %s", b)
	}
	return w.Outputs, nil
}

// UnmarshalJSON decodes what MarshalJSON wrote.
func (o *Outputs) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		*o = nil
		return nil
	}
	var r planner.Result
	b, err := json.Marshal(planner.Result{})
	if err != nil {
		return err
	}
	// An empty Result's encoding, with its outputs replaced by ours: keeps
	// the codec version field whatever it is.
	var w map[string]json.RawMessage
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	w["outputs"] = data
	if b, err = json.Marshal(w); err != nil {
		return err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("decode outputs: %w", err)
	}
	*o = r.Outputs
	return nil
}
