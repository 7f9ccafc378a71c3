package server

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/executors"
	"github.com/kiln-dev/kiln/raftstore"
)

// TestTwoProjectsSameStackName: stack "web" of projects p1 and p2 and of
// the default project, from one template, on one agent (memory drivers):
// each gets objects of its own; destroying p1/web leaves the others';
// gc keys ownership by project and stack, so a forgotten p2/web's objects
// are orphans although p1/web and default web have the same addresses,
// and gc -force removes only those.
func TestTwoProjectsSameStackName(t *testing.T) {
	s, mgmt := single(t, nil)
	mem := agentOn(t, s, "agent-1")
	members := map[string]client{"p1": mgmt.as("p1", "member"), "p2": mgmt.as("p2", "member"), "default": mgmt.as("default", "member")}
	sum := strings.Repeat("c", 64)
	ids := map[string]map[string]string{} // project -> address -> physical name
	for _, project := range []string{"p1", "p2", "default"} {
		c := members[project]
		c.complete("apply", "web", api.ApplyRequest{Template: hostTemplate("x", sum)})
		var detail api.StackDetail
		c.must("GET", "/v1/stacks/web", nil, http.StatusOK, &detail)
		ids[project] = map[string]string{}
		for _, r := range detail.Resources {
			ids[project][r.Address] = r.PhysicalName
		}
	}
	seen := map[string]string{}
	for project, m := range ids {
		for addr, phys := range m {
			if phys == "" {
				t.Errorf("%s/web %s has no physical name", project, addr)
			}
			if prev, ok := seen[phys]; ok {
				t.Errorf("%s/web %s and %s share the object %s", project, addr, prev, phys)
			}
			seen[phys] = project + "/web " + addr
		}
	}
	objects := func() map[string]bool {
		out := map[string]bool{}
		for _, o := range mem.D.Objects() {
			out[o.ID] = true
		}
		return out
	}
	if n := len(objects()); n != 9 {
		t.Fatalf("objects = %d, want 3 per stack (%v)", n, objects())
	}
	gc := func(force bool) api.GCReport {
		t.Helper()
		var rep api.GCReport
		path := "/v1/gc"
		if force {
			path += "?force=true"
		}
		mgmt.must("GET", path, nil, http.StatusOK, &rep)
		return rep
	}
	if rep := gc(false); len(rep.Orphans) != 0 {
		t.Fatalf("gc with every stack owned: %+v", rep.Orphans)
	}

	// Destroying p1/web removes p1's objects only.
	var ref api.OperationRef
	members["p1"].must("POST", "/v1/stacks/web/destroy", api.DestroyRequest{}, http.StatusAccepted, &ref)
	if op := members["p1"].waitOp(ref.OperationID); op.Status != "complete" {
		t.Fatalf("destroy p1/web: %s %s", op.Status, op.Error)
	}
	have := objects()
	for project, m := range ids {
		for addr, phys := range m {
			if gone := !have[phys]; gone != (project == "p1") {
				t.Errorf("after destroying p1/web: %s/web %s (%s) present %v", project, addr, phys, !gone)
			}
		}
	}
	if rep := gc(false); len(rep.Orphans) != 0 {
		t.Fatalf("gc after p1/web's destroy: %+v", rep.Orphans)
	}

	// p2/web forgotten without a destroy: its objects, and only they, are
	// orphans, although default web owns the same addresses. (The memory
	// driver keeps an image object per stack; the real image cache is
	// shared by the host and not listed by gc.)
	var detail api.StackDetail
	members["p2"].must("GET", "/v1/stacks/web", nil, http.StatusOK, &detail)
	for _, r := range detail.Resources {
		if err := s.apply(context.Background(), &raftstore.DeleteResource{Project: "p2", Stack: "web", Address: r.Address}); err != nil {
			t.Fatal(err)
		}
	}
	rep := gc(false)
	if len(rep.Orphans) != 3 {
		t.Fatalf("gc with p2/web forgotten = %+v, want its image, network and server", rep.Orphans)
	}
	for _, o := range rep.Orphans {
		if scope, _, ok := executors.ParseOwner(o.Owner); !ok || scope != "p2/web" {
			t.Errorf("orphan %+v is not p2/web's", o)
		}
	}
	if rep := gc(true); !rep.Removed || len(rep.Orphans) != 3 {
		t.Fatalf("gc -force = %+v", rep)
	}
	have = objects()
	for addr, phys := range ids["default"] {
		if !have[phys] {
			t.Errorf("gc -force of p2/web removed default web's %s (%s)", addr, phys)
		}
	}
	for addr, phys := range ids["p2"] {
		if have[phys] {
			t.Errorf("gc -force left p2/web's %s (%s)", addr, phys)
		}
	}
}
