package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/kiln-dev/kiln/api"
)

const statusUsage = `Usage: kiln status [options] NAME

  Show the status of stack NAME (COMPLETE, IN_PROGRESS, FAILED, ...), why,
  its operation in progress if any, and the state of every resource.
  Exits 1 when the stack is FAILED.

Options:
  -json              Print the stack as one JSON document (the API's
                     StackDetail, see docs/cli.md).
` + serversUsage

func runStatus(e *Env, c *command, args []string) int {
	v := e.newVerb(c, serverOnly, flagJSON)
	return v.run(args, 1, func(r *remote, pos []string) int {
		st, err := r.c.Stack(context.Background(), pos[0])
		if err != nil {
			return e.apiErr(c.name, err)
		}
		failed := st.Status == "FAILED"
		if v.asJSON {
			st.Resources = nonNil(st.Resources)
			if code := e.printJSON(st); code != ExitOK || !failed {
				return code
			}
			return ExitError
		}
		fmt.Fprintf(e.Stdout, "Stack:     %s (project %s)\n", st.Name, st.Project)
		fmt.Fprintf(e.Stdout, "Status:    %s\n", st.Status)
		if st.StatusReason != "" {
			fmt.Fprintf(e.Stdout, "Reason:    %s\n", st.StatusReason)
		}
		if st.ActiveOperation != "" {
			fmt.Fprintf(e.Stdout, "Operation: %s (in progress)\n", st.ActiveOperation)
		}
		if !st.Expires.IsZero() {
			fmt.Fprintf(e.Stdout, "Expires:   %s (in %s)\n", st.Expires.Format(time.RFC3339), roundDur(time.Until(st.Expires)))
		}
		fmt.Fprintf(e.Stdout, "Updated:   %s\n", st.Updated.Format(time.RFC3339))
		if len(st.Resources) > 0 {
			fmt.Fprintln(e.Stdout, "\nResources:")
			writeTable(e.Stdout, "  ADDRESS\tSTATUS\tREADY\tNODE\tPHYSICAL NAME\tERROR", st.Resources, func(res api.ResourceInfo) string {
				ready := "-"
				if res.ReadyAt != nil {
					ready = fmt.Sprintf("%.1fs at %s", res.ReadySeconds, res.ReadyAt.Local().Format(time.TimeOnly))
				}
				return fmt.Sprintf("  %s\t%s\t%s\t%s\t%s\t%s", res.Address, res.Status, ready, dash(res.Node), dash(res.PhysicalName), res.Error)
			})
		}
		e.printOutputs(st.Outputs)
		if failed {
			return ExitError
		}
		return ExitOK
	})
}
