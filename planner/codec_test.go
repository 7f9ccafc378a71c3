package planner

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/kiln-dev/kiln/spec"
)

func TestCodecValueRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    any
	}{
		{"nil", nil},
		{"string", "héllo \"x\"\n<&>"},
		{"empty string", ""},
		{"int64", int64(9007199254740993)}, // not exact as a float64
		{"negative int64", int64(-1 << 62)},
		{"float64 whole", float64(3)},
		{"float64", 1.5e-7},
		{"bool", true},
		{"unknown", spec.Unknown{}},
		{"nil list", []any(nil)},
		{"empty list", []any{}},
		{"nil map", map[string]any(nil)},
		{"empty map", map[string]any{}},
		{"nested", []any{
			map[string]any{"name": "lan", "address": spec.Unknown{}, "n": int64(2), "f": 2.0},
			[]any{nil, false, []any{}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(value{tc.v})
			if err != nil {
				t.Fatal(err)
			}
			var got value
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("unmarshal %s: %v", b, err)
			}
			if !reflect.DeepEqual(got.v, tc.v) {
				t.Errorf("round trip of %#v via %s gave %#v", tc.v, b, got.v)
			}
		})
	}
}

func TestCodecRejects(t *testing.T) {
	for _, in := range []string{`{}`, `{"s":"a","i":1}`, `{"x":1}`, `{"i":1.5}`, `[1]`} {
		var v value
		if err := json.Unmarshal([]byte(in), &v); err == nil {
			t.Errorf("decoding %s: no error, got %#v", in, v.v)
		}
	}
	if _, err := json.Marshal(value{struct{}{}}); err == nil {
		t.Error("encoding a struct: no error")
	}
	var s State
	if err := json.Unmarshal([]byte(`{"v":99}`), &s); err == nil {
		t.Error("decoding state of codec version 99: no error")
	}
}

// TestCodecRoundTrip encodes every plan and state of the planner cases and
// wants exactly the same Go values back.
func TestCodecRoundTrip(t *testing.T) {
	for _, tc := range planCases() {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.actual()
			if st != nil {
				var got State
				roundTrip(t, st, &got)
				if !reflect.DeepEqual(&got, st) {
					t.Errorf("state round trip differs:\n got %#v\nwant %#v", got, *st)
				}
			}
			res, err := Plan(tc.desired(), st)
			if err != nil {
				return
			}
			var got Result
			roundTrip(t, res, &got)
			if !reflect.DeepEqual(&got, res) {
				t.Errorf("plan round trip differs:\n got %#v\nwant %#v", got, *res)
			}
		})
	}
}

func roundTrip(t *testing.T, in, out any) {
	t.Helper()
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("unmarshal: %v\n%s", err, b)
	}
	b2, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != string(b2) {
		t.Errorf("re-encoding differs:\n%s\n%s", b, b2)
	}
}
