package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/client"
)

const applyUsage = `Usage: kiln apply [options] PATH

  Plan the template at PATH against the stack's actual state, show the plan,
  ask for confirmation on a terminal, then submit it and follow the
  operation: one line per action with its state and elapsed time, a final
  summary and the outputs. Running it again after a failure repairs the
  stack from where it stopped.

  Ctrl-C stops following and says how to follow again; the operation goes on
  in the daemon. In the embedded default (no KILN_ADDR) there is no daemon
  to finish it, so apply always waits, and Ctrl-C cancels the operation: no
  new action starts, and the next apply repairs what was left.

Options:
` + varsUsage + `  -auto-approve      Apply without asking. Without a terminal to ask on,
                     apply refuses unless this is given.
  -detach            Print the operation id as soon as it is accepted and
                     exit (not in the embedded default).
  -ttl DURATION      Destroy the stack when DURATION (like 2h) has passed;
                     renew it with kiln stack renew.
  -json              Print one JSON document at the end (see docs/cli.md);
                     the plan and progress are not printed.
  -no-color          Do not colour the output.
` + serversUsage

func runApply(e *Env, c *command, args []string) int {
	v := e.newVerb(c, withAgent, flagVars|flagAutoApprove|flagDetach|flagJSON|flagNoColor)
	ttl := v.flags.Duration("ttl", 0, "")
	pos, code, ok := v.parse(args, 1)
	if !ok {
		return code
	}
	if *ttl < 0 {
		fmt.Fprintf(e.Stderr, "kiln apply: -ttl must be positive\n")
		return ExitError
	}
	// Validate locally first: diagnostics with snippets, and no daemon
	// started for a template with errors.
	l := v.loadValid(pos[0], nil)
	if l == nil {
		return ExitError
	}
	if v.asJSON && !v.auto {
		fmt.Fprintf(e.Stderr, "kiln apply: -json needs -auto-approve (there is no prompt in JSON mode)\n")
		return ExitError
	}
	if !v.mayConfirm("apply", "apply") {
		return ExitError
	}
	return v.with(c.name, func(r *remote) int {
		stack := l.stack.Name
		tmpl := apiTemplate(l)

		ctx, stop := interruptible()
		defer stop()

		if !e.finishUnfinished(ctx, r, c.name, stack) {
			return ExitError
		}
		plan, diags, err := r.c.PlanDiagnostics(ctx, stack, api.PlanRequest{Template: tmpl})
		if err != nil {
			if len(diags) > 0 {
				e.writeAPIDiags(diags)
				return ExitError
			}
			return e.apiErr(c.name, err)
		}
		e.writeAPIDiags(diags) // warnings, such as a refresh an agent could not answer
		if !v.asJSON {
			fmt.Fprint(e.Stdout, plan.Text)
		}
		if !plan.HasChanges && *ttl == 0 {
			outs, _ := r.c.Outputs(ctx, stack, false)
			return e.noChanges(stack, "apply", "\nNo changes: the stack matches the template.", outs, v.asJSON)
		}
		if !v.auto && !e.confirm(fmt.Sprintf("Apply these changes to stack %s?", stack)) {
			fmt.Fprintln(e.Stdout, "Apply cancelled.")
			return ExitError
		}
		req := api.ApplyRequest{PlanID: plan.PlanID}
		if *ttl > 0 {
			req.TTL = ttl.String()
		}
		ref, err := r.c.Apply(ctx, stack, req)
		if client.IsNotFound(err) {
			// The daemon no longer holds the plan (or its bundle): apply the
			// template, which the leader plans again.
			req.PlanID, req.Template = "", &tmpl
			ref, err = r.c.Apply(ctx, stack, req)
		}
		if err != nil {
			return e.apiErr(c.name, err)
		}
		if ref.NoChanges || ref.OperationID == "" {
			outs, _ := r.c.Outputs(ctx, stack, false)
			return e.noChanges(stack, "apply", "\nNo changes.", outs, v.asJSON)
		}
		return e.followOp(ctx, r, c.name, stack, "apply", ref.OperationID, v.detach, v.asJSON)
	})
}

// noChanges ends an operation that had nothing to do (kind apply or
// destroy): the JSON document, or the line done and the outputs.
func (e *Env) noChanges(stack, kind, done string, outs map[string]api.OutputValue, asJSON bool) int {
	if asJSON {
		return e.printJSON(opJSON{Stack: stack, Kind: kind, Status: "no_changes", Actions: []api.ActionStatus{}, Outputs: nonNilOutputs(outs)})
	}
	fmt.Fprintln(e.Stdout, done)
	e.printOutputs(outs)
	return ExitOK
}

