package agent

import (
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/api"
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

// TestActionOfOwnerTooLong: names that would make an owner tag longer than
// an iptables comment holds are refused with the names.
func TestActionOfOwnerTooLong(t *testing.T) {
	long := strings.Repeat("p", 200)
	_, err := actionOf(api.WorkItem{Project: long, Stack: "web", Address: "network." + strings.Repeat("n", 60), Kind: "network", Op: "create"})
	if err == nil || !strings.Contains(err.Error(), "owner tag") || !strings.Contains(err.Error(), "web") {
		t.Fatalf("a 270-byte owner tag: %v", err)
	}
}
