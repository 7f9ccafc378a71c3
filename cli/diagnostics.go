package cli

import (
	"io"
	"path/filepath"

	"github.com/hashicorp/hcl/v2"

	"github.com/kiln-dev/kiln/spec"
)

// SpecOptions returns the options that load this template with spec: the
// default stack name, which bundle entries are the template, and the
// directory that prefixes file names in diagnostics.
func (t *Template) SpecOptions() spec.Options {
	return spec.Options{Stack: t.Name, Dir: filepath.ToSlash(t.Dir), Files: t.Files}
}

// writeDiagnostics renders diags with their source snippets.
func writeDiagnostics(w io.Writer, diags hcl.Diagnostics, t *Template, opts spec.Options, width int, color bool) error {
	return spec.WriteDiagnostics(w, diags, t.Bundle, opts, width, color)
}
