package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/daemon/agent"
	"github.com/kiln-dev/kiln/daemon/embedded"
)

// TestTokenJoinTTLAndAgentRevoke: on the embedded default, `kiln token
// create -join -ttl` makes a join token with an expiry that `token list`
// shows; bad flag combinations are refused before any request;
// `kiln agents revoke` of an unknown agent names it.
func TestTokenJoinTTLAndAgentRevoke(t *testing.T) {
	e, out, errb := embeddedEnv(t)
	for _, args := range [][]string{
		{"token", "create", "-join", "-project", "p1"},
		{"token", "create", "-global", "-project", "p1", "-role", "admin"},
		{"token", "create", "-project", "p1"},
	} {
		if code := run(t, e, out, errb, args...); code != ExitError || errb.Len() == 0 {
			t.Errorf("%v: exit %d, stderr %q; want an error", args, code, errb)
		}
	}
	if code := run(t, e, out, errb, "token", "create", "-join", "-ttl", "1h", "-json"); code != ExitOK {
		t.Fatalf("create -join: %d %s", code, errb)
	}
	var tc api.TokenCreated
	if err := json.Unmarshal(out.Bytes(), &tc); err != nil {
		t.Fatal(err)
	}
	if tc.Kind != "join" || time.Until(tc.Expires) < 59*time.Minute || tc.Secret == "" {
		t.Errorf("join token: %+v", tc)
	}
	if code := run(t, e, out, errb, "token", "create", "-global", "-role", "reader", "-json"); code != ExitOK {
		t.Fatalf("create -global: %d %s", code, errb)
	}
	var gt api.TokenCreated
	if err := json.Unmarshal(out.Bytes(), &gt); err != nil || gt.Project != "" || gt.Role != "reader" || gt.Kind != "" || !gt.Expires.IsZero() {
		t.Errorf("global token: %+v %v", gt, err)
	}
	if code := run(t, e, out, errb, "token", "list"); code != ExitOK {
		t.Fatalf("list: %d %s", code, errb)
	}
	list := out.String()
	if !strings.Contains(list, "EXPIRES") || !strings.Contains(list, "never") || !strings.Contains(list, tc.ID+"  ") || !strings.Contains(list, "join") ||
		!strings.Contains(list, tc.Expires.Local().Format(time.DateTime)) {
		t.Errorf("token list:\n%s", list)
	}
	if code := run(t, e, out, errb, "agents", "revoke", "nope"); code == ExitOK || !strings.Contains(errb.String(), "agent nope") {
		t.Errorf("agents revoke nope: %d %s", code, errb)
	}
}

// TestEmbeddedAgentHasItsCredential: the embedded default's agent runs with
// a credential of its own (kept 0600 in its data directory, listed as
// "agent embedded"), not with the management token.
func TestEmbeddedAgentHasItsCredential(t *testing.T) {
	e, out, errb := embeddedEnv(t)
	if code := run(t, e, out, errb, "apply", "quickstart", "-auto-approve"); code != ExitOK {
		t.Fatalf("apply: %d %s%s", code, out, errb)
	}
	p := filepath.Join(e.Dir, embeddedDir, embedded.AgentDir, agent.CredentialFile)
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credential file %s: %v %v", p, fi, err)
	}
	if code := run(t, e, out, errb, "token", "list"); code != ExitOK || !strings.Contains(out.String(), "agent "+embedded.AgentID) {
		t.Errorf("token list (%d):\n%s%s", code, out, errb)
	}
}

// TestAgentNeedsAToken: without -token, KILN_TOKEN or a stored credential
// `kiln agent` stops at once and says what to give it.
func TestAgentNeedsAToken(t *testing.T) {
	dir := t.TempDir()
	r := kiln(t, &Env{Dir: dir}, "agent", "-data-dir", dir, "-servers", "127.0.0.1:1", "-driver", "memory")
	if r.code != ExitError || !strings.Contains(r.stderr, "no token to register with") || !strings.Contains(r.stderr, "-join") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
}
