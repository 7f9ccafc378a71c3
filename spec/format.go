package spec

import (
	"io"
	"path"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
)

// Format returns src in canonical layout (what kiln fmt writes). It does not
// check the syntax; FormatFile does.
func Format(src []byte) []byte {
	return hclwrite.Format(src)
}

// FormatFile checks the syntax of a template file and returns it in canonical
// layout. On a syntax error it returns nil and the diagnostics.
func FormatFile(name string, src []byte) ([]byte, hcl.Diagnostics) {
	if _, diags := hclsyntax.ParseConfig(src, name, hcl.InitialPos); diags.HasErrors() {
		return nil, diags
	}
	f, diags := hclwrite.ParseConfig(src, name, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diags
	}
	return f.Bytes(), nil
}

// WriteDiagnostics prints diagnostics the way HCL tools do: severity, summary,
// "on FILE line N", the source snippet with the problem underlined, and the
// detail. Sources come from the bundle (named with opts.Dir) and the var files.
// width wraps the text (0: no wrapping); color adds terminal colours.
func WriteDiagnostics(w io.Writer, diags hcl.Diagnostics, b Bundle, opts Options, width int, color bool) error {
	files := map[string]*hcl.File{}
	for name, src := range b {
		display := name
		if opts.Dir != "" {
			display = path.Join(opts.Dir, name)
		}
		files[display] = &hcl.File{Bytes: src}
	}
	for _, vf := range opts.VarFiles {
		files[vf.Name] = &hcl.File{Bytes: vf.Bytes}
	}
	if width < 0 {
		width = 0
	}
	return hcl.NewDiagnosticTextWriter(w, files, uint(width), color).WriteDiagnostics(diags)
}

// DiagnosticString renders one diagnostic as "FILE:LINE,COL: SUMMARY; DETAIL",
// the compact form used by -json output and tests.
func DiagnosticString(d *hcl.Diagnostic) string {
	var b strings.Builder
	if d.Subject != nil {
		b.WriteString(shortRange(*d.Subject))
		b.WriteString(": ")
	}
	b.WriteString(d.Summary)
	if d.Detail != "" {
		b.WriteString("; ")
		b.WriteString(d.Detail)
	}
	return b.String()
}
