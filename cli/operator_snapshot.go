package cli

import (
	"context"
	"fmt"
	"os"
)

var operatorSnapshotCommand = &command{
	name: "operator snapshot",
	usage: `Usage: kiln operator snapshot save FILE
       kiln operator snapshot restore FILE

  save     Write a snapshot of the whole state (stacks, resources,
           operations, events, tokens) to FILE.
  restore  Replace the cluster's state with the snapshot in FILE.

Options:
` + serversUsage,
}

func runOperatorSnapshot(e *Env, c *command, args []string) int {
	v := e.newVerb(c, serverOnly, 0)
	pos, code, ok := v.parse(args, -1)
	if !ok {
		return code
	}
	if len(pos) == 0 || (pos[0] != "save" && pos[0] != "restore") {
		fmt.Fprintf(e.Stderr, "kiln operator snapshot: want save or restore\n\n%s", c.usage)
		return ExitError
	}
	sub := pos[0]
	if !e.wantArgs(c, pos[1:], 1) {
		return ExitError
	}
	file := e.abs(pos[1])
	cmd := "operator snapshot " + sub
	return v.with(cmd, func(r *remote) int {
		ctx := context.Background()
		if sub == "save" {
			tmp := file + ".tmp"
			f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
			if err != nil {
				return e.fail(cmd, err)
			}
			err = r.c.SnapshotSave(ctx, f)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err == nil {
				err = os.Rename(tmp, file)
			}
			if err != nil {
				os.Remove(tmp)
				return e.apiErr(cmd, err)
			}
			fi, _ := os.Stat(file)
			fmt.Fprintf(e.Stdout, "Saved a snapshot to %s (%d bytes).\n", pos[1], fi.Size())
			return ExitOK
		}
		f, err := os.Open(file)
		if err != nil {
			return e.fail(cmd, err)
		}
		defer f.Close()
		if err := r.c.SnapshotRestore(ctx, f); err != nil {
			return e.apiErr(cmd, err)
		}
		fmt.Fprintf(e.Stdout, "Restored the snapshot from %s.\n", pos[1])
		return ExitOK
	})
}
