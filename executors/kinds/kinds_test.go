package kinds_test

import (
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/executors/kinds"
	"github.com/kiln-dev/kiln/spec"
)

// TestKindsMatchSchemas keeps the two declarations of a kind's attributes
// together: spec.Schemas (what templates may set) and the typed struct the
// executors are driven from. Every configurable attribute of the schema is
// decoded, no tag names an attribute the schema lacks or computes, the Go
// type fits the schema's type, and a default in a tag is the schema's.
func TestKindsMatchSchemas(t *testing.T) {
	var schemaKinds []string
	for k := range spec.Schemas {
		schemaKinds = append(schemaKinds, k)
	}
	sort.Strings(schemaKinds)
	names := kinds.Names()
	sort.Strings(names)
	if !slices.Equal(names, schemaKinds) {
		t.Fatalf("kinds %v, spec.Schemas has %v", names, schemaKinds)
	}
	goType := map[string]reflect.Type{
		"string": reflect.TypeFor[string](), "number": reflect.TypeFor[int64](), "size": reflect.TypeFor[int64](),
		"bool": reflect.TypeFor[bool](), "list(string)": reflect.TypeFor[[]string](),
		"list(object)": reflect.TypeFor[kinds.NetworkBlocks](), "object": reflect.TypeFor[*kinds.ReadyBlock](),
	}
	for _, k := range kinds.All {
		ks := spec.Schemas[k.Name]
		tagged := map[string]bool{}
		for _, f := range k.Fields() {
			tagged[f.Name] = true
			as := ks.Attr(f.Name)
			if as == nil || as.Computed {
				t.Errorf("%s: a field decodes attribute %q, which the schema does not let a template set", k.Name, f.Name)
				continue
			}
			if want := goType[as.Type]; f.Type != want {
				t.Errorf("%s.%s: the field is a %s, the schema's %s wants a %v", k.Name, f.Name, f.Type, as.Type, want)
			}
			if f.Required && !as.Required {
				t.Errorf("%s.%s: required in the tag, optional in the schema", k.Name, f.Name)
			}
			if f.Default != nil && !reflect.DeepEqual(f.Default, as.Default) {
				t.Errorf("%s.%s: default %v in the tag, %v in the schema", k.Name, f.Name, f.Default, as.Default)
			}
		}
		for _, as := range ks.Attrs {
			if !as.Computed && !tagged[as.Name] {
				t.Errorf("%s: the schema's attribute %q is not decoded by the kind's typed struct", k.Name, as.Name)
			}
		}
		for _, a := range append(slices.Clone(k.Drift), k.ImageRefs...) {
			if ks.Attr(a) == nil {
				t.Errorf("%s: drift or image attribute %q is not in the schema", k.Name, a)
			}
		}
	}
}

func decoder() kinds.Decoder { return kinds.Decoder{Address: "server.web", Unknown: spec.IsUnknown} }

