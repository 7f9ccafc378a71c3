package cli

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/kiln-dev/kiln/daemon/api"
	"github.com/kiln-dev/kiln/planner"
)

var agentsCommand = &command{
	name:     "agents",
	synopsis: "List the agents and their state",
	usage: `Usage: kiln agents [options]

  List the agents: id, address, up or down (and why), capacity, actions
  assigned and not finished, last heartbeat.

Options:
  -json              Print a JSON array of the API's AgentInfo.
` + serversUsage,
	run: runAgents,
}

func runAgents(e *Env, c *command, args []string) int {
	fs := newFlagSet(c.name)
	var sf serverFlags
	sf.register(fs)
	asJSON := fs.Bool("json", false, "")
	pos, code, ok := e.parseArgs(c, fs, args)
	if !ok {
		return code
	}
	if !e.wantArgs(c, pos, 0) {
		return ExitError
	}
	r := e.connect(c.name, &sf)
	if r == nil {
		return ExitError
	}
	defer r.close()
	list, err := r.c.Agents(context.Background())
	if err != nil {
		return e.apiErr(c.name, err)
	}
	if list == nil {
		list = []api.AgentInfo{}
	}
	if *asJSON {
		return e.printJSON(list)
	}
	tw := tabwriter.NewWriter(e.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tADDRESS\tSTATUS\tCPUS\tMEMORY\tDISK\tACTIONS\tLAST HEARTBEAT")
	for _, a := range list {
		st := a.Status
		if a.StatusReason != "" {
			st += " (" + a.StatusReason + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%d\t%s\n", a.ID, dash(a.Address), st, a.Capacity.CPUs,
			planner.FormatSize(a.Capacity.MemoryBytes), planner.FormatSize(a.Capacity.DiskBytes), a.Actions,
			a.LastHeartbeat.Local().Format(time.DateTime))
	}
	tw.Flush()
	return ExitOK
}
