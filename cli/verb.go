package cli

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/kiln-dev/kiln/spec"
)

// verb is the start that the verbs talking to the daemon share: a flag set
// with -servers, the parse (usage on -h, the error and usage on a bad flag),
// the count of positional arguments, and the connection to the servers of
// -servers or KILN_ADDR, or to the embedded default.
//
//	v := e.newVerb(c, serverOnly, flagJSON)
//	return v.run(args, 1, func(r *remote, pos []string) int {
//		... r.c ... v.asJSON ...
//	})
//
// A verb with checks of its own between the parse and the connection calls
// v.parse and v.with instead of v.run. The verbs that talk to no daemon
// (validate, fmt, server, agent, version, help) use the same flag set and
// parse, without -servers (mode offline).
type verb struct {
	e     *Env
	c     *command
	flags *flag.FlagSet
	sf    serverFlags
	mode  dialMode

	// The shared flags the verb asked newVerb for.
	asJSON  bool     // -json
	noColor bool     // -no-color
	auto    bool     // -auto-approve
	detach  bool     // -detach
	follow  bool     // -follow
	vars    varFlags // -stack, -var, -var-file
}

// dialMode says whether a verb talks to the daemon, and whether the
// embedded default runs an agent for it.
type dialMode int

const (
	serverOnly dialMode = iota // the verb only asks the servers
	withAgent                  // the verb runs actions (apply, destroy, ...)
	offline                    // the verb talks to no daemon: no -servers
)

// verbFlag names a flag that several verbs share; newVerb registers those
// it is given, into the verb's fields of the same meaning.
type verbFlag uint

const (
	flagJSON        verbFlag = 1 << iota // -json: v.asJSON
	flagNoColor                          // -no-color: v.noColor
	flagAutoApprove                      // -auto-approve: v.auto
	flagDetach                           // -detach: v.detach
	flagFollow                           // -follow: v.follow
	flagVars                             // -stack, -var, -var-file: v.vars
)

// newVerb starts verb c: its flag set has -servers (unless offline) and the
// shared flags in shared, and the verb adds its own flags to v.flags before
// it parses.
func (e *Env) newVerb(c *command, mode dialMode, shared verbFlag) *verb {
	v := &verb{e: e, c: c, flags: newFlagSet(c.name), mode: mode}
	if mode != offline {
		v.sf.register(v.flags)
	}
	for _, f := range []struct {
		bit  verbFlag
		name string
		p    *bool
	}{
		{flagJSON, "json", &v.asJSON},
		{flagNoColor, "no-color", &v.noColor},
		{flagAutoApprove, "auto-approve", &v.auto},
		{flagDetach, "detach", &v.detach},
		{flagFollow, "follow", &v.follow},
	} {
		if shared&f.bit != 0 {
			v.flags.BoolVar(f.p, f.name, false, "")
		}
	}
	if shared&flagVars != 0 {
		v.vars.register(v.flags)
	}
	return v
}

// parse parses args and, when n >= 0, checks that there are n positional
// arguments. When ok is false the usage or the error is printed and the
// verb returns code.
func (v *verb) parse(args []string, n int) (pos []string, code int, ok bool) {
	pos, code, ok = v.e.parseArgs(v.c, v.flags, args)
	if !ok {
		return nil, code, false
	}
	if n >= 0 && !v.e.wantArgs(v.c, pos, n) {
		return nil, ExitError, false
	}
	return pos, ExitOK, true
}

// parseSub parses a verb made of subcommands (kiln image list): it wants
// one of subs first, and prints "kiln VERB: " then missing, or unknown
// subcommand, with the usage when there is none or another. sub and rest
// are the subcommand and the positional arguments after it; when ok is
// false the verb returns code.
func (v *verb) parseSub(args []string, missing string, subs ...string) (sub string, rest []string, code int, ok bool) {
	pos, code, ok := v.parse(args, -1)
	if !ok {
		return "", nil, code, false
	}
	if len(pos) == 0 {
		fmt.Fprintf(v.e.Stderr, "kiln %s: %s\n\n%s", v.c.name, missing, v.c.usage)
		return "", nil, ExitError, false
	}
	if !slices.Contains(subs, pos[0]) {
		fmt.Fprintf(v.e.Stderr, "kiln %s: unknown subcommand %q\n\n%s", v.c.name, pos[0], v.c.usage)
		return "", nil, ExitError, false
	}
	return pos[0], pos[1:], ExitOK, true
}

// connect connects to the daemon; errors say "kiln CMD: ...". It returns nil
// when it cannot (the error printed): the verb returns ExitError.
func (v *verb) connect(cmd string) *remote {
	return v.e.dial(cmd, &v.sf, v.mode == withAgent)
}

// servers returns the servers named by -servers or KILN_ADDR, "" for the
// embedded default.
func (v *verb) servers() string {
	return v.e.remoteAddr(&v.sf)
}

// with connects under the name cmd, runs act with the connection and
// closes it: act's result is the verb's. When it cannot connect the error
// is printed and the verb returns ExitError.
func (v *verb) with(cmd string, act func(r *remote) int) int {
	r := v.connect(cmd)
	if r == nil {
		return ExitError
	}
	defer r.close()
	return act(r)
}

// run is parse, then with under the verb's own name: all that a verb with
// no checks of its own does around what it asks the daemon. act gets the
// positional arguments.
func (v *verb) run(args []string, n int, act func(r *remote, pos []string) int) int {
	pos, code, ok := v.parse(args, n)
	if !ok {
		return code
	}
	return v.with(v.c.name, func(r *remote) int { return act(r, pos) })
}

// mayConfirm reports whether a verb that asks before it changes anything
// may go on: with -auto-approve, or with a terminal to ask on (never in
// JSON mode). When not, it says so under cmd: "run with -auto-approve to
// what without confirmation".
func (v *verb) mayConfirm(cmd, what string) bool {
	if v.auto || (!v.asJSON && v.e.stdinTerminal()) {
		return true
	}
	fmt.Fprintf(v.e.Stderr, "kiln %s: no terminal to confirm on; run with -auto-approve to %s without confirmation\n", cmd, what)
	return false
}

// loadValid loads the template at p with the verb's -var flags and prints
// its diagnostics (coloured unless -no-color). It returns nil when the
// template has errors or cannot be read: the verb returns ExitError.
func (v *verb) loadValid(p string, prior spec.Prior) *loaded {
	l := v.e.load(v.c.name, p, &v.vars, prior)
	if l == nil {
		return nil
	}
	v.e.writeDiags(l, l.diags, v.noColor)
	if l.diags.HasErrors() || l.stack == nil {
		return nil
	}
	return l
}

// interruptible is the context of a verb that Ctrl-C (or SIGTERM) stops.
func interruptible() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}
