package cli

import (
	"fmt"
	"time"
)

const consoleUsage = `Usage: kiln console [options] STACK ADDRESS

  Print the serial console log of server ADDRESS (server.web[0]) of stack
  STACK, as the agent that runs it has it: its last 256 KiB.

Options:
  -follow            Keep printing what the server writes, until Ctrl-C.
  -interval D        How often -follow asks for more (default 1s).
` + serversUsage

func runConsole(e *Env, c *command, args []string) int {
	v := e.newVerb(c, withAgent, flagFollow)
	interval := v.flags.Duration("interval", time.Second, "")
	pos, code, ok := v.parse(args, 2)
	if !ok {
		return code
	}
	if *interval <= 0 {
		fmt.Fprintf(e.Stderr, "kiln console: -interval must be positive\n")
		return ExitError
	}
	stack, address := pos[0], pos[1]
	return v.with(c.name, func(r *remote) int {
		ctx, stop := interruptible()
		defer stop()
		chunk, err := r.c.ConsoleFrom(ctx, stack, address, -1)
		if err != nil {
			return e.apiErr(c.name, err)
		}
		fmt.Fprint(e.Stdout, chunk.Text)
		if !v.follow {
			return ExitOK
		}
		next := chunk.Next
		t := time.NewTicker(*interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return ExitOK
			case <-t.C:
			}
			chunk, err := r.c.ConsoleFrom(ctx, stack, address, next)
			if err != nil {
				if ctx.Err() != nil {
					return ExitOK
				}
				return e.apiErr(c.name, err)
			}
			if chunk.Next < next {
				fmt.Fprintln(e.Stdout, "\n[console log truncated: the server was re-created]")
			}
			fmt.Fprint(e.Stdout, chunk.Text)
			next = chunk.Next
		}
	})
}
