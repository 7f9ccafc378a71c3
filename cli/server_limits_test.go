package cli

import (
	"strings"
	"testing"
)

// TestServerLimitFlags: the limit flags of kiln server refuse values that
// would disable a limit.
func TestServerLimitFlags(t *testing.T) {
	for _, flag := range []string{"-eval-timeout=0s", "-max-plans=0", "-max-connections=-1"} {
		r := kiln(t, &Env{Dir: t.TempDir()}, "server", "-data-dir", "d", "-raft-addr", "127.0.0.1:1", flag)
		if r.code != ExitError || !strings.Contains(r.stderr, "must be above 0") {
			t.Errorf("%s: exit %d, stderr %q", flag, r.code, r.stderr)
		}
	}
}
