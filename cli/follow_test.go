package cli

import (
	"testing"

	"github.com/kiln-dev/kiln/api"
)

// TestSummaryCounts: the closing line counts every action status of the
// API's vocabulary; cancelled actions (never started: the operation was
// cancelled) are counted apart from skipped ones (a dependency failed).
func TestSummaryCounts(t *testing.T) {
	acts := func(statuses ...string) []api.ActionStatus {
		var out []api.ActionStatus
		for _, s := range statuses {
			out = append(out, api.ActionStatus{Address: "a", Status: s})
		}
		return out
	}
	tests := []struct {
		op   api.Operation
		want string
	}{
		{api.Operation{Kind: "apply", Status: "complete", Actions: acts("done", "done")},
			"Apply complete: 2 done, 0 failed, 0 skipped."},
		{api.Operation{Kind: "apply", Status: "failed", Error: "a: boom", Actions: acts("done", "failed", "skipped")},
			"Apply failed: 1 done, 1 failed, 1 skipped.\nError: a: boom"},
		{api.Operation{Kind: "destroy", Status: "cancelled", Error: "cancelled", Actions: acts("done", "cancelled", "cancelled")},
			"Destroy cancelled: 1 done, 0 failed, 0 skipped, 2 cancelled.\nError: cancelled"},
	}
	for _, tt := range tests {
		if got := summary(tt.op); got != tt.want {
			t.Errorf("summary of %s %s: %q, want %q", tt.op.Kind, tt.op.Status, got, tt.want)
		}
	}
}
