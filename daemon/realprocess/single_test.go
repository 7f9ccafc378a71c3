package realprocess

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/testnet"
	"github.com/kiln-dev/kiln/internal/testwait"
)

// TestServerWithAgentAndSnapshot runs `kiln server -bootstrap -agent` (both
// roles in one process, with the test-only memory driver), applies through
// the CLI, saves a snapshot, destroys the stack, restores the snapshot and
// finds the stack as it was before the destroy.
func TestServerWithAgentAndSnapshot(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "server")
	httpAddr := testnet.FreeAddr(t)
	start(t, "server", root, nil, "server", "-bootstrap", "-agent", "-agent-driver=memory",
		"-data-dir", dir, "-http-addr", httpAddr, "-raft-addr", testnet.FreeAddr(t), "-log-level", "warn")
	var token string
	testwait.For(t, 30*time.Second, "management token", func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "management.token"))
		token = strings.TrimSpace(string(b))
		return err == nil && token != ""
	})
	tdir := filepath.Join(root, "tmpl")
	if err := os.MkdirAll(tdir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tdir, "web.hcl"), []byte(template), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command(kiln(t), args...)
		cmd.Dir = tdir
		cmd.Env = append(os.Environ(), "KILN_ADDR="+httpAddr, "KILN_TOKEN="+token)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("kiln %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
		}
		return out.Bytes()
	}
	// The agent registers in the same process; wait for it.
	testwait.For(t, 30*time.Second, "the in-process agent", func() bool {
		cmd := exec.Command(kiln(t), "agents", "-json")
		cmd.Env = append(os.Environ(), "KILN_ADDR="+httpAddr, "KILN_TOKEN="+token)
		out, err := cmd.Output()
		return err == nil && strings.Contains(string(out), `"up"`)
	})

	run("apply", "web.hcl", "-auto-approve", "-json")
	status := func() map[string]any {
		var st map[string]any
		if err := json.Unmarshal(run("status", "web", "-json"), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := status(); st["status"] != "COMPLETE" {
		t.Fatalf("status after apply: %v", st)
	}
	out := string(run("output", "web", "addresses", "-json"))
	if !strings.Contains(out, "10.77.0.10") || !strings.Contains(out, "10.77.0.11") {
		t.Fatalf("output addresses = %s", out)
	}

	snap := filepath.Join(root, "backup.snap")
	run("operator", "snapshot", "save", snap)
	if fi, err := os.Stat(snap); err != nil || fi.Size() == 0 {
		t.Fatalf("snapshot file: %v %v", fi, err)
	}
	run("destroy", "web", "-auto-approve")
	if st := status(); st["status"] == "COMPLETE" {
		t.Fatalf("status after destroy: %v", st)
	}
	run("operator", "snapshot", "restore", snap)
	testwait.For(t, 30*time.Second, "the restored stack", func() bool {
		return status()["status"] == "COMPLETE"
	})
	if out := string(run("output", "web", "addresses", "-json")); !strings.Contains(out, "10.77.0.10") {
		t.Fatalf("output after restore = %s", out)
	}
}
