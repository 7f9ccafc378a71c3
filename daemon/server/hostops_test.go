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

// hostTemplate is a stack of an image, a network and a server whose names
// end in suffix (the memory driver keys objects by address alone).
func hostTemplate(suffix, sum string) *api.Template {
	return mainHCL(strings.NewReplacer("SUFFIX", suffix, "SUM", sum).Replace(`
image "base_SUFFIX" {
  source = "/srv/images/base.qcow2"
  sha256 = "SUM"
}

network "lan_SUFFIX" {
  cidr = "10.41.0.0/24"
}

server "web_SUFFIX" {
  image  = image.base_SUFFIX.id
  cpus   = 1
  memory = "128MiB"
  network "lan_SUFFIX" {
    address = "10.41.0.10"
  }
}
`))
}

// TestHostOps: image list, image prune, gc and console through the API,
// answered by an agent on the memory drivers, with the roles of each.
func TestHostOps(t *testing.T) {
	s, mgmt := single(t, nil)
	mem := agentOn(t, s, "agent-1")
	reader, member, admin := mgmt.as("default", "reader"), mgmt.as("default", "member"), mgmt.as("default", "admin")

	// Two stacks on two images; the second stack goes away, leaving its
	// image unused.
	sumA, sumB := strings.Repeat("a", 64), strings.Repeat("b", 64)
	apply := func(stack, sum string) {
		t.Helper()
		member.complete("apply", ""+stack+"", api.ApplyRequest{Template: hostTemplate(stack, sum)})
	}
	apply("web", sumA)
	apply("old", sumB)
	var detail api.StackDetail
	member.must("GET", "/v1/stacks/web", nil, http.StatusOK, &detail)
	imageID := ""
	for _, r := range detail.Resources {
		if r.Address == "image.base_web" {
			imageID, _ = r.Attrs["id"].(string)
		}
	}
	if imageID == "" {
		t.Fatalf("image.base has no id: %+v", detail.Resources)
	}

	// image list: a reader may; both images listed, with the stack using each.
	var imgs []api.ImageInfo
	reader.must("GET", "/v1/images", nil, http.StatusOK, &imgs)
	if len(imgs) != 2 {
		t.Fatalf("images = %+v, want 2", imgs)
	}
	users := map[string][]string{}
	for _, i := range imgs {
		if i.Agent != "agent-1" || i.Format != "qcow2" || i.Size <= 0 {
			t.Errorf("image %+v: want agent-1, qcow2, a size", i)
		}
		users[i.SHA256] = i.Stacks
	}
	if got := users[imageID]; len(got) != 1 || got[0] != "web" {
		t.Errorf("stacks of the image of web = %v, want [web]", got)
	}

	// Forget stack "old" without destroying it (its objects stay behind):
	// its image is unused and its network and server are orphans.
	var oldDetail api.StackDetail
	member.must("GET", "/v1/stacks/old", nil, http.StatusOK, &oldDetail)
	for _, r := range oldDetail.Resources {
		if err := s.apply(context.Background(), &raftstore.DeleteResource{Project: "default", Stack: "old", Address: r.Address}); err != nil {
			t.Fatal(err)
		}
	}

	// prune: member and project admin 403 (it is a cluster operation); the
	// global admin removes the unused image only.
	for _, c := range []client{member, admin} {
		if code, out := c.do("POST", "/v1/images/prune", nil); code != http.StatusForbidden {
			t.Errorf("prune by a project token: %d %s, want 403", code, out)
		}
	}
	admin = mgmt
	var removed []api.ImageInfo
	admin.must("POST", "/v1/images/prune", nil, http.StatusOK, &removed)
	if len(removed) != 1 || removed[0].SHA256 == imageID || removed[0].Agent != "agent-1" {
		t.Errorf("prune removed %+v, want the image of old only", removed)
	}
	reader.must("GET", "/v1/images", nil, http.StatusOK, &imgs)
	if len(imgs) != 1 || imgs[0].SHA256 != imageID {
		t.Errorf("images after prune = %+v, want only %s", imgs, imageID)
	}

	// gc: reader and member 403; admin lists the orphans of "old" (its
	// network and server; the image went with prune), -force removes them.
	for _, c := range []client{reader, member} {
		if code, out := c.do("GET", "/v1/gc", nil); code != http.StatusForbidden {
			t.Errorf("gc by a non-admin: %d %s, want 403", code, out)
		}
	}
	var rep api.GCReport
	admin.must("GET", "/v1/gc", nil, http.StatusOK, &rep)
	if rep.Removed || len(rep.Orphans) != 2 {
		t.Fatalf("gc = %+v, want the 2 orphans of stack old, not removed", rep)
	}
	for _, o := range rep.Orphans {
		if stack, _, _ := executors.ParseOwner(o.Owner); stack != "old" || o.Agent != "agent-1" {
			t.Errorf("orphan %+v: want one of stack old on agent-1", o)
		}
	}
	admin.must("GET", "/v1/gc?force=true", nil, http.StatusOK, &rep)
	if !rep.Removed || len(rep.Orphans) != 2 {
		t.Errorf("gc -force = %+v, want 2 removed", rep)
	}
	admin.must("GET", "/v1/gc", nil, http.StatusOK, &rep)
	if len(rep.Orphans) != 0 {
		t.Errorf("gc after -force = %+v, want nothing", rep.Orphans)
	}
	if n := len(mem.D.Objects()); n != 3 {
		t.Errorf("objects left = %d, want the 3 of stack web", n)
	}
	if code, out := admin.do("GET", "/v1/gc?force=maybe", nil); code != http.StatusBadRequest {
		t.Errorf("gc?force=maybe: %d %s, want 400", code, out)
	}

	// console: a reader may; text by default, JSON from an offset.
	code, out := reader.do("GET", "/v1/stacks/web/resources/server.web_web/console", nil)
	if code != http.StatusOK || !strings.Contains(string(out), "console of server.web_web") {
		t.Errorf("console: %d %q", code, out)
	}
	var chunk struct {
		Text string `json:"text"`
		Next int64  `json:"next"`
		Size int64  `json:"size"`
	}
	reader.must("GET", "/v1/stacks/web/resources/server.web_web/console?offset=0", nil, http.StatusOK, &chunk)
	if chunk.Next != chunk.Size || chunk.Size != int64(len(out)) || chunk.Text != string(out) {
		t.Errorf("console from 0 = %+v, want the whole text %q", chunk, out)
	}
	for path, want := range map[string]int{
		"/v1/stacks/web/resources/network.lan_web/console":         http.StatusBadRequest,
		"/v1/stacks/web/resources/server.nope/console":             http.StatusNotFound,
		"/v1/stacks/nope/resources/server.web_web/console":         http.StatusNotFound,
		"/v1/stacks/web/resources/server.web_web/console?offset=x": http.StatusBadRequest,
	} {
		if code, out := reader.do("GET", path, nil); code != want {
			t.Errorf("GET %s: %d %s, want %d", path, code, out, want)
		}
	}
	// Another project's stack does not exist for its tokens.
	if code, _ := mgmt.as("p2", "admin").do("GET", "/v1/stacks/web/resources/server.web_web/console", nil); code != http.StatusNotFound {
		t.Errorf("console across projects: %d, want 404", code)
	}
}

