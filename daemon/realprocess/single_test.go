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

// single is a `kiln server -bootstrap -agent -agent-driver=memory` (both
// roles in one process, with the test-only memory driver) and a template
// directory to run the CLI in.
type single struct {
	tb              testing.TB
	root, tdir      string
	httpAddr, token string
	p               *proc // the server process
}

// startSingle starts a single node, waits for its management token and its
// in-process agent, and writes the template file name with src.
func startSingle(tb testing.TB, name, src string) *single {
	n := &single{tb: tb, root: tb.TempDir(), httpAddr: testnet.FreeAddr(tb)}
	dir := filepath.Join(n.root, "server")
	n.p = start(tb, "server", n.root, nil, "server", "-bootstrap", "-agent", "-agent-driver=memory",
		"-data-dir", dir, "-http-addr", n.httpAddr, "-raft-addr", testnet.FreeAddr(tb), "-log-level", "warn")
	testwait.For(tb, 30*time.Second, "management token", func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "management.token"))
		n.token = strings.TrimSpace(string(b))
		return err == nil && n.token != ""
	})
	n.tdir = filepath.Join(n.root, "tmpl")
	if err := os.MkdirAll(n.tdir, 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n.tdir, name), []byte(src), 0o644); err != nil {
		tb.Fatal(err)
	}
	testwait.For(tb, 30*time.Second, "the in-process agent", func() bool {
		out, err := n.run("agents", "-json")
		return err == nil && strings.Contains(out, `"up"`)
	})
	return n
}

// run runs the CLI against the node in the template directory and returns
// what it printed (stdout, then stderr).
func (n *single) run(args ...string) (string, error) {
	cmd := exec.Command(kiln(n.tb), args...)
	cmd.Dir = n.tdir
	cmd.Env = append(os.Environ(), "KILN_ADDR="+n.httpAddr, "KILN_TOKEN="+n.token)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String() + errb.String(), err
}

// TestServerWithAgentAndSnapshot runs `kiln server -bootstrap -agent` (both
// roles in one process, with the test-only memory driver), applies through
// the CLI, saves a snapshot, destroys the stack, restores the snapshot and
// finds the stack as it was before the destroy.
func TestServerWithAgentAndSnapshot(t *testing.T) {
	n := startSingle(t, "web.hcl", template)
	root := n.root
	run := func(args ...string) []byte {
		t.Helper()
		out, err := n.run(args...)
		if err != nil {
			t.Fatalf("kiln %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return []byte(out)
	}

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
