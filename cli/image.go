package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/planner"
)

const imageUsage = `Usage: kiln image list [-json]
       kiln image prune [-auto-approve] [-json]

  list     List the images cached on every agent that is up: agent, sha256,
           format, size and the stacks that use it.
  prune    Remove from every agent's cache the images no stack uses (no
           image resource and no server refers to them). It asks first, on
           a terminal; it is refused while an apply fetches an image given
           without a sha256. Needs an admin token.

Options:
  -auto-approve      Prune without asking. Without a terminal to ask on,
                     prune refuses unless this is given.
  -json              list: a JSON array of the API's ImageInfo; prune: the
                     array of the images removed.
` + serversUsage

func runImage(e *Env, c *command, args []string) int {
	v := e.newVerb(c, withAgent, flagAutoApprove|flagJSON)
	sub, rest, code, ok := v.parseSub(args, "want a subcommand: list or prune", "list", "prune")
	if !ok {
		return code
	}
	cmd := "image " + sub
	if !e.wantArgs(c, rest, 0) {
		return ExitError
	}
	if sub == "prune" && !v.mayConfirm(cmd, "prune") {
		return ExitError
	}
	return v.with(cmd, func(r *remote) int {
		ctx := context.Background()
		list, err := r.c.Images(ctx)
		if err != nil {
			return e.apiErr(cmd, err)
		}
		list = nonNil(list)
		if sub == "list" {
			if v.asJSON {
				return e.printJSON(list)
			}
			if len(list) == 0 {
				fmt.Fprintln(e.Stdout, "No cached images.")
				return ExitOK
			}
			e.printImages(list, true)
			return ExitOK
		}

		if !v.auto {
			var unused []api.ImageInfo
			for _, i := range list {
				if len(i.Stacks) == 0 {
					unused = append(unused, i)
				}
			}
			if len(unused) == 0 {
				fmt.Fprintln(e.Stdout, "No image seems unused (the servers check again when pruning).")
			} else {
				fmt.Fprintln(e.Stdout, "These images seem unused and will be removed:")
				e.printImages(unused, false)
			}
			if !e.confirm("Prune the images no stack uses?") {
				fmt.Fprintln(e.Stdout, "Prune cancelled.")
				return ExitError
			}
		}
		raw, err := r.c.PruneImages(ctx)
		if err != nil {
			return e.apiErr(cmd, err)
		}
		removed := []api.ImageInfo{}
		if err := json.Unmarshal(raw, &removed); err != nil {
			fmt.Fprintf(e.Stderr, "kiln %s: decode the answer: %v\n", cmd, err)
			return ExitError
		}
		if v.asJSON {
			return e.printJSON(removed)
		}
		if len(removed) == 0 {
			fmt.Fprintln(e.Stdout, "Nothing to prune.")
			return ExitOK
		}
		var total int64
		for _, i := range removed {
			total += i.Size
		}
		e.printImages(removed, false)
		fmt.Fprintf(e.Stdout, "Removed %d images (%s).\n", len(removed), planner.FormatSize(total))
		return ExitOK
	})
}

func (e *Env) printImages(list []api.ImageInfo, stacks bool) {
	head := "AGENT\tSHA256\tFORMAT\tSIZE"
	if stacks {
		head += "\tSTACKS"
	}
	writeTable(e.Stdout, head, list, func(i api.ImageInfo) string {
		line := fmt.Sprintf("%s\t%s\t%s\t%s", i.Agent, shortSum(i.SHA256), i.Format, planner.FormatSize(i.Size))
		if stacks {
			line += "\t" + dash(strings.Join(i.Stacks, ","))
		}
		return line
	})
}

// shortSum shortens a sha256 to 12 digits, as images are usually shown.
func shortSum(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// waitEmbeddedAgent waits (10 s at most) for the embedded default's agent
// to be registered and up, so that verbs that run actions or ask the agents
// (apply, destroy, image, gc, console) find it there.
func (e *Env) waitEmbeddedAgent(ctx context.Context, r *remote, cmd string) bool {
	if !r.embedded() || r.node.Agent == nil {
		return true
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		list, err := r.c.Agents(ctx)
		if err == nil {
			for _, a := range list {
				if a.ID == r.node.Agent.ID() && a.Status == "up" {
					return true
				}
			}
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(e.Stderr, "kiln %s: the embedded agent did not register within 10s\n", cmd)
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}
