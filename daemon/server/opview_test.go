package server

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/planner"
	"github.com/kiln-dev/kiln/raftstore"
)

// TestActionStatusVocabulary: the API renders an action's status as the
// state records it, and docs/api.yaml lists exactly the state's statuses.
func TestActionStatusVocabulary(t *testing.T) {
	var names []string
	for _, st := range raftstore.ActionStatuses {
		names = append(names, string(st))
		o := raftstore.Operation{ID: "op", Actions: []raftstore.ActionState{{Address: "network.lan", Action: planner.Create, Status: st}}}
		if got := opView(o).Actions[0].Status; got != string(st) {
			t.Errorf("action %s rendered %q", st, got)
		}
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "api.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := "enum: [" + strings.Join(names, ", ") + "]"
	if !bytes.Contains(doc, []byte(want)) {
		t.Errorf("docs/api.yaml does not list the action statuses as %q", want)
	}
}
