package cli

import (
	"fmt"
)

const destroyUsage = `Usage: kiln destroy [options] NAME

  Delete every resource of stack NAME, in reverse dependency order, and
  follow the operation as kiln apply does.

Options:
  -auto-approve      Destroy without asking. Without a terminal to ask on,
                     destroy refuses unless this is given.
  -detach            Print the operation id at once and exit (not in the
                     embedded default).
  -json              Print one JSON document at the end (as kiln apply).
` + serversUsage

func runDestroy(e *Env, c *command, args []string) int {
	v := e.newVerb(c, withAgent, flagAutoApprove|flagDetach|flagJSON)
	pos, code, ok := v.parse(args, 1)
	if !ok {
		return code
	}
	stack := pos[0]
	if !v.mayConfirm("destroy", "destroy") {
		return ExitError
	}
	return v.with(c.name, func(r *remote) int {
		ctx, stop := interruptible()
		defer stop()
		if !e.finishUnfinished(ctx, r, c.name, stack) {
			return ExitError
		}
		st, err := r.c.Stack(ctx, stack)
		if err != nil {
			return e.apiErr(c.name, err)
		}
		if !v.auto {
			fmt.Fprintf(e.Stdout, "Stack %s has %d resources; all of them will be deleted.\n", stack, len(st.Resources))
			if !e.confirm(fmt.Sprintf("Destroy stack %s?", stack)) {
				fmt.Fprintln(e.Stdout, "Destroy cancelled.")
				return ExitError
			}
		}
		ref, err := r.c.Destroy(ctx, stack)
		if err != nil {
			return e.apiErr(c.name, err)
		}
		if ref.NoChanges || ref.OperationID == "" {
			return e.noChanges(stack, "destroy", "Nothing to destroy.", nil, v.asJSON)
		}
		return e.followOp(ctx, r, c.name, stack, "destroy", ref.OperationID, v.detach, v.asJSON)
	})
}
