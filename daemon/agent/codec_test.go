package agent

import (
	"context"
	"encoding/json"
	"math"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/client"
	"github.com/kiln-dev/kiln/planner"
	"github.com/kiln-dev/kiln/spec"
)

// TestActionOfScope: the drivers see a work item's stack qualified with
// its project (executors.Scope), the default project's as it always was.
func TestActionOfScope(t *testing.T) {
	for _, tt := range []struct{ project, stack, want string }{
		{"", "web", "web"},
		{"default", "web", "web"},
		{"p1", "web", "p1/web"},
		{"p2", "web", "p2/web"},
	} {
		a, err := actionOf(api.WorkItem{Project: tt.project, Stack: tt.stack, Address: "server.a", Kind: "server", Op: "create"})
		if err != nil {
			t.Fatal(err)
		}
		if a.Stack != tt.want {
			t.Errorf("project %q stack %q: the drivers see stack %q, want %q", tt.project, tt.stack, a.Stack, tt.want)
		}
	}
}

// TestActionOfOwnerTooLong: names that would make an owner tag longer than
// an iptables comment holds are refused with the names.
func TestActionOfOwnerTooLong(t *testing.T) {
	long := strings.Repeat("p", 200)
	_, err := actionOf(api.WorkItem{Project: long, Stack: "web", Address: "network." + strings.Repeat("n", 60), Kind: "network", Op: "create"})
	if err == nil || !strings.Contains(err.Error(), "owner tag") || !strings.Contains(err.Error(), "web") {
		t.Fatalf("a 270-byte owner tag: %v", err)
	}
}

// TestActionOfRead: a read reaches the driver's Read as a create (the
// instance a create was making) or a delete (the instance with the ID), as
// the item's selector says; an item from a leader that sets none is read
// by what its ID and Generation say, as before.
func TestActionOfRead(t *testing.T) {
	tests := []struct {
		name string
		it   api.WorkItem
		want api.Op
	}{
		{"made", api.WorkItem{Read: api.ReadMade}, api.OpCreate},
		{"made, create half of a replace", api.WorkItem{Read: api.ReadMade, ID: "old", Generation: "op-2"}, api.OpCreate},
		{"by id", api.WorkItem{Read: api.ReadID, ID: "i-1"}, api.OpDelete},
		{"old leader: create", api.WorkItem{}, api.OpCreate},
		{"old leader: create half of a replace", api.WorkItem{ID: "old", Generation: "op-2"}, api.OpCreate},
		{"old leader: update or delete", api.WorkItem{ID: "i-1"}, api.OpDelete},
	}
	for _, tt := range tests {
		tt.it.Stack, tt.it.Address, tt.it.Kind, tt.it.Op = "web", "network.lan", "network", api.OpRead
		a, err := actionOf(tt.it)
		if err != nil || a.Op != tt.want || a.ID != tt.it.ID || a.Generation != tt.it.Generation {
			t.Errorf("%s: action %+v, %v; want op %s", tt.name, a, err, tt.want)
		}
	}
	if _, err := actionOf(api.WorkItem{Stack: "web", Address: "network.lan", Op: api.OpRead, Read: "newest"}); err == nil ||
		!strings.Contains(err.Error(), `"newest"`) {
		t.Errorf("unknown selector: %v", err)
	}
	// Other ops keep their op, whatever the item says about reads.
	if a, err := actionOf(api.WorkItem{Stack: "web", Address: "network.lan", Op: api.OpUpdate, ID: "i-1", Read: api.ReadMade}); err != nil || a.Op != api.OpUpdate {
		t.Errorf("update: %+v, %v", a, err)
	}
}

// TestActionOfValues: the drivers get the item's values as they were
// decoded with it (int64 stays int64, unknowns stay unknown), its
// dependencies' too.
func TestActionOfValues(t *testing.T) {
	var it api.WorkItem
	wire := `{"stack":"web","address":"server.web","kind":"server","op":"create",` +
		`"attrs":{"cpus":{"i":2},"ratio":{"f":1.5},"image":{"u":true},"nets":{"l":[{"m":{"ip":{"s":"10.0.0.5"}}}]}},` +
		`"deps":{"network.lan":{"mtu":{"i":1500}},"image.x":null},"attempt":1}`
	if err := json.Unmarshal([]byte(wire), &it); err != nil {
		t.Fatal(err)
	}
	a, err := actionOf(it)
	if err != nil {
		t.Fatal(err)
	}
	want := planner.Values{"cpus": int64(2), "ratio": 1.5, "image": spec.Unknown{}, "nets": []any{map[string]any{"ip": "10.0.0.5"}}}
	if !reflect.DeepEqual(a.Attrs, want) {
		t.Errorf("attrs = %#v, want %#v", a.Attrs, want)
	}
	if got := a.Deps["network.lan"]["mtu"]; got != int64(1500) {
		t.Errorf("dependency value = %#v", got)
	}
	if d, ok := a.Deps["image.x"]; !ok || d != nil {
		t.Errorf("null dependency = %#v, %v", d, ok)
	}
}

// valuesDriver creates objects with the attributes it is given.
type valuesDriver struct{ attrs map[string]any }

func (d valuesDriver) Create(context.Context, Action) (Object, error) {
	return Object{PhysicalName: "kiln-x", Attrs: d.attrs}, nil
}
func (d valuesDriver) Update(ctx context.Context, a Action) (Object, error) { return d.Create(ctx, a) }
func (d valuesDriver) Delete(context.Context, Action) error                 { return nil }
func (d valuesDriver) Read(ctx context.Context, a Action) (Object, bool, error) {
	o, err := d.Create(ctx, a)
	return o, true, err
}

// TestReportAttrsWithoutJSONForm: an action whose attributes have no JSON
// form (a NaN) is reported failed with why, not retried forever; other
// attributes reach the server tagged.
func TestReportAttrsWithoutJSONForm(t *testing.T) {
	for _, tt := range []struct {
		name   string
		attrs  map[string]any
		wantOK bool
	}{
		{"NaN", map[string]any{"ratio": math.NaN()}, false},
		{"plain", map[string]any{"size": int64(1) << 40}, true},
	} {
		f := &fakeServer{reported: make(chan struct{}, 16)}
		srv := httptest.NewServer(f)
		c, _ := client.New(client.Config{Addr: srv.URL})
		a, err := New(Config{ID: "a1", DataDir: t.TempDir(), Client: c, Drivers: Drivers{"volume": valuesDriver{tt.attrs}}})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		a.report(ctx, a.run(ctx, api.WorkItem{WorkID: "w1", OperationID: "op-1", Stack: "web", Address: "volume.v", Kind: "volume", Op: api.OpCreate}))
		srv.Close()
		if len(f.reports) != 1 {
			t.Fatalf("%s: %d reports", tt.name, len(f.reports))
		}
		rep := f.reports[0]
		if rep.OK != tt.wantOK || (!tt.wantOK && !strings.Contains(rep.Error, "encode attributes")) {
			t.Errorf("%s: report %+v", tt.name, rep)
		}
		if tt.wantOK && !reflect.DeepEqual(map[string]any(rep.Attrs), tt.attrs) {
			t.Errorf("%s: attrs %#v, want %#v", tt.name, rep.Attrs, tt.attrs)
		}
	}
}