// TestImageProgressEvents: an agent's event lands in the stack's events;
// an event of an unknown operation is 404.
func TestImageProgressEvents(t *testing.T) {
	s, c := single(t, nil)
	agentOn(t, s, "agent-1")
	op := c.run("apply", "web", api.ApplyRequest{Template: hostTemplate("web", strings.Repeat("c", 64))})
	c.must("POST", "/v1/agents/agent-1/events", api.Event{Operation: op.ID, Stack: "web", Address: "image.base", Message: "image.base: fetched 40% (12.0 MiB of 30.0 MiB)"}, http.StatusNoContent, nil)
	var evs api.EventsResponse
	c.must("GET", "/v1/stacks/web/events", nil, http.StatusOK, &evs)
	found := false
	for _, e := range evs.Events {
		if e.Message == "image.base: fetched 40% (12.0 MiB of 30.0 MiB)" && e.Node == "agent-1" && e.Address == "image.base" {
			found = true
		}
	}
	if !found {
		t.Errorf("progress event not in the stack's events: %+v", evs.Events)
	}
	if code, out := c.do("POST", "/v1/agents/agent-1/events", api.Event{Operation: "op-nope", Message: "x"}); code != http.StatusNotFound {
		t.Errorf("event of an unknown operation: %d %s", code, out)
	}
	if code, out := c.do("POST", "/v1/agents/agent-1/events", api.Event{Operation: op.ID}); code != http.StatusBadRequest {
		t.Errorf("event without a message: %d %s", code, out)
	}
}

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
