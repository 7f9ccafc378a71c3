package agent

import (
	"testing"

	"github.com/kiln-dev/kiln/daemon/api"
)

// TestActionOfScope: the drivers see a work item's stack qualified with
// its project (executors.Scope), the default project's as it always was.
func TestActionOfScope(t *testing.T) {
	for _, tt := range []struct{ project, stack, want string }{
		{"", "web", "web"},
		{"default", "web", "web"},
		{"p1", "web", "p1/web"},
		{"p2", "web", "p2/web"},
	} {
		a, err := actionOf(api.WorkItem{Project: tt.project, Stack: tt.stack, Address: "server.a", Kind: "server", Op: "create"})
		if err != nil {
			t.Fatal(err)
		}
		if a.Stack != tt.want {
			t.Errorf("project %q stack %q: the drivers see stack %q, want %q", tt.project, tt.stack, a.Stack, tt.want)
		}
	}
}
