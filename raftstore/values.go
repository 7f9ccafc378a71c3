package raftstore

import (
	"encoding/json"
	"fmt"

	"github.com/kiln-dev/kiln/planner"
	"github.com/kiln-dev/kiln/spec"
)

// Values and Outputs travel through the log in the planner's tagged storage
// codec (planner.Values, planner.Outputs), so an int64 stays an int64 (plain
// JSON would make it a float64) and an unknown stays unknown: every node
// decodes exactly what the leader proposed. The round-trip test in
// values_test.go notices if that ever changes.

// Values are attribute values: string, int64, float64, bool, []any,
// map[string]any, spec.Unknown or nil.
type Values map[string]any

// Outputs are a stack's outputs by name.
type Outputs map[string]spec.Output

// MarshalJSON encodes the values with the planner's tagged codec.
func (v Values) MarshalJSON() ([]byte, error) { return planner.Values(v).MarshalJSON() }

// UnmarshalJSON decodes what MarshalJSON wrote.
func (v *Values) UnmarshalJSON(data []byte) error {
	return decodeTagged(data, (*planner.Values)(v), "values")
}

// MarshalJSON encodes the outputs with the planner's tagged codec.
func (o Outputs) MarshalJSON() ([]byte, error) { return planner.Outputs(o).MarshalJSON() }

// UnmarshalJSON decodes what MarshalJSON wrote.
func (o *Outputs) UnmarshalJSON(data []byte) error {
	return decodeTagged(data, (*planner.Outputs)(o), "outputs")
}

// decodeTagged decodes data into dst, one of the planner's codec types,
// naming what it decodes on error.
func decodeTagged(data []byte, dst json.Unmarshaler, what string) error {
	if err := dst.UnmarshalJSON(data); err != nil {
		return fmt.Errorf("decode %s: %w", what, err)
	}
	return nil
}
