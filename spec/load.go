package spec

import "github.com/hashicorp/hcl/v2"

// Load parses, evaluates and validates the template in the bundle and returns
// the desired stack. All problems are returned at once as diagnostics; the
// stack is nil when there is any error.
func Load(b Bundle, opts Options) (*Stack, hcl.Diagnostics) {
	return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "not implemented"}}
}
