package cli

import (
	"context"
	"fmt"

	"github.com/kiln-dev/kiln/client"
)

// finishUnfinished is for the embedded default: an operation that an
// earlier kiln left unfinished (killed, or the machine went down) is
// resumed by the in-process leader as soon as it starts, and the stack
// refuses a new operation until it ends. Wait for it quietly, whatever its
// outcome: the plan that follows repairs what it left. It returns false,
// after saying why, when waiting failed.
func (e *Env) finishUnfinished(ctx context.Context, r *remote, cmd, stack string) bool {
	if !r.embedded() {
		return true
	}
	st, err := r.c.Stack(ctx, stack)
	if client.IsNotFound(err) {
		return true
	}
	if err != nil {
		e.apiErr(cmd, err)
		return false
	}
	if st.ActiveOperation == "" {
		return true
	}
	fmt.Fprintf(e.Stderr, "kiln %s: finishing operation %s, which an earlier kiln left unfinished in ./%s...\n", cmd, st.ActiveOperation, embeddedDir)
	op, err := e.follow(ctx, r, st.ActiveOperation, true)
	if err != nil {
		e.apiErr(cmd, err)
		return false
	}
	fmt.Fprintf(e.Stderr, "kiln %s: operation %s ended: %s\n", cmd, st.ActiveOperation, op.Status)
	return true
}
