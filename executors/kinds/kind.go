// Package kinds declares, once, what kiln knows of each resource kind
// beside the schema the templates are checked against (spec.Schemas): the
// typed attribute struct the executors are driven from, the attributes
// whose drift a refresh reports, the attributes that name images, and how
// the physical names of the kind's host objects derive from scope and
// address. All is the one list of kinds; everything that walks the kinds
// (the agent's driver sets and gc, the server's refresh and image usage)
// walks it.
//
// The declarations live here, in one package beside the executors rather
// than in each executor's package, because the server reads them too
// (daemon/server's refresh and image usage) and must not link libvirt,
// netlink or iptables: this package imports the standard library and the
// executors package only. The executors use its physical names, so each
// name is written once.
//
// Attribute values arrive as the planner's values (string, int64, float64,
// bool, []any, map[string]any and the "known after apply" placeholder);
// Decode turns them into a kind's typed struct once, with the errors the
// agent has always given (see decode.go).
package kinds

import (
	"fmt"
	"reflect"
)

// Kind is the declaration of one resource kind.
type Kind struct {
	// Name is the kind as templates spell it (spec.KindServer, ...).
	Name string
	// Drift are the configured attributes the executors read back
	// reliably: a difference in them is drift, which a plan shows as an
	// update. Any other attribute keeps its recorded value on a refresh.
	Drift []string
	// ImageRefs are the attributes (configured or computed) whose values
	// are the sha256 of an image a resource of the kind uses.
	ImageRefs []string
	// ID derives the id of an instance, the name of its main host object,
	// from the scope, its physical address and its configured attributes
	// (a volume's name holds its format; see names.go). Nil for the image
	// kind: an image's id is its content's sha256.
	ID func(scope, phys string, attrs map[string]any) string
	// attrs is the typed attribute struct (ImageAttrs, ...).
	attrs reflect.Type
}

// Attrs returns a pointer to a new zero value of the kind's typed
// attribute struct, for Decode.
func (k Kind) Attrs() any { return reflect.New(k.attrs).Interface() }

// Fields are the tagged fields of the kind's typed attribute struct, in
// order.
func (k Kind) Fields() []Field { return fieldsOf(k.attrs) }

// All is every kind, in the order their objects are made (images and
// networks before the volumes and servers that use them).
var All = []Kind{
	{Name: "image", ImageRefs: []string{"id", "sha256"}, attrs: reflect.TypeFor[ImageAttrs]()},
	{Name: "network", Drift: []string{"nat", "dhcp"}, ID: withoutAttrs(BridgeName), attrs: reflect.TypeFor[NetworkAttrs]()},
	{Name: "volume", ID: volumeID, attrs: reflect.TypeFor[VolumeAttrs]()},
	{Name: "server", Drift: []string{"cpus", "memory"}, ImageRefs: []string{"image"}, ID: withoutAttrs(ServerName), attrs: reflect.TypeFor[ServerAttrs]()},
	{Name: "port_forward", ID: withoutAttrs(PortForwardID), attrs: reflect.TypeFor[PortForwardAttrs]()},
}

// Names are the names of All, in its order.
func Names() []string {
	out := make([]string, len(All))
	for i, k := range All {
		out[i] = k.Name
	}
	return out
}

// Get returns the kind named name; ok is false for no such kind.
func Get(name string) (k Kind, ok bool) {
	for _, k := range All {
		if k.Name == name {
			return k, true
		}
	}
	return Kind{}, false
}

// MustGet is Get for a kind that must exist (one of All).
func MustGet(name string) Kind {
	k, ok := Get(name)
	if !ok {
		panic(fmt.Sprintf("kinds: no kind %q", name))
	}
	return k
}
