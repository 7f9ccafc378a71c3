package cli

import (
	"context"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/kiln-dev/kiln/spec"
)

// varFlags are the flags that give param values, shared by validate and plan.
type varFlags struct {
	stack    string
	vars     stringList
	varFiles stringList
}

func (v *varFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&v.stack, "stack", "", "stack name")
	fs.Var(&v.vars, "var", "param value name=value (repeatable)")
	fs.Var(&v.varFiles, "var-file", "HCL file of param values (repeatable)")
}

const varsUsage = `  -stack NAME        Stack name. Default: the file's name without .hcl, or the
                     directory's name.
  -var NAME=VALUE    Set a param. Repeatable; a later -var wins. For a param that
                     is not a string, VALUE is an HCL expression: 3, true, ["a"].
  -var-file FILE     Read param values from an HCL file of attributes.
                     Repeatable. Precedence, highest first: -var, -var-file (a
                     later file wins), KILN_VAR_NAME environment variables, the
                     param's default.
`

// stackNameRE is the rule spec applies to every name, repeated here only to
// explain a bad default.
var stackNameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)

// localEvalTimeout bounds the local evaluation of a template, as a server's
// default EvalTimeout does.
const localEvalTimeout = 10 * time.Second

// loaded is a template read and loaded by spec.
type loaded struct {
	tmpl  *Template
	opts  spec.Options
	stack *spec.Stack
	diags hcl.Diagnostics
	// files maps diagnostic file names to parsed files, for snippets.
	files map[string]*hcl.File
}

// load reads the template at p and runs spec.Load on it. On an error that is
// not a template diagnostic (unreadable path, bad -var syntax) it prints it
// and returns nil.
func (e *Env) load(cmd string, p string, v *varFlags, prior spec.Prior) *loaded {
	t, err := ReadTemplate(e.Dir, p)
	if err != nil {
		fmt.Fprintf(e.Stderr, "kiln %s: %v\n", cmd, err)
		return nil
	}
	l := &loaded{tmpl: t, opts: t.SpecOptions()}
	if v.stack != "" {
		l.opts.Stack = v.stack
	} else {
		if !stackNameRE.MatchString(t.Name) {
			fmt.Fprintf(e.Stderr, "kiln %s: %q, taken from %s, is not a valid stack name (lowercase letters, digits, _ and -, starting with a letter); choose one with -stack NAME\n", cmd, t.Name, p)
			return nil
		}
	}
	for _, kv := range v.vars {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || name == "" {
			fmt.Fprintf(e.Stderr, "kiln %s: -var %q: want NAME=VALUE\n", cmd, kv)
			return nil
		}
		l.opts.Vars = append(l.opts.Vars, spec.RawVar{Name: name, Value: value})
	}
	for _, f := range v.varFiles {
		data, err := os.ReadFile(e.abs(f))
		if err != nil {
			fmt.Fprintf(e.Stderr, "kiln %s: -var-file: %v\n", cmd, err)
			return nil
		}
		l.opts.VarFiles = append(l.opts.VarFiles, spec.VarFile{Name: f, Bytes: data})
	}
	l.opts.Env = e.envWithPrefix("KILN_VAR_")
	l.opts.Prior = prior
	load := spec.Load
	if e.specLoad != nil {
		load = e.specLoad
	}
	// The same evaluation limits as a server's (spec's default sizes and
	// the server's default time limit).
	ctx, cancel := context.WithTimeout(context.Background(), localEvalTimeout)
	defer cancel()
	l.opts.Context = ctx
	l.stack, l.diags = load(t.Bundle, l.opts)
	l.opts.Context = nil
	return l
}

// writeDiags prints diagnostics to stderr with file:line:col and snippets.
func (e *Env) writeDiags(l *loaded, diags hcl.Diagnostics, noColor bool) {
	if len(diags) == 0 {
		return
	}
	writeDiagnostics(e.Stderr, diags, l.tmpl, l.opts, e.width(e.Stderr), e.color(e.Stderr, noColor))
}
