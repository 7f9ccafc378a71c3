package cli

import (
	"encoding/json"
	"fmt"

	"github.com/hashicorp/hcl/v2"
)

const validateUsage = `Usage: kiln validate [options] PATH

  Parse, evaluate and validate the template at PATH: a .hcl file, or a
  directory whose top-level *.hcl files make one template. Every problem is
  reported at once, with its file, line and column. Exits 0 when the template
  is valid and 1 otherwise.

Options:
` + varsUsage + `  -json              Print the result as JSON on stdout.
  -no-color          Do not colour the output.
`

func runValidate(e *Env, c *command, args []string) int {
	v := e.newVerb(c, offline, flagVars|flagJSON|flagNoColor)
	pos, code, ok := v.parse(args, 1)
	if !ok {
		return code
	}
	if v.asJSON {
		return e.validateJSON(v, pos[0])
	}
	l := v.loadValid(pos[0], nil)
	if l == nil {
		return ExitError
	}
	fmt.Fprintf(e.Stdout, "The template is valid: stack %s, %d resources, %d params, %d outputs.\n",
		l.stack.Name, len(l.stack.Resources), len(l.stack.Params), len(l.stack.Outputs))
	return ExitOK
}

// validateJSON is the document `kiln validate -json` prints.
type validateJSON struct {
	Valid        bool             `json:"valid"`
	ErrorCount   int              `json:"error_count"`
	WarningCount int              `json:"warning_count"`
	Diagnostics  []diagnosticJSON `json:"diagnostics"`
}

type diagnosticJSON struct {
	Severity string     `json:"severity"` // "error" or "warning"
	Summary  string     `json:"summary"`
	Detail   string     `json:"detail,omitempty"`
	Range    *rangeJSON `json:"range,omitempty"`
}

type rangeJSON struct {
	Filename string  `json:"filename"`
	Start    posJSON `json:"start"`
	End      posJSON `json:"end"`
}

type posJSON struct {
	Line   int `json:"line"`
	Column int `json:"column"`
	Byte   int `json:"byte"`
}

// validateJSON is validate -json: the document, exit 1 when the template
// has errors.
func (e *Env) validateJSON(v *verb, p string) int {
	l := e.load(v.c.name, p, &v.vars, nil)
	if l == nil {
		return ExitError
	}
	if err := writeValidateJSON(e, l.diags); err != nil {
		return e.fail("validate", err)
	}
	if l.diags.HasErrors() {
		return ExitError
	}
	return ExitOK
}

func writeValidateJSON(e *Env, diags hcl.Diagnostics) error {
	doc := validateJSON{Diagnostics: []diagnosticJSON{}}
	for _, d := range diags {
		j := diagnosticJSON{Severity: "error", Summary: d.Summary, Detail: d.Detail}
		if d.Severity == hcl.DiagWarning {
			j.Severity = "warning"
			doc.WarningCount++
		} else {
			doc.ErrorCount++
		}
		if d.Subject != nil {
			j.Range = &rangeJSON{
				Filename: d.Subject.Filename,
				Start:    posJSON{d.Subject.Start.Line, d.Subject.Start.Column, d.Subject.Start.Byte},
				End:      posJSON{d.Subject.End.Line, d.Subject.End.Column, d.Subject.End.Byte},
			}
		}
		doc.Diagnostics = append(doc.Diagnostics, j)
	}
	doc.Valid = doc.ErrorCount == 0
	enc := json.NewEncoder(e.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}
