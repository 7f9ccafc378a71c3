// Package cli is kiln's command-line interface: one file per verb, all run
// in-process through Env so that tests drive them without a subprocess.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"golang.org/x/term"

	"github.com/kiln-dev/kiln/spec"
)

// Exit codes shared by every command.
const (
	ExitOK      = 0
	ExitError   = 1
	ExitChanges = 2 // plan -detailed-exitcode: the plan has changes
)

// Env is everything a command touches outside its arguments. Tests build one
// with buffers and a fake environment; Run uses the real process.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Environ is the environment as "KEY=value" pairs.
	Environ []string
	// Dir is the working directory that relative paths are resolved against.
	Dir string
	// Terminal reports whether w is a terminal (colour, diagnostic width).
	// Nil means never.
	Terminal func(w io.Writer) bool

	// specLoad stands in for spec.Load in tests of the CLI's own plumbing;
	// nil means spec.Load.
	specLoad func(spec.Bundle, spec.Options) (*spec.Stack, hcl.Diagnostics)
}

// Run runs kiln with the process's own stdio, environment and working
// directory, and returns the exit code.
func Run(args []string) int {
	dir, err := os.Getwd()
	if err != nil {
		fmt.Fprintf(os.Stderr, "kiln: working directory: %v\n", err)
		return ExitError
	}
	e := &Env{
		Stdin:    os.Stdin,
		Stdout:   os.Stdout,
		Stderr:   os.Stderr,
		Environ:  os.Environ(),
		Dir:      dir,
		Terminal: isTerminal,
	}
	return e.Run(args)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// command is one verb of the CLI.
type command struct {
	name     string
	synopsis string
	// usage is the full help text, printed by `kiln NAME -h`.
	usage string
	run   func(e *Env, c *command, args []string) int
}

// commands lists every verb, in the order help shows them: its name, the
// line help gives it, its usage (the help text, in the verb's file with its
// run function).
var commands = []*command{
	{name: "validate", synopsis: "Check a template: syntax, types, references, addresses", usage: validateUsage, run: runValidate},
	{name: "fmt", synopsis: "Rewrite template files in the canonical style", usage: fmtUsage, run: runFmt},
	{name: "plan", synopsis: "Show what applying a template would change", usage: planUsage, run: runPlan},
	{name: "apply", synopsis: "Make a stack match a template", usage: applyUsage, run: runApply},
	{name: "destroy", synopsis: "Destroy every resource of a stack", usage: destroyUsage, run: runDestroy},
	{name: "status", synopsis: "Show a stack's status and the state of its resources", usage: statusUsage, run: runStatus},
	{name: "events", synopsis: "Show what happened to a stack", usage: eventsUsage, run: runEvents},
	{name: "output", synopsis: "Show a stack's outputs", usage: outputUsage, run: runOutput},
	{name: "stacks", synopsis: "List the stacks", usage: stacksUsage, run: runStacks},
	{name: "stack", synopsis: "Manage one stack (renew)", usage: stackUsage, run: runStack},
	{name: "token", synopsis: "Create, list and revoke API tokens (admin)", usage: tokenUsage, run: runToken},
	{name: "agents", synopsis: "List the agents and their state", usage: agentsUsage, run: runAgents},
	{name: "image", synopsis: "List the cached images of the hosts, prune the unused ones", usage: imageUsage, run: runImage},
	{name: "gc", synopsis: "List (and with -force remove) objects of kiln that no stack owns", usage: gcUsage, run: runGC},
	{name: "console", synopsis: "Show the serial console log of a server", usage: consoleUsage, run: runConsole},
	{name: "operator", synopsis: "Operate the server cluster (raft peers, snapshots)", usage: operatorUsage, run: runOperator},
	{name: "server", synopsis: "Run a kiln server (a raft voter serving the API)", usage: serverUsage, run: runServer},
	{name: "agent", synopsis: "Run a kiln agent (the executors of this host)", usage: agentUsage, run: runAgent},
	{name: "version", synopsis: "Print kiln's version", usage: versionUsage, run: runVersion},
	{name: "help", synopsis: "Show help for kiln or one command", usage: helpUsage},
}

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// Run runs the command line args (args[0] is the program name).
func (e *Env) Run(args []string) int {
	if len(args) < 2 {
		e.mainUsage(e.Stderr)
		return ExitError
	}
	name, rest := args[1], args[2:]
	switch name {
	case "-h", "-help", "--help":
		e.mainUsage(e.Stdout)
		return ExitOK
	case "-v", "-version", "--version":
		name = "version"
	}
	c := lookup(name)
	if c == nil {
		fmt.Fprintf(e.Stderr, "kiln: unknown command %q\n\n", name)
		e.mainUsage(e.Stderr)
		return ExitError
	}
	return c.run(e, c, rest)
}

func (e *Env) mainUsage(w io.Writer) {
	fmt.Fprint(w, "Usage: kiln COMMAND [options] [args]\n\n")
	fmt.Fprint(w, "kiln turns HCL stack templates into networks, volumes and KVM guests.\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.synopsis)
	}
	fmt.Fprint(w, "\nRun `kiln COMMAND -h` for the options of one command.\n")
}

// getenv returns the value of key in the environment, or "".
func (e *Env) getenv(key string) string {
	for i := len(e.Environ) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(e.Environ[i], "="); ok && k == key {
			return v
		}
	}
	return ""
}

