package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/api"
)

// TestEmbeddedImageGCConsole: image list, image prune, gc and console run
// in the embedded default and reach its agent, whose (test-only) memory
// driver keeps its objects in .kiln between two runs of kiln, as a host
// keeps its own.
func TestEmbeddedImageGCConsole(t *testing.T) {
	e, out, errb := embeddedEnv(t)
	if code := run(t, e, out, errb, "apply", "quickstart", "-auto-approve"); code != ExitOK {
		t.Fatalf("apply: %d\n%s%s", code, out, errb)
	}

	if code := run(t, e, out, errb, "image", "list", "-json"); code != ExitOK {
		t.Fatalf("image list: %d %s", code, errb)
	}
	var imgs []api.ImageInfo
	if err := json.Unmarshal(out.Bytes(), &imgs); err != nil || len(imgs) != 1 || len(imgs[0].Stacks) != 1 || imgs[0].Stacks[0] != "default/quickstart" {
		t.Errorf("image list -json: %v %q, want the quickstart image in use", err, out)
	}
	if code := run(t, e, out, errb, "image", "list"); code != ExitOK || !strings.Contains(out.String(), "default/quickstart") {
		t.Errorf("image list: %d %q %s", code, out, errb)
	}

	if code := run(t, e, out, errb, "image", "prune"); code != ExitError || !strings.Contains(errb.String(), "-auto-approve") {
		t.Errorf("image prune without a terminal: %d %q", code, errb)
	}
	if code := run(t, e, out, errb, "image", "prune", "-auto-approve"); code != ExitOK || !strings.Contains(out.String(), "Nothing to prune") {
		t.Errorf("image prune: %d %q %s", code, out, errb)
	}
	if code := run(t, e, out, errb, "image", "nope"); code != ExitError || !strings.Contains(errb.String(), "unknown subcommand") {
		t.Errorf("image nope: %d %q", code, errb)
	}

	if code := run(t, e, out, errb, "gc", "-json"); code != ExitOK {
		t.Fatalf("gc: %d %s", code, errb)
	}
	var rep api.GCReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || rep.Orphans == nil || len(rep.Orphans) != 0 || rep.Removed {
		t.Errorf("gc -json: %v %s, want no orphans", err, out)
	}
	if code := run(t, e, out, errb, "gc"); code != ExitOK || !strings.Contains(out.String(), "Nothing to collect") {
		t.Errorf("gc: %d %q %s", code, out, errb)
	}

	// The console request reaches the agent that owns server.hello.
	if code := run(t, e, out, errb, "console", "quickstart", "server.hello"); code != ExitOK || !strings.Contains(out.String(), "console of server.hello") {
		t.Errorf("console: %d %q %q", code, out, errb)
	}
	if code := run(t, e, out, errb, "console", "quickstart", "network.lan"); code != ExitError || !strings.Contains(errb.String(), "only a server has a console") {
		t.Errorf("console of a network: %d %q", code, errb)
	}
	if code := run(t, e, out, errb, "console", "quickstart", "server.nope"); code != ExitError || !strings.Contains(errb.String(), "no resource server.nope") {
		t.Errorf("console of a missing server: %d %q", code, errb)
	}
	if code := run(t, e, out, errb, "console", "quickstart"); code != ExitError {
		t.Errorf("console without an address: %d", code)
	}
}
