package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The start the daemon verbs share (verb.go): a bad count of arguments is
// refused before anything is started, and a connection that cannot be made
// is said under the verb's name, exit 1.
func TestVerbStart(t *testing.T) {
	// want is the whole first line of stderr.
	eachRefusal(t, []refusal{
		{[]string{"stacks", "extra"}, `kiln stacks: unexpected argument "extra"`},
		{[]string{"status"}, "kiln status: missing argument"},
		{[]string{"events", "a", "b"}, `kiln events: unexpected argument "b"`},
		{[]string{"gc", "extra"}, `kiln gc: unexpected argument "extra"`},
		{[]string{"console", "s"}, "kiln console: missing argument"},
		{[]string{"destroy", "-auto-approve"}, "kiln destroy: missing argument"},
		{[]string{"stacks", "-servers", ","}, "kiln stacks: no server address given"},
		{[]string{"status", "-servers", ",", "s"}, "kiln status: no server address given"},
		{[]string{"events", "s", "-servers", ","}, "kiln events: no server address given"},
		{[]string{"gc", "-servers", ","}, "kiln gc: no server address given"},
		{[]string{"agents", "-servers", ","}, "kiln agents: no server address given"},
		{[]string{"agents", "revoke", "a1", "-servers", ","}, "kiln agents revoke: no server address given"},
		{[]string{"output", "-servers", ",", "s"}, "kiln output: no server address given"},
		{[]string{"console", "-servers", ",", "s", "server.web"}, "kiln console: no server address given"},
		{[]string{"destroy", "-auto-approve", "-servers", ",", "s"}, "kiln destroy: no server address given"},
		{[]string{"image", "list", "-servers", ","}, "kiln image list: no server address given"},
		{[]string{"token", "list", "-servers", ","}, "kiln token list: no server address given"},
		{[]string{"stack", "renew", "-ttl", "1h", "-servers", ",", "s"}, "kiln stack renew: no server address given"},
		{[]string{"operator", "raft", "list-peers", "-servers", ","}, "kiln operator raft list-peers: no server address given"},
		{[]string{"operator", "snapshot", "save", "f", "-servers", ","}, "kiln operator snapshot save: no server address given"},
	}, func(t *testing.T, tt refusal) {
		dir := t.TempDir()
		r := kiln(t, &Env{Dir: dir}, tt.args...)
		if r.code != ExitError {
			t.Errorf("exit %d, want %d", r.code, ExitError)
		}
		if line, _, _ := strings.Cut(r.stderr, "\n"); line != tt.want {
			t.Errorf("stderr %q, want first line %q", r.stderr, tt.want)
		}
		if r.stdout != "" {
			t.Errorf("stdout %q, want nothing", r.stdout)
		}
		noEmbeddedServer(t, dir)
	})
}

// The verbs made of subcommands say which they want, and refuse another,
// with the usage, before anything is started.
func TestVerbSubcommands(t *testing.T) {
	// want is the whole first line of stderr.
	eachRefusal(t, []refusal{
		{[]string{"image"}, "kiln image: want a subcommand: list or prune"},
		{[]string{"image", "lisst"}, `kiln image: unknown subcommand "lisst"`},
		{[]string{"token", "-json"}, "kiln token: want a subcommand: create, list or revoke"},
		{[]string{"token", "drop"}, `kiln token: unknown subcommand "drop"`},
		{[]string{"operator", "raft"}, "kiln operator raft: want list-peers or remove-peer"},
		{[]string{"operator", "raft", "peers"}, `kiln operator raft: unknown subcommand "peers"`},
		{[]string{"operator", "raft", "remove-peer"}, "kiln operator raft: missing argument"},
	}, func(t *testing.T, tt refusal) {
		dir := t.TempDir()
		r := kiln(t, &Env{Dir: dir}, tt.args...)
		line, rest, _ := strings.Cut(r.stderr, "\n")
		if r.code != ExitError || line != tt.want {
			t.Errorf("exit %d, stderr %q; want 1 and first line %q", r.code, r.stderr, tt.want)
		}
		if !strings.Contains(rest, "Usage: kiln "+tt.args[0]) {
			t.Errorf("no usage after the error: %q", r.stderr)
		}
		noEmbeddedServer(t, dir)
	})
}

// noEmbeddedServer checks that no embedded server started in dir.
func noEmbeddedServer(t *testing.T, dir string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, embeddedDir)); !os.IsNotExist(err) {
		t.Errorf("./%s made (%v): no embedded server should start", embeddedDir, err)
	}
}

// The verbs that ask before they change anything refuse, before anything
// is started, when there is no terminal to ask on and no -auto-approve
// (and apply -json without it: there is no prompt in JSON mode).
func TestVerbConfirm(t *testing.T) {
	// want is the whole of stderr.
	eachRefusal(t, []refusal{
		{[]string{"apply", "quickstart"}, "kiln apply: no terminal to confirm on; run with -auto-approve to apply without confirmation"},
		{[]string{"apply", "-json", "quickstart"}, "kiln apply: -json needs -auto-approve (there is no prompt in JSON mode)"},
		{[]string{"destroy", "quickstart"}, "kiln destroy: no terminal to confirm on; run with -auto-approve to destroy without confirmation"},
		{[]string{"destroy", "-json", "quickstart"}, "kiln destroy: no terminal to confirm on; run with -auto-approve to destroy without confirmation"},
		{[]string{"image", "prune"}, "kiln image prune: no terminal to confirm on; run with -auto-approve to prune without confirmation"},
		{[]string{"image", "prune", "-json"}, "kiln image prune: no terminal to confirm on; run with -auto-approve to prune without confirmation"},
	}, func(t *testing.T, tt refusal) {
		e, out, errb := embeddedEnv(t)
		if code := run(t, e, out, errb, tt.args...); code != ExitError || errb.String() != tt.want+"\n" || out.Len() != 0 {
			t.Errorf("exit %d, stdout %q, stderr %q; want 1, nothing and %q", code, out, errb, tt.want)
		}
		noEmbeddedServer(t, e.Dir)
	})
}
