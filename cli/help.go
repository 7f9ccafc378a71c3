package cli

import "fmt"

const helpUsage = `Usage: kiln help [COMMAND]

  Show the list of commands, or the options of one command.
`

// Set here rather than in the table: runHelp reads commands.
func init() { lookup("help").run = runHelp }

func runHelp(e *Env, c *command, args []string) int {
	pos, code, ok := e.newVerb(c, offline, 0).parse(args, -1)
	if !ok {
		return code
	}
	switch len(pos) {
	case 0:
		e.mainUsage(e.Stdout)
		return ExitOK
	case 1:
		if h := lookup(pos[0]); h != nil {
			fmt.Fprint(e.Stdout, h.usage)
			return ExitOK
		}
		fmt.Fprintf(e.Stderr, "kiln help: unknown command %q\n\n", pos[0])
		e.mainUsage(e.Stderr)
		return ExitError
	}
	return e.wantArgsHelp(pos)
}

func (e *Env) wantArgsHelp(pos []string) int {
	e.wantArgs(lookup("help"), pos, 1)
	return ExitError
}
