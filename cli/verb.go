package cli

import (
	"flag"
	"fmt"
	"slices"
)

// verb is the start that the verbs talking to the daemon share: a flag set
// with -servers, the parse (usage on -h, the error and usage on a bad flag),
// the count of positional arguments, and the connection to the servers of
// -servers or KILN_ADDR, or to the embedded default.
//
//	v := e.newVerb(c, serverOnly)
//	asJSON := v.flags.Bool("json", false, "")
//	r, pos, code := v.open(args, 1)
//	if r == nil {
//		return code
//	}
//	defer r.close()
//
// A verb with checks of its own between the parse and the connection calls
// v.parse and v.connect instead of v.open.
type verb struct {
	e     *Env
	c     *command
	flags *flag.FlagSet
	sf    serverFlags
	mode  dialMode
}

// dialMode says whether the embedded default runs an agent for a verb.
type dialMode bool

const (
	serverOnly dialMode = false // the verb only asks the servers
	withAgent  dialMode = true  // the verb runs actions (apply, destroy, ...)
)

// newVerb starts verb c: its flag set has -servers, and the verb adds its
// own flags to v.flags before it parses.
func (e *Env) newVerb(c *command, mode dialMode) *verb {
	v := &verb{e: e, c: c, flags: newFlagSet(c.name), mode: mode}
	v.sf.register(v.flags)
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
	return v.e.dial(cmd, &v.sf, bool(v.mode))
}

// servers returns the servers named by -servers or KILN_ADDR, "" for the
// embedded default.
func (v *verb) servers() string {
	return v.e.remoteAddr(&v.sf)
}

// open is parse, then connect under the verb's own name: all that a verb
// with no checks of its own does before it asks the daemon. When r is nil
// the error is printed and the verb returns code.
func (v *verb) open(args []string, n int) (r *remote, pos []string, code int) {
	pos, code, ok := v.parse(args, n)
	if !ok {
		return nil, nil, code
	}
	if r = v.connect(v.c.name); r == nil {
		return nil, nil, ExitError
	}
	return r, pos, ExitOK
}
