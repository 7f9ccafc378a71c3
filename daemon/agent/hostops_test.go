package agent

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/kiln-dev/kiln/api"
)

// TestHostUnknownOpRefused: a host request the agent does not know (an
// op of a newer server, or one whose fields do not match its op) is
// refused with an answer naming what is wrong, with its work id and op
// echoed so the leader hands it to the request waiting for it; the
// drivers are not touched.
func TestHostUnknownOpRefused(t *testing.T) {
	mem := NewMemory("", 0)
	a := &Agent{id: "a1", cfg: Config{Drivers: mem.Drivers()}, log: slog.New(slog.DiscardHandler)}
	for _, tc := range []struct {
		name, wire, want string
	}{
		{"unknown op", `{"work_id": "h-1", "op": "frobnicate", "frobnicate": {"x": 1}}`, `agent a1: unknown host operation "frobnicate" (known: refresh, images, prune, gc, console)`},
		{"no op", `{"work_id": "h-2"}`, `agent a1: unknown host operation "" (known: refresh, images, prune, gc, console)`},
		{"op without its request", `{"work_id": "h-3", "op": "gc"}`, "agent a1: host operation gc without its gc request"},
		{"another op's request", `{"work_id": "h-4", "op": "images", "images": {}, "prune": {"in_use": []}}`, "agent a1: host operation images carries a prune request too"},
	} {
		var req api.HostRequest
		if err := json.Unmarshal([]byte(tc.wire), &req); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		ans := a.runHost(context.Background(), req)
		if ans.OK || !ans.Refused || ans.Error != tc.want || ans.WorkID != req.WorkID || ans.Op != req.Op {
			t.Errorf("%s: answer %+v, want refused with %q", tc.name, ans, tc.want)
		}
		if ans.Images != nil || ans.Prune != nil || ans.GC != nil || ans.Console != nil || ans.Refresh != nil {
			t.Errorf("%s: a refused request has an answer: %+v", tc.name, ans)
		}
	}
	if n := len(mem.D.Objects()); n != 0 {
		t.Errorf("refused requests made %d objects", n)
	}

	// A known op on the same agent is answered.
	ans := a.runHost(context.Background(), api.HostRequest{WorkID: "h-5", Op: api.HostImages, Images: &api.ImagesRequest{}})
	if !ans.OK || ans.Images == nil || ans.Images.Images == nil || len(ans.Images.Images) != 0 {
		t.Errorf("images of an empty memory agent: %+v", ans)
	}
}
