package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/kiln-dev/kiln/api"
)

const stacksUsage = `Usage: kiln stacks [options]

  List the stacks the token can see: name, project, status, resources,
  expiry and last change.

Options:
  -json              Print a JSON array of the API's StackSummary.
` + serversUsage

func runStacks(e *Env, c *command, args []string) int {
	v := e.newVerb(c, serverOnly, flagJSON)
	return v.run(args, 0, func(r *remote, _ []string) int {
		list, err := r.c.Stacks(context.Background())
		return printList(v, c.name, list, err, "No stacks.", "NAME\tPROJECT\tSTATUS\tRESOURCES\tEXPIRES\tUPDATED", func(s api.StackSummary) string {
			exp := "-"
			if !s.Expires.IsZero() {
				exp = s.Expires.Local().Format(time.DateTime)
			}
			return fmt.Sprintf("%s\t%s\t%s\t%d\t%s\t%s", s.Name, dash(s.Project), s.Status, s.Resources, exp, s.Updated.Local().Format(time.DateTime))
		})
	})
}
