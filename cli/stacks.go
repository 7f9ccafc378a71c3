package cli

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/kiln-dev/kiln/api"
)

var stacksCommand = &command{
	name:     "stacks",
	synopsis: "List the stacks",
	usage: `Usage: kiln stacks [options]

  List the stacks the token can see: name, project, status, resources,
  expiry and last change.

Options:
  -json              Print a JSON array of the API's StackSummary.
` + serversUsage,
	run: runStacks,
}

func runStacks(e *Env, c *command, args []string) int {
	v := e.newVerb(c, serverOnly)
	asJSON := v.flags.Bool("json", false, "")
	r, _, code := v.open(args, 0)
	if r == nil {
		return code
	}
	defer r.close()
	list, err := r.c.Stacks(context.Background())
	if err != nil {
		return e.apiErr(c.name, err)
	}
	if list == nil {
		list = []api.StackSummary{}
	}
	if *asJSON {
		return e.printJSON(list)
	}
	if len(list) == 0 {
		fmt.Fprintln(e.Stdout, "No stacks.")
		return ExitOK
	}
	tw := tabwriter.NewWriter(e.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPROJECT\tSTATUS\tRESOURCES\tEXPIRES\tUPDATED")
	for _, s := range list {
		exp := "-"
		if !s.Expires.IsZero() {
			exp = s.Expires.Local().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", s.Name, dash(s.Project), s.Status, s.Resources, exp, s.Updated.Local().Format(time.DateTime))
	}
	tw.Flush()
	return ExitOK
}