func TestDecodeServer(t *testing.T) {
	var got kinds.ServerAttrs
	err := decoder().Decode(map[string]any{
		"image": "abc", "memory": float64(1 << 30), "volumes": []any{"v1"},
		"networks": []any{map[string]any{"name": "lan", "address": "10.0.0.5"}, map[string]any{"name": "wan"}},
		"ready":    map[string]any{"tcp_port": int64(22), "timeout": int64(30)},
	}, &got)
	if err != nil {
		t.Fatal(err)
	}
	port := int64(22)
	want := kinds.ServerAttrs{Image: "abc", CPUs: 1, Memory: 1 << 30, Volumes: []string{"v1"},
		Networks: kinds.NetworkBlocks{{Name: "lan", Address: "10.0.0.5"}, {Name: "wan"}},
		Ready:    &kinds.ReadyBlock{Timeout: 30, TCPPort: &port}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

// TestDecodeErrors: each error names the resource and the attribute as
// the agent's messages always have, and the other attributes still decode.
func TestDecodeErrors(t *testing.T) {
	for _, c := range []struct {
		attrs map[string]any
		attr  string
		want  string
	}{
		{map[string]any{}, "image", `server.web: attribute "image" is required`},
		{map[string]any{"image": spec.Unknown{}}, "image", `server.web: attribute "image" is still unknown (known after apply)`},
		{map[string]any{"image": "x", "volumes": []any{"v1", spec.Unknown{}}}, "volumes", `attribute "volumes[1]" is still unknown`},
		{map[string]any{"image": "x", "volumes": []any{"v1", int64(3)}}, "volumes", `server.web: attribute volumes[1] is a int64, want a string`},
		{map[string]any{"image": "x", "cpus": 1.5}, "cpus", `server.web: attribute "cpus" is 1.5, want a whole number`},
		{map[string]any{"image": "x", "cpus": "two"}, "cpus", `server.web: attribute "cpus" is a string, want a number`},
		{map[string]any{"image": 3}, "image", `server.web: attribute "image" is a int, want a string`},
		{map[string]any{"image": "x", "networks": []any{map[string]any{}}}, "networks", `server.web: networks[0] has no name`},
		{map[string]any{"image": "x", "networks": []any{map[string]any{"name": "lan", "address": spec.Unknown{}}}}, "networks", `attribute "network \"lan\" address" is still unknown`},
		{map[string]any{"image": "x", "ready": "soon"}, "ready", `server.web: attribute "ready" is a string, want a ready block`},
	} {
		var got kinds.ServerAttrs
		err := decoder().Decode(c.attrs, &got)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err = %v, want %q", c.attrs, err, c.want)
			continue
		}
		if kinds.For(err, c.attr) == nil {
			t.Errorf("%v: For(%q) = nil", c.attrs, c.attr)
		}
		if other := kinds.For(err, "kernel"); other != nil {
			t.Errorf("%v: For(kernel) = %v", c.attrs, other)
		}
		if c.attr != "image" && got.Image != "x" {
			t.Errorf("%v: image not decoded beside the error: %+v", c.attrs, got)
		}
	}
}

func TestDecodeNetworkDefaults(t *testing.T) {
	var got kinds.NetworkAttrs
	if err := (kinds.Decoder{Address: "network.lan", Unknown: spec.IsUnknown}).Decode(map[string]any{"cidr": "10.0.0.0/24", "nat": nil}, &got); err != nil {
		t.Fatal(err)
	}
	if want := (kinds.NetworkAttrs{CIDR: "10.0.0.0/24", DHCP: true}); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

// TestIDs: each kind's id is the name of its main object, a volume's by
// its format (qcow2 when unset); an image's id is its sha256 (no ID).
func TestIDs(t *testing.T) {
	for _, c := range []struct {
		kind  string
		attrs map[string]any
		want  string
	}{
		{"network", nil, kinds.BridgeName("s", "network.lan")},
		{"server", nil, kinds.ServerName("s", "server.web")},
		{"port_forward", nil, kinds.PortForwardID("s", "port_forward.p")},
		{"volume", nil, "kiln_s_volume-data.qcow2"},
		{"volume", map[string]any{"format": "raw"}, "kiln_s_volume-data.raw"},
	} {
		addr := map[string]string{"network": "network.lan", "server": "server.web", "port_forward": "port_forward.p", "volume": "volume.data"}[c.kind]
		if got := kinds.MustGet(c.kind).ID("s", addr, c.attrs); got != c.want {
			t.Errorf("%s %v: id %q, want %q", c.kind, c.attrs, got, c.want)
		}
	}
	if kinds.MustGet("image").ID != nil {
		t.Error("an image's id is its sha256, not a name")
	}
	if got := kinds.BridgeName("s", "network.lan"); len(got) > 15 || got[:3] != kinds.BridgePrefix {
		t.Errorf("BridgeName = %q", got)
	}
}
