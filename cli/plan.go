package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/daemon/embedded"

	"github.com/kiln-dev/kiln/planner"
)

const planUsage = `Usage: kiln plan [options] PATH

  Load the template at PATH (a .hcl file or a directory) and show the changes
  that applying it would make: + create, ~ update in place, -/+ replace,
  - delete. It compares against the stack's actual state in the daemon
  (KILN_ADDR or -servers), or in the embedded store ./.kiln/ when there is
  one; with neither, against nothing, so every resource is a create.

Options:
` + varsUsage + serversUsage + `  -json              Print the plan as one JSON document on stdout
                     (see docs/plan-json.md).
  -detailed-exitcode Exit 0 when there are no changes, 2 when there are
                     changes, 1 on error. Without it, success is always 0.
  -no-color          Do not colour the output.
`

func runPlan(e *Env, c *command, args []string) int {
	v := e.newVerb(c, serverOnly, flagVars|flagJSON|flagNoColor)
	detailed := v.flags.Bool("detailed-exitcode", false, "")
	pos, code, ok := v.parse(args, 1)
	if !ok {
		return code
	}
	// No store yet: the actual state is empty.
	var actual *planner.State
	l := v.loadValid(pos[0], actual.Prior())
	if l == nil {
		return ExitError
	}
	if v.servers() != "" || e.embeddedExists() {
		return e.planRemote(v, l, *detailed)
	}
	r, err := planner.Plan(l.stack, actual)
	if err != nil {
		return e.fail("plan", err)
	}
	if v.asJSON {
		err = planner.RenderJSON(e.Stdout, r)
	} else {
		err = planner.RenderText(e.Stdout, r, planner.TextOptions{Color: e.color(e.Stdout, v.noColor)})
	}
	if err != nil {
		return e.fail("plan", err)
	}
	if *detailed && r.HasChanges() {
		return ExitChanges
	}
	return ExitOK
}

// embeddedExists reports whether the embedded store ./.kiln/ holds state.
func (e *Env) embeddedExists() bool {
	_, err := os.Stat(filepath.Join(e.Dir, embeddedDir, embedded.ServerDir))
	return err == nil
}

// planRemote plans on the daemon, against the stack's actual state.
func (e *Env) planRemote(v *verb, l *loaded, detailed bool) int {
	return v.with(v.c.name, func(r *remote) int {
		resp, diags, err := r.c.PlanDiagnostics(context.Background(), l.stack.Name, api.PlanRequest{Template: apiTemplate(l)})
		if err != nil {
			if len(diags) > 0 {
				e.writeAPIDiags(diags)
				return ExitError
			}
			return e.apiErr(v.c.name, err)
		}
		e.writeAPIDiags(diags) // warnings, such as a refresh an agent could not answer
		if v.asJSON {
			if code := e.printJSON(resp.Plan); code != ExitOK {
				return code
			}
		} else {
			fmt.Fprint(e.Stdout, resp.Text)
		}
		if detailed && resp.HasChanges {
			return ExitChanges
		}
		return ExitOK
	})
}
