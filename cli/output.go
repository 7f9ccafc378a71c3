package cli

import (
	"context"
	"fmt"
)

const outputUsage = `Usage: kiln output [options] NAME [OUTPUT]

  Print the outputs of stack NAME as "name = value" lines, or the value of
  one OUTPUT alone (a string raw, anything else as JSON), ready for a
  script.

Options:
  -json              Print {"name": value, ...} (or the one value) as JSON.
  -sensitive         Show sensitive values (member or admin token).
` + serversUsage

func runOutput(e *Env, c *command, args []string) int {
	v := e.newVerb(c, serverOnly, flagJSON)
	sensitive := v.flags.Bool("sensitive", false, "")
	pos, code, ok := v.parse(args, -1)
	if !ok {
		return code
	}
	if len(pos) == 0 || len(pos) > 2 {
		e.wantArgs(c, pos, 1)
		return ExitError
	}
	return v.with(c.name, func(r *remote) int {
		outs, err := r.c.Outputs(context.Background(), pos[0], *sensitive)
		if err != nil {
			return e.apiErr(c.name, err)
		}
		if len(pos) == 2 {
			o, ok := outs[pos[1]]
			if !ok {
				fmt.Fprintf(e.Stderr, "kiln output: stack %s has no output %q\n", pos[0], pos[1])
				return ExitError
			}
			if v.asJSON {
				return e.printJSON(o.Value)
			}
			fmt.Fprintln(e.Stdout, formatValue(o.Value))
			return ExitOK
		}
		if v.asJSON {
			vals := map[string]any{}
			for k, o := range outs {
				vals[k] = o.Value
			}
			return e.printJSON(vals)
		}
		for _, k := range sortedKeys(outs) {
			fmt.Fprintf(e.Stdout, "%s = %s\n", k, formatValue(outs[k].Value))
		}
		return ExitOK
	})
}
