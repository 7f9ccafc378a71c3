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
	c := &refCheck{t: t}
	c.tokens()
	c.stacks()
	c.resources()
	c.events()
	c.operations()
	c.work()
	c.plans()
	c.blobs()
	return c.err()
}

// refCheck collects the dangling references that checkReferences finds in
// t: all of them are counted, the first maxDangling are named.
type refCheck struct {
	t     *tables
	bad   []string
	total int
}

// add records one dangling or inconsistent reference.
func (c *refCheck) add(format string, args ...any) {
	c.total++
	if len(c.bad) < maxDangling {
		c.bad = append(c.bad, fmt.Sprintf(format, args...))
	}
}

// project checks that what's project, when it names one, is in the snapshot.
func (c *refCheck) project(what, name string) {
	if name == "" {
		return
	}
	if _, ok := c.t.projects[name]; !ok {
		c.add("%s refers to project %q, which is not in the snapshot", what, name)
	}
}

// tokens checks each token's project, secret hash and (agent credentials) agent.
func (c *refCheck) tokens() {
	t := c.t
	for _, k := range slices.Sorted(maps.Keys(t.tokens)) {
		tok := t.tokens[k]
		c.project("token "+tok.ID, tok.Project)
		if t.tokenByHash[tok.SecretHash] != tok.ID {
			c.add("token %s shares its secret hash with another token", tok.ID)
		}
		if tok.Kind == TokenAgent {
			if _, ok := t.agents[tok.Agent]; !ok {
				c.add("agent credential %s refers to agent %q, which is not in the snapshot", tok.ID, tok.Agent)
			}
		}
	}
}

// stacks checks each stack's key, project, bundle blob and active operation.
func (c *refCheck) stacks() {
	t := c.t
	for _, k := range slices.Sorted(maps.Keys(t.stacks)) {
		st := t.stacks[k]
		if k != stackKey(st.Project, st.Name) {
			c.add("stack %s is recorded under %q", stackKey(st.Project, st.Name), k)
		}
		c.project("stack "+k, st.Project)
		if _, ok := t.blobs[st.BundleHash]; !ok {
			c.add("stack %s refers to bundle blob %s, which is not in the snapshot", k, st.BundleHash)
		}
		if st.ActiveOperation != "" {
			if o, ok := t.operations[st.ActiveOperation]; !ok || o.Project != st.Project || o.Stack != st.Name {
				c.add("stack %s refers to active operation %s, which is not one of its operations", k, st.ActiveOperation)
			}
		}
	}
}

// resources checks that each stack's resources belong to a stack that is
// there and say so themselves.
func (c *refCheck) resources() {
	t := c.t
	for _, k := range slices.Sorted(maps.Keys(t.resources)) {
		if _, ok := t.stacks[k]; !ok {
			c.add("resources of stack %s, which is not in the snapshot", k)
			continue
		}
		for _, a := range slices.Sorted(maps.Keys(t.resources[k])) {
			if r := t.resources[k][a]; stackKey(r.Project, r.Stack) != k {
				c.add("resource %s is recorded under stack %s but says %s", a, k, stackKey(r.Project, r.Stack))
			}
		}
	}
}

// events checks that each stack's events belong to a stack that is there.
func (c *refCheck) events() {
	for _, k := range slices.Sorted(maps.Keys(c.t.events)) {
		if _, ok := c.t.stacks[k]; !ok {
			c.add("events of stack %s, which is not in the snapshot", k)
		}
	}
}

// operations checks each operation's stack, that it has one action per
// planned change and, while it runs, its actions' agents.
func (c *refCheck) operations() {
	t := c.t
	for _, id := range slices.Sorted(maps.Keys(t.operations)) {
		o := t.operations[id]
		if _, ok := t.stacks[stackKey(o.Project, o.Stack)]; !ok {
			c.add("operation %s refers to stack %s, which is not in the snapshot", id, stackKey(o.Project, o.Stack))
		}
		if len(o.Actions) != len(o.Plan.Changes) {
			c.add("operation %s has %d actions for %d planned changes", id, len(o.Actions), len(o.Plan.Changes))
		}
		for _, a := range o.Actions {
			if a.Agent != "" && !o.Status.Final() {
				if _, ok := t.agents[a.Agent]; !ok {
					c.add("operation %s action %s is assigned to agent %s, which is not in the snapshot", id, a.Address, a.Agent)
				}
			}
		}
	}
}

// work checks each work item's operation and agent.
func (c *refCheck) work() {
	t := c.t
	for _, id := range slices.Sorted(maps.Keys(t.work)) {
		w := t.work[id]
		if _, ok := t.operations[w.Operation]; !ok {
			c.add("work %s refers to operation %s, which is not in the snapshot", id, w.Operation)
		}
		if _, ok := t.agents[w.Agent]; !ok {
			c.add("work %s refers to agent %s, which is not in the snapshot", id, w.Agent)
		}
	}
}

// plans checks each plan's project, its own blob and its bundle blob.
func (c *refCheck) plans() {
	t := c.t
	for _, id := range slices.Sorted(maps.Keys(t.plans)) {
		p := t.plans[id]
		c.project("plan "+id, p.Project)
		if _, ok := t.blobs[p.ID]; !ok {
			c.add("plan %s has no blob in the snapshot", id)
		}
		if _, ok := t.blobs[p.BundleHash]; p.BundleHash != "" && !ok {
			c.add("plan %s refers to bundle blob %s, which is not in the snapshot", id, p.BundleHash)
		}
	}
}

// blobs checks that each blob is stored under the hash of its content.
func (c *refCheck) blobs() {
	for _, h := range slices.Sorted(maps.Keys(c.t.blobs)) {
		if HashBlob(c.t.blobs[h]) != h {
			c.add("blob %s does not match its content", h)
		}
	}
}

// err is nil when nothing dangles, else an error that counts the findings
// and names the first few.
func (c *refCheck) err() error {
	if c.total == 0 {
		return nil
	}
	msg := strings.Join(c.bad, "; ")
	if c.total > len(c.bad) {
		msg += fmt.Sprintf("; and %d more", c.total-len(c.bad))
	}
	return fmt.Errorf("snapshot has %d dangling or inconsistent references: %s", c.total, msg)
}

// invalidSnapshot is a backup refused by RestoreSnapshot; it wraps
// ErrInvalid.
type invalidSnapshot struct{ err error }

func (e *invalidSnapshot) Error() string        { return "restore: invalid snapshot: " + e.err.Error() }
func (e *invalidSnapshot) Is(target error) bool { return target == ErrInvalid }
func (e *invalidSnapshot) Unwrap() error        { return e.err }
