package cli

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/kiln-dev/kiln/daemon/api"
)

var tokenCommand = &command{
	name:     "token",
	synopsis: "Create, list and revoke API tokens (admin)",
	usage: `Usage: kiln token create -project P -role admin|member|reader [-name N]
       kiln token list
       kiln token revoke ID

  create   Make a token for project P. A reader can plan and read, a member
           can also apply and destroy in its project, an admin can do
           everything. The secret is printed once; only its hash is kept.
  list     List the tokens (without secrets).
  revoke   Delete a token: it stops working at once.

Options:
  -project P         Project of the new token.
  -role ROLE         admin, member or reader.
  -name N            A label for the new token.
  -json              Print the API's TokenCreated / []TokenInfo as JSON.
` + serversUsage,
	run: runToken,
}

func runToken(e *Env, c *command, args []string) int {
	fs := newFlagSet(c.name)
	var sf serverFlags
	sf.register(fs)
	project := fs.String("project", "", "")
	role := fs.String("role", "", "")
	name := fs.String("name", "", "")
	asJSON := fs.Bool("json", false, "")
	pos, code, ok := e.parseArgs(c, fs, args)
	if !ok {
		return code
	}
	if len(pos) == 0 {
		fmt.Fprintf(e.Stderr, "kiln token: want a subcommand: create, list or revoke\n\n%s", c.usage)
		return ExitError
	}
	sub, rest := pos[0], pos[1:]
	cmd := "token " + sub
	switch sub {
	case "create":
		if !e.wantArgs(c, rest, 0) {
			return ExitError
		}
		switch *role {
		case "admin", "member", "reader":
		default:
			fmt.Fprintf(e.Stderr, "kiln token create: -role must be admin, member or reader\n")
			return ExitError
		}
	case "list":
		if !e.wantArgs(c, rest, 0) {
			return ExitError
		}
	case "revoke":
		if !e.wantArgs(c, rest, 1) {
			return ExitError
		}
	default:
		fmt.Fprintf(e.Stderr, "kiln token: unknown subcommand %q\n\n%s", sub, c.usage)
		return ExitError
	}
	r := e.connect(cmd, &sf)
	if r == nil {
		return ExitError
	}
	defer r.close()
	ctx := context.Background()
	switch sub {
	case "create":
		tok, err := r.c.CreateToken(ctx, api.TokenRequest{Project: *project, Role: *role, Name: *name})
		if err != nil {
			return e.apiErr(cmd, err)
		}
		if *asJSON {
			return e.printJSON(tok)
		}
		fmt.Fprintf(e.Stdout, "ID:      %s\nProject: %s\nRole:    %s\nSecret:  %s\n\nThe secret is shown only now: give it to its user as KILN_TOKEN.\n", tok.ID, dash(tok.Project), tok.Role, tok.Secret)
	case "list":
		list, err := r.c.Tokens(ctx)
		if err != nil {
			return e.apiErr(cmd, err)
		}
		if list == nil {
			list = []api.TokenInfo{}
		}
		if *asJSON {
			return e.printJSON(list)
		}
		tw := tabwriter.NewWriter(e.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tPROJECT\tROLE\tNAME\tCREATED")
		for _, t := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.ID, dash(t.Project), t.Role, dash(t.Name), t.Created.Local().Format(time.DateTime))
		}
		tw.Flush()
	case "revoke":
		if err := r.c.RevokeToken(ctx, rest[0]); err != nil {
			return e.apiErr(cmd, err)
		}
		fmt.Fprintf(e.Stdout, "Token %s revoked.\n", rest[0])
	}
	return ExitOK
}
