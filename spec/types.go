package spec

// This file is the contract between spec and everything after it: the result of
// loading a template is plain Go values. Nothing past spec sees an HCL expression
// or a cty.Value.

import (
	"context"
	"sort"

	"github.com/hashicorp/hcl/v2"
)

// Kinds of resource, in the order they are usually listed.
const (
	KindImage       = "image"
	KindNetwork     = "network"
	KindVolume      = "volume"
	KindServer      = "server"
	KindPortForward = "port_forward"
)

// Kinds lists every resource kind.
var Kinds = []string{KindImage, KindNetwork, KindVolume, KindServer, KindPortForward}

// Unknown is the value of an attribute that is known only after apply
// (a computed attribute of a resource that does not exist yet, or anything
// derived from one).
type Unknown struct{}

// String renders an unknown value the way plans show it.
func (Unknown) String() string { return "(known after apply)" }

// IsUnknown reports whether v is, or contains, an unknown value.
func IsUnknown(v any) bool {
	switch t := v.(type) {
	case Unknown:
		return true
	case []any:
		for _, e := range t {
			if IsUnknown(e) {
				return true
			}
		}
	case map[string]any:
		for _, e := range t {
			if IsUnknown(e) {
				return true
			}
		}
	}
	return false
}

// Values of attributes are plain Go values of these types only:
//
//	string, int64 (whole numbers; sizes are int64 bytes), float64, bool,
//	[]any, map[string]any, Unknown.
//
// nil means null (an optional attribute that was not set is simply absent
// from Attrs).

// Bundle is the template bundle: every file of the template directory, keyed by
// its slash-separated path relative to that directory. spec reads nothing else:
// file() and templatefile() resolve paths inside the bundle and refuse any path
// that leaves it.
type Bundle map[string][]byte

// Prior is what the actual state knows of the computed attributes of resources
// that exist: address -> attribute -> value. References to a computed attribute
// of a resource found here evaluate to its value; otherwise to Unknown.
type Prior map[string]map[string]any

// Options are the inputs of Load besides the bundle.
type Options struct {
	// Stack is the stack name; it must itself be a valid name.
	Stack string
	// Vars from -var name=value, in order given (later wins).
	Vars []RawVar
	// VarFiles are -var-file contents (HCL attribute files), in order given.
	VarFiles []VarFile
	// Env holds KILN_VAR_name values, keyed by name (without the prefix).
	Env map[string]string
	// Prior supplies computed attributes of resources that already exist.
	Prior Prior
	// Dir is prefixed to bundle paths when naming files in diagnostics
	// ("examples/quickstart" makes "examples/quickstart/main.hcl:12,3").
	Dir string
	// Files names the bundle entries that are template files. Empty means
	// every top-level *.hcl file of the bundle, sorted.
	Files []string
	// Limits bound the values and string bytes evaluation may make (zero:
	// the defaults).
	Limits Limits
	// Context bounds the time of evaluation: once it is done, Load stops
	// with an "Evaluation limit exceeded" diagnostic. nil: no time limit.
	Context context.Context
}

// RawVar is a variable given as text (-var name=value or KILN_VAR_name). For a
// param of type string the text is the value; for any other type it is parsed as
// an HCL expression ("3", "true", "[\"a\"]", "{a = 1}").
type RawVar struct {
	Name  string
	Value string
}

// VarFile is the content of a -var-file, with the name used in diagnostics.
type VarFile struct {
	Name  string
	Bytes []byte
}

// Stack is a template after parsing, evaluation and validation: the desired state.
type Stack struct {
	Name string
	// Params are the resolved param values, by name.
	Params map[string]Param
	// Resources are every resource instance after count/for_each expansion,
	// sorted by address.
	Resources []*Resource
	// Outputs by name.
	Outputs map[string]Output
}

// Param is one resolved param.
type Param struct {
	Name        string
	Value       any
	Sensitive   bool
	Description string
}

// Output is one evaluated output.
type Output struct {
	Name        string
	Value       any // may be or contain Unknown
	Sensitive   bool
	Description string
}

// Resource is one resource instance.
type Resource struct {
	// Address is kind.name, kind.name[0] (count) or kind.name["key"] (for_each).
	Address string
	Kind    string
	Name    string
	// Key is nil for a single resource, int for count, string for for_each.
	Key any
	// Attrs are the configured (non-computed) attributes that were set, with
	// defaults applied. Sizes are int64 bytes. server "network" blocks appear as
	// Attrs["networks"]: []any of map[string]any{"name": "lan", "address": "10.0.0.10"}.
	// A server's "ready" block appears as Attrs["ready"]: a map[string]any of
	// its one check and its timeout in seconds, normalised:
	//
	//	{"tcp_port": int64, "timeout": int64}
	//	{"http_port": int64, "http_path": string, "timeout": int64} (http_path defaults to "/")
	//	{"console": string (an RE2 regexp), "timeout": int64}
	//	{"signal": true, "timeout": int64}
	//
	// timeout defaults to 300. Without a ready block there is no "ready" key.
	Attrs map[string]any
	// Sensitive names the attributes whose value derives from a sensitive param.
	Sensitive map[string]bool
	// Computed are the computed attributes (id, gateway, address, ...): from
	// Prior when the resource exists, derived when they can be known before
	// apply (a network's gateway, a server's address), Unknown otherwise.
	Computed map[string]any
	// DependsOn are the addresses of resource instances this one depends on,
	// through references or depends_on, sorted.
	DependsOn []string
	// AttrRefs says, for each attribute in Attrs, which computed attributes of
	// other resources its value was derived from, as "address.attr" strings
	// (for example "image.base.id"), sorted. The planner uses it to know which
	// attributes become unknown when a dependency is replaced.
	AttrRefs  map[string][]string
	Lifecycle Lifecycle
	// DeclRange is where the resource block is declared.
	DeclRange hcl.Range
}

// Lifecycle holds the lifecycle meta-argument.
type Lifecycle struct {
	PreventDestroy      bool
	CreateBeforeDestroy bool
	// IgnoreChanges lists attribute names; ["all"] ignores every attribute.
	IgnoreChanges []string
}

// Resource returns the instance with the given address, or nil.
func (s *Stack) Resource(addr string) *Resource {
	i := sort.Search(len(s.Resources), func(i int) bool { return s.Resources[i].Address >= addr })
	if i < len(s.Resources) && s.Resources[i].Address == addr {
		return s.Resources[i]
	}
	return nil
}

// AttrSchema describes one attribute of a resource kind.
type AttrSchema struct {
	Name string
	// Type is one of "string", "number", "bool", "size", "list(string)",
	// "map(string)", "list(object)" (server networks) or "object" (a server's
	// ready block, a map[string]any).
	Type     string
	Required bool
	// Computed attributes are set by kiln, never by the template.
	Computed bool
	// ForceNew means a change of this attribute replaces the resource.
	ForceNew bool
	// Default, when not nil, is used when the attribute is not set.
	Default any
}

// KindSchema describes a resource kind.
type KindSchema struct {
	Kind  string
	Attrs []AttrSchema
}

// Attr returns the schema of an attribute, or nil.
func (k *KindSchema) Attr(name string) *AttrSchema {
	for i := range k.Attrs {
		if k.Attrs[i].Name == name {
			return &k.Attrs[i]
		}
	}
	return nil
}
