package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/kiln-dev/kiln/api"
)

const stackUsage = `Usage: kiln stack renew [options] NAME -ttl DURATION

  renew    Set the TTL of stack NAME to DURATION from now (like 1h): the
           leader destroys the stack when it expires.

Options:
  -ttl DURATION      The new TTL (required).
  -json              Print the stack (the API's StackDetail) as JSON.
` + serversUsage

func runStack(e *Env, c *command, args []string) int {
	v := e.newVerb(c, serverOnly, flagJSON)
	ttl := v.flags.Duration("ttl", 0, "")
	pos, code, ok := v.parse(args, -1)
	if !ok {
		return code
	}
	if len(pos) == 0 || pos[0] != "renew" {
		fmt.Fprintf(e.Stderr, "kiln stack: want a subcommand: renew\n\n%s", c.usage)
		return ExitError
	}
	if !e.wantArgs(c, pos[1:], 1) {
		return ExitError
	}
	if *ttl <= 0 {
		fmt.Fprintf(e.Stderr, "kiln stack renew: -ttl DURATION is required (like -ttl 1h)\n")
		return ExitError
	}
	return v.with("stack renew", func(r *remote) int {
		st, err := r.c.Renew(context.Background(), pos[1], *ttl)
		return answered(v, "stack renew", st, err, func(st api.StackDetail) int {
			fmt.Fprintf(e.Stdout, "Stack %s now expires at %s.\n", st.Name, st.Expires.Local().Format(time.RFC3339))
			return ExitOK
		})
	})
}
