package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/kiln-dev/kiln/api"
)

const tokenUsage = `Usage: kiln token create -project P -role admin|member|reader [-name N] [-ttl D]
       kiln token create -global -role admin|member|reader [-name N] [-ttl D]
       kiln token create -join [-name N] [-ttl D]
       kiln token list
       kiln token revoke ID

  create   Make a token for project P. A reader can plan and read, a member
           can also apply and destroy in its project, an admin also
           administers the project's tokens. The secret is printed once;
           only its hash is kept. A project admin makes tokens of its own
           project only. With -global (global admin only) the token has no
           project: a global admin administers the cluster (see
           docs/authorization.md). With -join (global admin only) it is a
           join token: it can only register agents (kiln agent), each of
           which is issued a credential of its own.
  list     List the tokens you administer (without secrets), with their
           kind (agent credentials, join tokens) and expiry.
  revoke   Delete a token: it stops working at once. Revoking an agent's
           credential revokes the agent (see kiln agents revoke).

Options:
  -project P         Project of the new token.
  -role ROLE         admin, member or reader.
  -global            A project-less token (global admin only).
  -join              A join token for agents (global admin only).
  -ttl D             The token expires after D (like 24h, 90m); an
                     expired token gets 401 "token expired". Default: never.
  -name N            A label for the new token.
  -json              Print the API's TokenCreated / []TokenInfo as JSON.
` + serversUsage

func runToken(e *Env, c *command, args []string) int {
	v := e.newVerb(c, serverOnly, flagJSON)
	project := v.flags.String("project", "", "")
	role := v.flags.String("role", "", "")
	name := v.flags.String("name", "", "")
	global := v.flags.Bool("global", false, "")
	join := v.flags.Bool("join", false, "")
	ttl := v.flags.Duration("ttl", 0, "")
	sub, rest, code, ok := v.parseSub(args, "want a subcommand: create, list or revoke", "create", "list", "revoke")
	if !ok {
		return code
	}
	cmd := "token " + sub
	switch sub {
	case "create":
		if !e.wantArgs(c, rest, 0) {
			return ExitError
		}
		switch {
		case *join && (*global || *project != "" || *role != ""):
			fmt.Fprintf(e.Stderr, "kiln token create: -join takes no -global, -project or -role (a join token only registers agents)\n")
			return ExitError
		case *global && *project != "":
			fmt.Fprintf(e.Stderr, "kiln token create: -global takes no -project (a global token has none)\n")
			return ExitError
		case *ttl < 0:
			fmt.Fprintf(e.Stderr, "kiln token create: -ttl %s: want a positive duration like 24h\n", *ttl)
			return ExitError
		case *join:
		case *role != "admin" && *role != "member" && *role != "reader":
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
	}
	return v.with(cmd, func(r *remote) int {
		ctx := context.Background()
		switch sub {
		case "create":
			req := api.TokenRequest{Project: *project, Role: *role, Name: *name, Global: *global, Join: *join}
			if *ttl > 0 {
				req.TTL = ttl.String()
			}
			tok, err := r.c.CreateToken(ctx, req)
			return answered(v, cmd, tok, err, func(tok api.TokenCreated) int {
				fmt.Fprintf(e.Stdout, "ID:      %s\nProject: %s\nRole:    %s\nExpires: %s\nSecret:  %s\n\nThe secret is shown only now: give it to its user as KILN_TOKEN.\n", tok.ID, dash(tok.Project), tokenRole(tok.TokenInfo), expiryCell(tok.TokenInfo), tok.Secret)
				return ExitOK
			})
		case "list":
			list, err := r.c.Tokens(ctx)
			return printList(v, cmd, list, err, "", "ID\tPROJECT\tROLE\tNAME\tCREATED\tEXPIRES", func(t api.TokenInfo) string {
				return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s", t.ID, dash(t.Project), tokenRole(t), dash(t.Name), t.Created.Local().Format(time.DateTime), expiryCell(t))
			})
		case "revoke":
			if err := r.c.RevokeToken(ctx, rest[0]); err != nil {
				return e.apiErr(cmd, err)
			}
			fmt.Fprintf(e.Stdout, "Token %s revoked.\n", rest[0])
		}
		return ExitOK
	})
}

// tokenRole is the ROLE cell: the role of an API token, "join" for a join
// token, "agent ID" for an agent's credential.
func tokenRole(t api.TokenInfo) string {
	switch t.Kind {
	case "agent":
		return "agent " + t.Agent
	case "join":
		return "join"
	}
	return t.Role
}

// expiryCell is when a token expires ("never", or the time, marked when
// past).
func expiryCell(t api.TokenInfo) string {
	if t.Expires.IsZero() {
		return "never"
	}
	s := t.Expires.Local().Format(time.DateTime)
	if !time.Now().Before(t.Expires) {
		s += " (expired)"
	}
	return s
}
