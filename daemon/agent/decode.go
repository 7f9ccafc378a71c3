package agent

import (
	"maps"

	"github.com/kiln-dev/kiln/executors/kinds"
	"github.com/kiln-dev/kiln/spec"
)

// Attribute decoding. Every adapter decodes an action's attributes once
// into its kind's typed struct (executors/kinds), through kinds.Decoder
// with spec's "known after apply" test: the decoder lives in
// executors/kinds, which may not import spec, so the agent hands it
// spec.IsUnknown. Errors name the resource and the attribute; a read that
// needs only some attributes takes their errors alone (kinds.For).

// decoder is the decoder of a's attributes.
func decoder(a Action) kinds.Decoder {
	return kinds.Decoder{Address: a.Address, Unknown: spec.IsUnknown}
}

// decode decodes a's attributes into out, a pointer to a typed attribute
// struct.
func decode(a Action, out any) error { return decoder(a).Decode(a.Attrs, out) }

// decodeResolved is decode with the attributes still unknown that a
// dependency settles (resolve) replaced first.
func decodeResolved(a Action, resolve map[string]any, out any) error {
	attrs := a.Attrs
	if len(resolve) > 0 {
		attrs = maps.Clone(a.Attrs)
		maps.Copy(attrs, resolve)
	}
	return decoder(a).Decode(attrs, out)
}

// depID is the id the only dependency of kind reported, "" when there is
// not exactly one or it has no id.
func depID(a Action, kind string) string {
	dep, ok := depOfKind(a, kind)
	if !ok {
		return ""
	}
	id, _ := dep["id"].(string)
	return id
}
