package cli

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/kiln-dev/kiln/api"
)

const eventsUsage = `Usage: kiln events [options] NAME

  Print the events of stack NAME, oldest first: time, level, node, the
  resource and the message. The daemon keeps a bounded number per stack.

Options:
  -follow            Keep waiting for new events (a blocking query) until
                     Ctrl-C.
  -json              One JSON object per event per line (the API's Event).
` + serversUsage

func runEvents(e *Env, c *command, args []string) int {
	v := e.newVerb(c, serverOnly, flagFollow|flagJSON)
	return v.run(args, 1, func(r *remote, pos []string) int {
		ctx, stop := interruptible()
		defer stop()
		enc := json.NewEncoder(e.Stdout)
		var index uint64
		for {
			wait := time.Duration(0)
			if v.follow && index > 0 {
				wait = 30 * time.Second
			}
			resp, err := r.c.Events(ctx, pos[0], index, wait)
			if err != nil {
				if ctx.Err() != nil {
					return ExitOK
				}
				return e.apiErr(c.name, err)
			}
			for _, ev := range resp.Events {
				if v.asJSON {
					enc.Encode(ev)
				} else {
					e.eventLine(ev)
				}
			}
			if !v.follow {
				return ExitOK
			}
			if resp.Index > index {
				index = resp.Index
			} else if index == 0 {
				index = 1
			}
		}
	})
}

func (e *Env) eventLine(ev api.Event) {
	about := ""
	if ev.Address != "" {
		about = ev.Address + ": "
	}
	node := ""
	if ev.Node != "" {
		node = " [" + ev.Node + "]"
	}
	fmt.Fprintf(e.Stdout, "%s %-5s%s %s%s\n", ev.Time.Local().Format("2006-01-02 15:04:05"), ev.Level, node, about, ev.Message)
}
