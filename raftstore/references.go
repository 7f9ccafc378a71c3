package raftstore

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// maxDangling is how many dangling references an error names.
const maxDangling = 5

// checkReferences verifies that every reference between the tables of a
// restored snapshot lands on a record that is there: stacks and tokens to
// projects, stacks to their bundle blob, resources, events and operations to
// stacks, plans to stacks' projects and blobs, work to operations and
// agents. A snapshot that SaveSnapshot wrote always passes; a hand-edited or
// foreign one that fails is refused with the first few dangling references.
func checkReferences(t *tables) error {
	var bad []string
	total := 0
	add := func(format string, args ...any) {
		total++
		if len(bad) < maxDangling {
			bad = append(bad, fmt.Sprintf(format, args...))
		}
	}
	project := func(what, name string) {
		if name == "" {
			return
		}
		if _, ok := t.projects[name]; !ok {
			add("%s refers to project %q, which is not in the snapshot", what, name)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(t.tokens)) {
		tok := t.tokens[k]
		project("token "+tok.ID, tok.Project)
		if t.tokenByHash[tok.SecretHash] != tok.ID {
			add("token %s shares its secret hash with another token", tok.ID)
		}
		if tok.Kind == TokenAgent {
			if _, ok := t.agents[tok.Agent]; !ok {
				add("agent credential %s refers to agent %q, which is not in the snapshot", tok.ID, tok.Agent)
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(t.stacks)) {
		st := t.stacks[k]
		if k != stackKey(st.Project, st.Name) {
			add("stack %s is recorded under %q", stackKey(st.Project, st.Name), k)
		}
		project("stack "+k, st.Project)
		if _, ok := t.blobs[st.BundleHash]; !ok {
			add("stack %s refers to bundle blob %s, which is not in the snapshot", k, st.BundleHash)
		}
		if st.ActiveOperation != "" {
			if o, ok := t.operations[st.ActiveOperation]; !ok || o.Project != st.Project || o.Stack != st.Name {
				add("stack %s refers to active operation %s, which is not one of its operations", k, st.ActiveOperation)
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(t.resources)) {
		if _, ok := t.stacks[k]; !ok {
			add("resources of stack %s, which is not in the snapshot", k)
			continue
		}
		for _, a := range slices.Sorted(maps.Keys(t.resources[k])) {
			if r := t.resources[k][a]; stackKey(r.Project, r.Stack) != k {
				add("resource %s is recorded under stack %s but says %s", a, k, stackKey(r.Project, r.Stack))
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(t.events)) {
		if _, ok := t.stacks[k]; !ok {
			add("events of stack %s, which is not in the snapshot", k)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(t.operations)) {
		o := t.operations[id]
		if _, ok := t.stacks[stackKey(o.Project, o.Stack)]; !ok {
			add("operation %s refers to stack %s, which is not in the snapshot", id, stackKey(o.Project, o.Stack))
		}
		if len(o.Actions) != len(o.Plan.Changes) {
			add("operation %s has %d actions for %d planned changes", id, len(o.Actions), len(o.Plan.Changes))
		}
		for _, a := range o.Actions {
			if a.Agent != "" && !o.Status.Final() {
				if _, ok := t.agents[a.Agent]; !ok {
					add("operation %s action %s is assigned to agent %s, which is not in the snapshot", id, a.Address, a.Agent)
				}
			}
		}
	}
	for _, id := range slices.Sorted(maps.Keys(t.work)) {
		w := t.work[id]
		if _, ok := t.operations[w.Operation]; !ok {
			add("work %s refers to operation %s, which is not in the snapshot", id, w.Operation)
		}
		if _, ok := t.agents[w.Agent]; !ok {
			add("work %s refers to agent %s, which is not in the snapshot", id, w.Agent)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(t.plans)) {
		p := t.plans[id]
		project("plan "+id, p.Project)
		if _, ok := t.blobs[p.ID]; !ok {
			add("plan %s has no blob in the snapshot", id)
		}
		if _, ok := t.blobs[p.BundleHash]; p.BundleHash != "" && !ok {
			add("plan %s refers to bundle blob %s, which is not in the snapshot", id, p.BundleHash)
		}
	}
	for _, h := range slices.Sorted(maps.Keys(t.blobs)) {
		if HashBlob(t.blobs[h]) != h {
			add("blob %s does not match its content", h)
		}
	}
	if total == 0 {
		return nil
	}
	msg := strings.Join(bad, "; ")
	if total > len(bad) {
		msg += fmt.Sprintf("; and %d more", total-len(bad))
	}
	return fmt.Errorf("snapshot has %d dangling or inconsistent references: %s", total, msg)
}

// invalidSnapshot is a backup refused by RestoreSnapshot; it wraps
// ErrInvalid.
type invalidSnapshot struct{ err error }

func (e *invalidSnapshot) Error() string        { return "restore: invalid snapshot: " + e.err.Error() }
func (e *invalidSnapshot) Is(target error) bool { return target == ErrInvalid }
func (e *invalidSnapshot) Unwrap() error        { return e.err }
