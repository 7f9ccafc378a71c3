package agent

import (
	"context"

	"github.com/kiln-dev/kiln/executors/kinds"
	"github.com/kiln-dev/kiln/executors/server"
)

// Hostname is the hostname of a server (kinds.Hostname).
func Hostname(scope, phys string) string { return kinds.Hostname(scope, phys) }

// serverProgress sends the driver's "booting" and "ready after" lines as
// events of the action's stack.
func serverProgress(ctx context.Context, address string) server.Progress {
	emit, _ := ctx.Value(progressKey{}).(func(string))
	if emit == nil {
		return nil
	}
	return func(msg string) { emit(address + ": " + msg) }
}
