package cli

import "fmt"

const operatorUsage = `Usage: kiln operator raft list-peers [-json]
       kiln operator raft remove-peer ID
       kiln operator snapshot save FILE
       kiln operator snapshot restore FILE

  Admin commands for the controller trio. See kiln operator raft -h and
  kiln operator snapshot -h.
` + serversUsage

func runOperator(e *Env, c *command, args []string) int {
	if len(args) == 0 {
		fmt.Fprintf(e.Stderr, "kiln operator: want raft or snapshot\n\n%s", c.usage)
		return ExitError
	}
	switch args[0] {
	case "raft":
		return runOperatorRaft(e, operatorRaftCommand, args[1:])
	case "snapshot":
		return runOperatorSnapshot(e, operatorSnapshotCommand, args[1:])
	case "-h", "-help", "--help":
		fmt.Fprint(e.Stdout, c.usage)
		return ExitOK
	}
	fmt.Fprintf(e.Stderr, "kiln operator: unknown subcommand %q\n\n%s", args[0], c.usage)
	return ExitError
}
