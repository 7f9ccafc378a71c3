package api

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/kiln-dev/kiln/planner"
	"github.com/kiln-dev/kiln/spec"
)

// The wire form of a work item and of a report, as kiln wrote them before
// the values were typed (EncodeValues, since removed, then json.Marshal of the item):
// a server and an agent of different versions must read each other.
const (
	pinnedWorkItem = `{"operation_id":"op-1","stack":"web","project":"p","address":"server.web","kind":"server","op":"create",` +
		`"attrs":{"big":{"i":1099511627776},"count":{"i":-42},"image":{"u":true},` +
		`"list":{"l":[{"i":1},{"f":2.5},{"s":"x"},{"u":true},{"l":[]},{"l":null}]},` +
		`"map":{"m":{"a":{"m":{"u":{"u":true}}},"e":{"m":{}},"n":{"m":null},"z":{"i":1}}},` +
		`"name":{"s":"a\u003cb\u003e\u0026\"c\""},"none":null,"on":{"b":false},"ratio":{"f":0.25},"whole":{"f":3}},` +
		`"id":"old","generation":"op-1","deps":{"image.x":null,"network.lan":{"id":{"s":"n-1"},"mtu":{"i":1500}}},` +
		`"attempt":2,"await_ready":true,"work_id":"w-1"}`
	pinnedReport = `{"operation_id":"op-1","address":"server.web","op":"read","ok":true,"exists":true,` +
		`"attrs":{"id":{"s":"d-1"},"ip":{"s":"10.0.0.5"},"mem":{"i":2147483648}},"physical_name":"kiln-web","work_id":"w-1","ready_seconds":1.5}`
)

func pinnedItem() WorkItem {
	return WorkItem{
		OperationID: "op-1", Stack: "web", Project: "p", Address: "server.web", Kind: "server", Op: OpCreate,
		Attrs: planner.Values{
			"count": int64(-42), "big": int64(1) << 40, "ratio": 0.25, "whole": float64(3), "name": "a<b>&\"c\"", "on": false,
			"image": spec.Unknown{}, "none": nil,
			"list": []any{int64(1), 2.5, "x", spec.Unknown{}, []any{}, []any(nil)},
			"map":  map[string]any{"z": int64(1), "a": map[string]any{"u": spec.Unknown{}}, "e": map[string]any{}, "n": map[string]any(nil)},
		},
		ID: "old", Generation: "op-1",
		Deps:    map[string]planner.Values{"network.lan": {"id": "n-1", "mtu": int64(1500)}, "image.x": nil},
		Attempt: 2, AwaitReady: true, WorkID: "w-1",
	}
}

// TestWorkItemWireForm pins the JSON of a work item and of a report: the
// same bytes as before the values were typed, and decoding gives back the
// same Go values (int64 stays int64, float64 float64, unknown unknown).
func TestWorkItemWireForm(t *testing.T) {
	want := pinnedItem()
	b, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != pinnedWorkItem {
		t.Errorf("work item wire form changed:\ngot  %s\nwant %s", b, pinnedWorkItem)
	}
	var got WorkItem
	if err := json.Unmarshal([]byte(pinnedWorkItem), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded work item:\ngot  %#v\nwant %#v", got, want)
	}

	rep := ActionReport{OperationID: "op-1", Address: "server.web", Op: OpRead, OK: true, Exists: true,
		Attrs:        planner.Values{"id": "d-1", "ip": "10.0.0.5", "mem": int64(1) << 31},
		PhysicalName: "kiln-web", WorkID: "w-1", ReadySeconds: 1.5}
	if b, err = json.Marshal(rep); err != nil || string(b) != pinnedReport {
		t.Errorf("report wire form changed (%v):\ngot  %s\nwant %s", err, b, pinnedReport)
	}
	var gotRep ActionReport
	if err := json.Unmarshal([]byte(pinnedReport), &gotRep); err != nil || !reflect.DeepEqual(gotRep, rep) {
		t.Errorf("decoded report = %#v, %v; want %#v", gotRep, err, rep)
	}
}

// TestWorkItemOldEncoding: an agent or server of the version before typed
// values held the tagged values as generic JSON (map[string]any) and sent
// them on as such: that round trip keeps the very bytes of the typed
// values and decodes back to them, so the two versions understand each
// other.
func TestWorkItemOldEncoding(t *testing.T) {
	it := pinnedItem()
	for name, v := range map[string]planner.Values{"attrs": it.Attrs, "network.lan": it.Deps["network.lan"], "image.x": it.Deps["image.x"]} {
		typed, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var generic map[string]any
		if err := json.Unmarshal(typed, &generic); err != nil {
			t.Fatal(err)
		}
		oldJSON, err := json.Marshal(generic)
		if err != nil || string(oldJSON) != string(typed) {
			t.Errorf("%s: generic %s (%v), typed %s", name, oldJSON, err, typed)
		}
		var back planner.Values
		if err := json.Unmarshal(oldJSON, &back); err != nil || !reflect.DeepEqual(back, v) {
			t.Errorf("%s: decoded back = %#v, %v", name, back, err)
		}
	}
}

func TestWorkItemRefusesBadValues(t *testing.T) {
	for _, in := range []string{
		`{"attrs":{"a":1}}`,              // untagged
		`{"attrs":{"a":{"x":1}}}`,        // unknown tag
		`{"deps":{"n":{"a":{"i":1.5}}}}`, // not an int64
	} {
		var it WorkItem
		if err := json.Unmarshal([]byte(in), &it); err == nil {
			t.Errorf("%s decoded: %#v", in, it)
		}
	}
	if _, err := json.Marshal(ActionReport{Attrs: planner.Values{"c": make(chan int)}}); err == nil {
		t.Error("a value without a tagged form was encoded")
	}
}

// TestReadSelector: the read selector as the leader sets it, and as inferred
// for an item of a leader that does not (ID without Generation: the
// instance with ID).
func TestReadSelector(t *testing.T) {
	tests := []struct {
		name string
		it   WorkItem
		want ReadOf
	}{
		{"explicit made", WorkItem{Read: ReadMade, ID: "x"}, ReadMade},
		{"explicit id", WorkItem{Read: ReadID, ID: "x", Generation: "op-1"}, ReadID},
		{"old: create", WorkItem{}, ReadMade},
		{"old: create half of a replace", WorkItem{ID: "old", Generation: "op-1"}, ReadMade},
		{"old: update or delete", WorkItem{ID: "old"}, ReadID},
		{"old: delete without id", WorkItem{Generation: ""}, ReadMade},
	}
	for _, tt := range tests {
		if got := tt.it.ReadSelector(); got != tt.want {
			t.Errorf("%s: ReadSelector = %q, want %q", tt.name, got, tt.want)
		}
	}
	b, _ := json.Marshal(WorkItem{Op: OpRead, Read: ReadID})
	var it WorkItem
	if err := json.Unmarshal(b, &it); err != nil || it.Read != ReadID {
		t.Errorf("read selector lost on the wire: %s -> %+v, %v", b, it, err)
	}
}

// BenchmarkWorkItemRoundTrip marshals a work item (the pinned one: values
// of every kind, nested, and two dependencies) and decodes it back, values
// included.
func BenchmarkWorkItemRoundTrip(b *testing.B) {
	it := pinnedItem()
	b.ReportAllocs()
	for b.Loop() {
		data, err := json.Marshal(it)
		if err != nil {
			b.Fatal(err)
		}
		var got WorkItem
		if err := json.Unmarshal(data, &got); err != nil {
			b.Fatal(err)
		}
	}
}