// envWithPrefix returns the environment variables whose name starts with
// prefix, keyed by the rest of their name.
func (e *Env) envWithPrefix(prefix string) map[string]string {
	m := map[string]string{}
	for _, kv := range e.Environ {
		k, v, ok := strings.Cut(kv, "=")
		if ok && strings.HasPrefix(k, prefix) && len(k) > len(prefix) {
			m[k[len(prefix):]] = v
		}
	}
	return m
}

// color reports whether output to w may use colour: only on a terminal, and
// not with -no-color or NO_COLOR set.
func (e *Env) color(w io.Writer, noColor bool) bool {
	if noColor || e.getenv("NO_COLOR") != "" || e.Terminal == nil {
		return false
	}
	return e.Terminal(w)
}

// width is the column width for wrapping diagnostics written to w.
func (e *Env) width(w io.Writer) int {
	if f, ok := w.(*os.File); ok && e.Terminal != nil && e.Terminal(w) {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 20 {
			return cols
		}
	}
	return 78
}

// newFlagSet makes a flag set that reports nothing by itself: parse errors
// and help are handled by parseArgs.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseArgs parses flags given before, between or after positional
// arguments (the flag package alone stops at the first positional). A "--"
// ends the flags: everything after it is positional. On -h/--help it prints
// the command's usage to stdout; on a bad flag, the error and the usage to
// stderr. ok is false when the command should return code at once.
func (e *Env) parseArgs(c *command, fs *flag.FlagSet, args []string) (pos []string, code int, ok bool) {
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(e.Stdout, c.usage)
			return nil, ExitOK, false
		}
		if err != nil {
			fmt.Fprintf(e.Stderr, "kiln %s: %v\n\n%s", c.name, err, c.usage)
			return nil, ExitError, false
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), 0, true
		}
		if len(rest) == 0 {
			return pos, 0, true
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// fail prints err under cmd ("kiln CMD: err") and returns ExitError.
func (e *Env) fail(cmd string, err error) int {
	fmt.Fprintf(e.Stderr, "kiln %s: %v\n", cmd, err)
	return ExitError
}

// wantArgs checks the number of positional arguments.
func (e *Env) wantArgs(c *command, pos []string, n int) bool {
	if len(pos) == n {
		return true
	}
	if len(pos) < n {
		fmt.Fprintf(e.Stderr, "kiln %s: missing argument\n\n%s", c.name, c.usage)
	} else {
		fmt.Fprintf(e.Stderr, "kiln %s: unexpected argument %q\n\n%s", c.name, pos[n], c.usage)
	}
	return false
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func sortedKeys[M ~map[string]V, V any](m M) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
