package server

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/daemon/engine"
	"github.com/kiln-dev/kiln/planner"
	"github.com/kiln-dev/kiln/raftstore"
	"github.com/kiln-dev/kiln/spec"
)

func wireItem() api.WorkItem {
	return api.WorkItem{OperationID: "op-1", Stack: "web", Project: "default", Address: "server.web", Kind: "server", Op: api.OpCreate, Attempt: 1, WorkID: "w-1",
		Attrs: planner.Values{
			"name": "web", "cpus": int64(2), "memory": int64(2 << 30), "disk": int64(20 << 30),
			"image": spec.Unknown{}, "ratio": 1.5, "autostart": true,
			"networks":   []any{map[string]any{"network": "lan", "ip": "10.0.0.5", "mac": spec.Unknown{}}},
			"ports":      []any{map[string]any{"host": int64(8080), "guest": int64(80), "proto": "tcp"}},
			"cloud_init": map[string]any{"user_data": "#cloud-config\npackages: [nginx]\n", "hostname": "web"},
			"tags":       []any{"a", "b", "c"},
		},
		Deps: map[string]planner.Values{
			"network.lan": {"id": "n-1234", "cidr": "10.0.0.0/24", "bridge": "kiln-abcd", "mtu": int64(1500)},
			"image.base":  {"id": "sha256:abcd", "format": "qcow2", "size": int64(123456789)},
		},
	}
}

// TestWorkResponseWire: the work route serves the stored items as they
// are, in exactly the JSON of an api.WorkResponse, which an agent decodes
// to the items the leader built.
func TestWorkResponseWire(t *testing.T) {
	items := []api.WorkItem{wireItem(), {OperationID: "op-1", Address: "network.lan", Op: api.OpRead, Read: api.ReadID, ID: "n-1", Attempt: 1}}
	served := workResponse{Items: []json.RawMessage{}, Index: 9}
	for _, it := range items {
		b, err := json.Marshal(it)
		if err != nil {
			t.Fatal(err)
		}
		served.Items = append(served.Items, b)
	}
	got, err := json.Marshal(served)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(api.WorkResponse{Items: items, Index: 9})
	if !bytes.Equal(got, want) {
		t.Errorf("work route JSON:\ngot  %s\nwant %s", got, want)
	}
	var resp api.WorkResponse
	if err := json.Unmarshal(got, &resp); err != nil || !reflect.DeepEqual(resp.Items, items) || resp.Index != 9 {
		t.Errorf("agent decodes %+v, %v", resp, err)
	}
	empty, _ := json.Marshal(workResponse{Items: []json.RawMessage{}})
	if want, _ := json.Marshal(api.WorkResponse{Items: []api.WorkItem{}}); !bytes.Equal(empty, want) {
		t.Errorf("no work: %s, want %s", empty, want)
	}
}

// TestReadOf: the leader names the instance a read is about, and for every
// step of every change it names the one an agent used to infer from the
// item's ID and Generation (WorkItem.ReadSelector without Read), so old
// and new agents read the same instance.
func TestReadOf(t *testing.T) {
	before := map[string]any{"id": "old-1", "cidr": "10.0.0.0/24"}
	after := map[string]any{"cidr": "10.0.1.0/24"}
	// The steps in order, and the instance each one's read is about.
	want := []api.ReadOf{
		api.ReadMade,             // create
		api.ReadID,               // update
		api.ReadID,               // delete
		api.ReadID, api.ReadMade, // replace: delete, then create
		api.ReadMade, api.ReadID, // create_before_destroy: create, then delete
		api.ReadMade, // delete without a known id: the newest instance
	}
	var got []api.ReadOf
	for _, ch := range []planner.Change{
		{Address: "network.lan", Kind: "network", Action: planner.Create, After: after},
		{Address: "network.lan", Kind: "network", Action: planner.Update, Before: before, After: after},
		{Address: "network.lan", Kind: "network", Action: planner.Delete, Before: before},
		{Address: "network.lan", Kind: "network", Action: planner.Replace, Before: before, After: after},
		{Address: "network.lan", Kind: "network", Action: planner.Replace, Before: before, After: after, CreateBeforeDestroy: true},
		{Address: "network.lan", Kind: "network", Action: planner.Delete, Before: map[string]any{}},
	} {
		steps, err := engine.Steps("op-2", "web", ch)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range steps {
			got = append(got, readOf(a))
			if old := (api.WorkItem{ID: a.ID, Generation: a.Generation}).ReadSelector(); old != readOf(a) {
				t.Errorf("%v step %s: an agent infers %q, the leader says %q", ch.Action, a.Op, old, readOf(a))
			}
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("read selectors of the steps = %q, want %q", got, want)
	}
}

// TestSameGeneration: a new leader matches the work an earlier one put by
// its typed fields; work from a kiln before Work.Generation, by its payload.
func TestSameGeneration(t *testing.T) {
	payload := func(gen string) raftstore.RawJSON {
		b, _ := json.Marshal(api.WorkItem{Op: api.OpCreate, Generation: gen})
		return b
	}
	tests := []struct {
		name string
		w    raftstore.Work
		gen  string
		want bool
	}{
		{"plain create", raftstore.Work{Payload: payload("")}, "", true},
		{"same generation", raftstore.Work{Generation: "op-2", Payload: payload("op-2")}, "op-2", true},
		{"other generation", raftstore.Work{Generation: "op-1", Payload: payload("op-1")}, "op-2", false},
		{"generation, work of a plain create", raftstore.Work{Payload: payload("")}, "op-2", false},
		{"no generation, work of a replace", raftstore.Work{Generation: "op-2", Payload: payload("op-2")}, "", false},
		{"older kiln's work of a replace", raftstore.Work{Payload: payload("op-2")}, "op-2", true},
		{"older kiln's work, unreadable", raftstore.Work{Payload: raftstore.RawJSON(`{"generation":5}`)}, "op-2", false},
	}
	for _, tt := range tests {
		if got := sameGeneration(tt.w, tt.gen); got != tt.want {
			t.Errorf("%s: sameGeneration = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// BenchmarkWorkPath is one work item's way from the leader to the agent:
// built and stored in a raft entry, decoded by the FSM, served by the work
// route, decoded by the agent.
func BenchmarkWorkPath(b *testing.B) {
	it := wireItem()
	b.ReportAllocs()
	var size int
	for b.Loop() {
		payload, err := json.Marshal(it)
		if err != nil {
			b.Fatal(err)
		}
		entry, err := raftstore.Encode(&raftstore.PutWork{Work: raftstore.Work{ID: "w-1", Agent: "a", Operation: "op-1", Address: "server.web", Op: "create", Payload: payload}})
		if err != nil {
			b.Fatal(err)
		}
		size = len(entry)
		c, err := raftstore.Decode(entry)
		if err != nil {
			b.Fatal(err)
		}
		var body bytes.Buffer
		e := json.NewEncoder(&body)
		e.SetIndent("", "  ")
		if err := e.Encode(workResponse{Items: []json.RawMessage{json.RawMessage(c.(*raftstore.PutWork).Work.Payload)}, Index: 7}); err != nil {
			b.Fatal(err)
		}
		var resp api.WorkResponse
		if err := json.Unmarshal(body.Bytes(), &resp); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(size), "entry-bytes")
}