// followOp follows an accepted operation to its end (or detaches) and
// prints the summary and outputs, or the JSON document.
func (e *Env) followOp(ctx context.Context, r *remote, cmd, stack, kind, id string, detach, asJSON bool) int {
	if detach && r.embedded() {
		fmt.Fprintf(e.Stderr, "kiln %s: -detach ignored: the embedded server stops with this process, so it waits for the operation\n", cmd)
		detach = false
	}
	if detach {
		if asJSON {
			return e.printJSON(opJSON{Stack: stack, OperationID: id, Kind: kind, Status: "running", Actions: []api.ActionStatus{}, Outputs: map[string]api.OutputValue{}, Detached: true})
		}
		fmt.Fprintf(e.Stdout, "%s\n", id)
		fmt.Fprintf(e.Stderr, "Operation %s accepted. Follow it with `kiln events %s -follow` or `kiln status %s`.\n", id, stack, stack)
		return ExitOK
	}
	if !asJSON {
		fmt.Fprintf(e.Stdout, "\nOperation %s:\n", id)
	}
	op, err := e.follow(ctx, r, id, asJSON)
	if err != nil && errors.Is(err, context.Canceled) {
		if !r.embedded() {
			fmt.Fprintf(e.Stderr, "\nDetached; operation %s goes on. Follow it with `kiln events %s -follow` or `kiln status %s`.\n", id, stack, stack)
			return ExitError
		}
		// Embedded: nobody is left to finish it. Cancel, and wait for the
		// running actions to end so the store is consistent.
		fmt.Fprintf(e.Stderr, "\nInterrupted: cancelling operation %s (actions already running finish)...\n", id)
		bg, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if _, cerr := r.c.CancelOperation(bg, id); cerr != nil {
			fmt.Fprintf(e.Stderr, "kiln %s: cancel: %v\n", cmd, cerr)
		}
		op, err = e.follow(bg, r, id, asJSON)
		if err != nil {
			return e.apiErr(cmd, err)
		}
		fmt.Fprintf(e.Stderr, "Cancelled. Run `kiln %s` again to finish.\n", cmd)
	} else if err != nil {
		return e.apiErr(cmd, err)
	}
	outs := map[string]api.OutputValue{}
	if kind == "apply" {
		if o, err := r.c.Outputs(context.Background(), stack, false); err == nil {
			outs = o
		}
	}
	if asJSON {
		code := e.printJSON(opJSON{Stack: stack, OperationID: id, Kind: kind, Status: op.Status, Error: op.Error, Actions: nonNil(op.Actions), Outputs: outs})
		if !opSucceeded(op.Status) {
			return ExitError
		}
		return code
	}
	fmt.Fprintf(e.Stdout, "\n%s\n", summary(op))
	if opSucceeded(op.Status) {
		e.printOutputs(outs)
		return ExitOK
	}
	return ExitError
}

func apiTemplate(l *loaded) api.Template {
	t := api.Template{Bundle: api.Bundle(l.tmpl.Bundle), Files: l.tmpl.Files, Dir: l.tmpl.Dir, Env: l.opts.Env}
	for _, kv := range l.opts.Vars {
		t.Vars = append(t.Vars, api.Var{Name: kv.Name, Value: kv.Value})
	}
	for _, f := range l.opts.VarFiles {
		t.VarFiles = append(t.VarFiles, api.VarFile{Name: f.Name, Content: f.Bytes})
	}
	return t
}

// writeAPIDiags prints diagnostics the daemon returned.
func (e *Env) writeAPIDiags(diags []api.Diagnostic) {
	for _, d := range diags {
		loc := ""
		if d.File != "" {
			loc = fmt.Sprintf("%s:%d:%d: ", d.File, d.Line, d.Column)
		}
		fmt.Fprintf(e.Stderr, "%s%s: %s\n", loc, d.Severity, d.Summary)
		if d.Detail != "" {
			fmt.Fprintf(e.Stderr, "  %s\n", d.Detail)
		}
	}
}

func nonNilOutputs(m map[string]api.OutputValue) map[string]api.OutputValue {
	if m == nil {
		return map[string]api.OutputValue{}
	}
	return m
}
