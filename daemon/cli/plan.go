package cli

import (
	"fmt"

	"github.com/kiln-dev/kiln/planner"
)

var planCommand = &command{
	name:     "plan",
	synopsis: "Show what applying a template would change",
	usage: `Usage: kiln plan [options] PATH

  Load the template at PATH (a .hcl file or a directory) and show the changes
  that applying it would make: + create, ~ update in place, -/+ replace,
  - delete. Until kiln has a state store, plan compares against nothing, so
  every resource is a create.

Options:
` + varsUsage + `  -json              Print the plan as one JSON document on stdout
                     (see docs/plan-json.md).
  -detailed-exitcode Exit 0 when there are no changes, 2 when there are
                     changes, 1 on error. Without it, success is always 0.
  -no-color          Do not colour the output.
`,
	run: runPlan,
}

func runPlan(e *Env, c *command, args []string) int {
	fs := newFlagSet(c.name)
	var v varFlags
	v.register(fs)
	asJSON := fs.Bool("json", false, "")
	detailed := fs.Bool("detailed-exitcode", false, "")
	noColor := fs.Bool("no-color", false, "")
	pos, code, ok := e.parseArgs(c, fs, args)
	if !ok {
		return code
	}
	if !e.wantArgs(c, pos, 1) {
		return ExitError
	}
	// No store yet: the actual state is empty.
	var actual *planner.State
	l := e.load(c.name, pos[0], &v, actual.Prior())
	if l == nil {
		return ExitError
	}
	e.writeDiags(l, l.diags, *noColor)
	if l.diags.HasErrors() || l.stack == nil {
		return ExitError
	}
	r, err := planner.Plan(l.stack, actual)
	if err != nil {
		fmt.Fprintf(e.Stderr, "kiln plan: %v\n", err)
		return ExitError
	}
	if *asJSON {
		err = planner.RenderJSON(e.Stdout, r)
	} else {
		err = planner.RenderText(e.Stdout, r, planner.TextOptions{Color: e.color(e.Stdout, *noColor)})
	}
	if err != nil {
		fmt.Fprintf(e.Stderr, "kiln plan: %v\n", err)
		return ExitError
	}
	if *detailed && r.HasChanges() {
		return ExitChanges
	}
	return ExitOK
}
