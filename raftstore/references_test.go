package raftstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// richState is a state with a row in every table.
func richState(t *testing.T) *harness {
	h := newHarness(t)
	h.must(withOpStarted()...)
	h.must(&CreateToken{ID: "t1", Project: "p", Role: RoleMember, SecretHash: HashSecret("s1"), Time: t0},
		&PutWork{Work: Work{ID: "w1", Agent: "agent-1", Operation: "op1", Address: "network.lan", Op: "create"}},
		&UpsertResource{Resource: *resource("network.lan"), Time: t0},
		putPlan("p", "web", 1, bundleHash, t0),
		&SetServer{ID: "n1", RaftAddr: "a", HTTPAddr: "b"})
	return h
}

func snapshotBytes(t *testing.T, h *harness) []byte {
	var buf bytes.Buffer
	snap, _ := h.f.Snapshot()
	if err := snap.Persist(&writerSink{w: &buf}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestCheckReferencesAcceptsSavedState(t *testing.T) {
	tb, err := readSnapshot(bytes.NewReader(snapshotBytes(t, richState(t))))
	if err != nil {
		t.Fatal(err)
	}
	if err := checkReferences(tb); err != nil {
		t.Fatalf("a snapshot the FSM wrote is refused: %v", err)
	}
}

// A restore whose tables refer to missing records is refused, names the
// first few, and leaves the running state as it was.
func TestRestoreWithDanglingReferencesRefused(t *testing.T) {
	var d snapshotData
	if err := json.Unmarshal(snapshotBytes(t, richState(t)), &d); err != nil {
		t.Fatal(err)
	}
	d.Projects = nil // tokens, stacks and plans lose their project
	d.Blobs = nil    // the stack and the plan lose their blobs
	d.Agents = nil   // the work and the assigned action lose their agent
	d.Stacks = nil   // resources, events and operations lose their stack
	bad, _ := json.Marshal(d)

	st := openMem(t)
	if _, err := st.Apply(ctx(t), &UpsertProject{Name: "live", Time: t0}); err != nil {
		t.Fatal(err)
	}
	before := snapshotJSON(t, st.State())
	err := st.RestoreSnapshot(ctx(t), bytes.NewReader(bad))
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("restore with dangling references: %v, want ErrInvalid", err)
	}
	for _, want := range []string{"dangling", `token t1 refers to project "p"`, "and ", "more"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	t.Logf("refused: %v", err)
	if after := snapshotJSON(t, st.State()); !bytes.Equal(before, after) {
		t.Fatalf("state changed by a refused restore:\nbefore %s\nafter  %s", before, after)
	}

	// The intact snapshot restores.
	good := snapshotBytes(t, richState(t))
	if err := st.RestoreSnapshot(ctx(t), bytes.NewReader(good)); err != nil {
		t.Fatal(err)
	}
	if _, ok := st.State().Stack("p", "web"); !ok {
		t.Fatal("restore of an intact snapshot did not bring its stack")
	}
}
