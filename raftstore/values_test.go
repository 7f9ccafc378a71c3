package raftstore

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/kiln-dev/kiln/spec"
)

func TestValuesRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   Values
	}{
		{"nil", nil},
		{"empty", Values{}},
		{"scalars", Values{"s": "x", "i": int64(42), "f": 1.5, "b": true, "n": nil, "u": spec.Unknown{}}},
		{"nested", Values{"l": []any{int64(1), "a", map[string]any{"k": int64(2 << 40)}}, "m": map[string]any{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkRoundTrip(t, tt.in) })
	}
}

// checkRoundTrip encodes in to JSON and decodes it into a new T, which must
// equal in, Go types included.
func checkRoundTrip[T any](t *testing.T, in T) {
	t.Helper()
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out T
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if !reflect.DeepEqual(out, in) {
		t.Errorf("got %#v from %s, want %#v", out, b, in)
	}
}

func TestOutputsRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   Outputs
	}{
		{"nil", nil},
		{"values", Outputs{
			"port":  {Name: "port", Value: int64(8080), Description: "the port"},
			"addrs": {Name: "addrs", Value: []any{"10.0.0.10", "10.0.0.11"}},
			"pass":  {Name: "pass", Value: "s3cret", Sensitive: true},
			"later": {Name: "later", Value: spec.Unknown{}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkRoundTrip(t, tt.in) })
	}
}

// What the leader proposes is what every node holds, types included.
func TestCommandsKeepValueTypes(t *testing.T) {
	h := newHarness(t)
	h.must(&PutBlob{Hash: bundleHash, Data: bundle})
	ps := putStack()
	ps.Params = Values{"web_count": int64(2), "ratio": 0.5}
	h.must(ps, &StartOperation{ID: "op1", Project: "p", Stack: "web", Kind: OpApply},
		&FinishOperation{ID: "op1", Status: OpDone, Outputs: Outputs{"port": {Name: "port", Value: int64(8080)}}})
	st, _ := h.state().Stack("p", "web")
	if st.Params["web_count"] != int64(2) || st.Params["ratio"] != 0.5 {
		t.Errorf("params = %#v", st.Params)
	}
	if st.Outputs["port"].Value != int64(8080) {
		t.Errorf("outputs = %#v", st.Outputs)
	}
}
