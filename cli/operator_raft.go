package cli

import (
	"context"
	"fmt"

	"github.com/kiln-dev/kiln/api"
)

var operatorRaftCommand = &command{
	name: "operator raft",
	usage: `Usage: kiln operator raft list-peers [-json]
       kiln operator raft remove-peer ID

  list-peers   The raft servers: id, raft and HTTP address, which one is
               the leader, voter or not.
  remove-peer  Remove server ID from the configuration (a server that is
               gone for good; a server that stops gracefully removes itself).

Options:
  -json              Print a JSON array of the API's Peer.
` + serversUsage,
}

func runOperatorRaft(e *Env, c *command, args []string) int {
	v := e.newVerb(c, serverOnly, flagJSON)
	sub, rest, code, ok := v.parseSub(args, "want list-peers or remove-peer", "list-peers", "remove-peer")
	if !ok {
		return code
	}
	n := map[string]int{"list-peers": 0, "remove-peer": 1}[sub]
	if !e.wantArgs(c, rest, n) {
		return ExitError
	}
	cmd := "operator raft " + sub
	return v.with(cmd, func(r *remote) int {
		ctx := context.Background()
		if sub == "remove-peer" {
			if err := r.c.RemovePeer(ctx, rest[0]); err != nil {
				return e.apiErr(cmd, err)
			}
			fmt.Fprintf(e.Stdout, "Removed peer %s.\n", rest[0])
			return ExitOK
		}
		peers, err := r.c.Peers(ctx)
		return printList(v, cmd, peers, err, "", "ID\tRAFT ADDRESS\tHTTP ADDRESS\tSTATE\tVOTER", func(p api.Peer) string {
			state := "follower"
			if p.Leader {
				state = "leader"
			}
			return fmt.Sprintf("%s\t%s\t%s\t%s\t%t", p.ID, p.RaftAddr, dash(p.HTTPAddr), state, p.Voter)
		})
	})
}
