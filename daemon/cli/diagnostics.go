package cli

import (
	"io"
	"path"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"

	"github.com/kiln-dev/kiln/spec"
)

// SpecOptions returns the options that load this template with spec: the
// default stack name, which bundle entries are the template, and how to
// name files in diagnostics.
//
// TODO: set Dir: t.Dir and Files: t.Files once spec.Options has them; until
// then spec takes every top-level *.hcl of the bundle.
func (t *Template) SpecOptions() spec.Options {
	return spec.Options{Stack: t.Name}
}

// writeDiagnostics renders diags with their source snippets.
//
// TODO: replace with spec.WriteDiagnostics once it lands.
func writeDiagnostics(w io.Writer, diags hcl.Diagnostics, t *Template, opts spec.Options, width int, color bool) error {
	files := map[string]*hcl.File{}
	p := hclparse.NewParser()
	for name, data := range t.Bundle {
		if !strings.HasSuffix(name, ".hcl") {
			continue
		}
		f, _ := p.ParseHCL(data, name)
		if f == nil {
			continue
		}
		// spec may name a file by its bundle key or with the directory prefix.
		files[name] = f
		files[path.Join(filepath.ToSlash(t.Dir), name)] = f
	}
	for _, vf := range opts.VarFiles {
		if f, _ := p.ParseHCL(vf.Bytes, vf.Name); f != nil {
			files[vf.Name] = f
		}
	}
	return hcl.NewDiagnosticTextWriter(w, files, uint(width), color).WriteDiagnostics(diags)
}
