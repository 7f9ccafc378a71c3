package cli

import (
	"context"
	"fmt"

	"github.com/kiln-dev/kiln/api"
)

const gcUsage = `Usage: kiln gc [-force] [-json]

  Ask every agent that is up for the objects on its host that kiln tagged
  (domains, volumes, bridges, iptables rules in kiln's chains, dnsmasq
  directories, the agent's own records) and that no stack owns: left
  behind by a stack forgotten without a destroy, or by a crash. A stack
  with an operation in progress owns everything of its name. Without
  -force nothing is removed. Needs an admin token.

Options:
  -force             Remove what is listed.
  -json              Print the API's GCReport: {"orphans": [...], "removed"}.
` + serversUsage

func runGC(e *Env, c *command, args []string) int {
	v := e.newVerb(c, withAgent, flagJSON)
	force := v.flags.Bool("force", false, "")
	return v.run(args, 0, func(r *remote, _ []string) int {
		rep, err := r.c.GC(context.Background(), *force)
		rep.Orphans = nonNil(rep.Orphans)
		return answered(v, c.name, rep, err, func(rep api.GCReport) int {
			if len(rep.Orphans) == 0 {
				fmt.Fprintln(e.Stdout, "Nothing to collect: every object of kiln belongs to a stack.")
				return ExitOK
			}
			writeTable(e.Stdout, "AGENT\tKIND\tNAME\tOWNER", rep.Orphans, func(o api.Orphan) string {
				return fmt.Sprintf("%s\t%s\t%s\t%s", o.Agent, o.Kind, o.Name, o.Owner)
			})
			if rep.Removed {
				fmt.Fprintf(e.Stdout, "Removed %d objects.\n", len(rep.Orphans))
			} else {
				fmt.Fprintf(e.Stdout, "%d objects no stack owns; run kiln gc -force to remove them.\n", len(rep.Orphans))
			}
			return ExitOK
		})
	})
}
