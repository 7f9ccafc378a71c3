package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// result is what one in-process run of kiln produced.
type result struct {
	code           int
	stdout, stderr string
}

// kiln runs the CLI in dir with the given environment.
func kiln(t *testing.T, e *Env, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if e == nil {
		e = &Env{}
	}
	e.Stdout, e.Stderr = &stdout, &stderr
	if e.Stdin == nil {
		e.Stdin = strings.NewReader("")
	}
	if e.Dir == "" {
		e.Dir = t.TempDir()
	}
	code := e.Run(append([]string{"kiln"}, args...))
	return result{code, stdout.String(), stderr.String()}
}

// refusal is a command line that kiln refuses, and what stderr says: its
// start, or its first line, as the test checks.
type refusal struct {
	args []string
	want string
}

// eachRefusal runs check on every refusal, as a subtest named by its
// command line.
func eachRefusal(t *testing.T, tests []refusal, check func(t *testing.T, tt refusal)) {
	t.Helper()
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) { check(t, tt) })
	}
}

// refusedAtStart runs `kiln agent` or `kiln server` (args[0]) with args and
// what it needs to start otherwise, and checks that it exits 1 with stderr
// starting with want.
func refusedAtStart(t *testing.T, tt refusal) {
	t.Helper()
	args, want := tt.args, tt.want
	dir := t.TempDir()
	full := append([]string{args[0], "-data-dir", dir}, args[1:]...)
	switch args[0] {
	case "agent":
		full = append(full, "-servers", "127.0.0.1:1", "-driver", "memory")
	case "server":
		full = append(full, "-raft-addr", "127.0.0.1:1", "-http-addr", "127.0.0.1:1")
	}
	r := kiln(t, &Env{Dir: dir}, full...)
	if r.code != ExitError || !strings.HasPrefix(r.stderr, want) {
		t.Errorf("exit %d, stderr %q; want it to start with %q", r.code, r.stderr, want)
	}
}

// writeFiles makes the files (slash paths) under a new temporary directory.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestHelp(t *testing.T) {
	for _, c := range commands {
		for _, flag := range []string{"-h", "-help", "--help"} {
			t.Run(c.name+flag, func(t *testing.T) {
				r := kiln(t, nil, c.name, flag)
				if r.code != ExitOK {
					t.Fatalf("exit %d, want 0; stderr: %s", r.code, r.stderr)
				}
				if !strings.HasPrefix(r.stdout, "Usage: kiln "+c.name) {
					t.Errorf("stdout does not start with the usage:\n%s", r.stdout)
				}
				if r.stderr != "" {
					t.Errorf("stderr = %q, want nothing", r.stderr)
				}
			})
		}
		t.Run("help-"+c.name, func(t *testing.T) {
			r := kiln(t, nil, "help", c.name)
			if r.code != ExitOK || r.stdout != c.usage {
				t.Errorf("kiln help %s: exit %d, stdout %q", c.name, r.code, r.stdout)
			}
		})
	}
}

func TestMainUsage(t *testing.T) {
	tests := []struct {
		args      []string
		code      int
		usageOn   string // "stdout" or "stderr"
		stderrHas string
		stdoutHas string
	}{
		{args: nil, code: ExitError, usageOn: "stderr"},
		{args: []string{"--help"}, code: ExitOK, usageOn: "stdout"},
		{args: []string{"-h"}, code: ExitOK, usageOn: "stdout"},
		{args: []string{"help"}, code: ExitOK, usageOn: "stdout"},
		{args: []string{"bogus"}, code: ExitError, usageOn: "stderr", stderrHas: `unknown command "bogus"`},
		{args: []string{"help", "bogus"}, code: ExitError, usageOn: "stderr", stderrHas: `unknown command "bogus"`},
		{args: []string{"version"}, code: ExitOK, stdoutHas: "kiln "},
		{args: []string{"--version"}, code: ExitOK, stdoutHas: "kiln "},
		{args: []string{"version", "extra"}, code: ExitError, stderrHas: `unexpected argument "extra"`},
		{args: []string{"plan", "-nope", "x"}, code: ExitError, stderrHas: "flag provided but not defined: -nope"},
		{args: []string{"validate"}, code: ExitError, stderrHas: "missing argument"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := kiln(t, nil, tt.args...)
			if r.code != tt.code {
				t.Errorf("exit %d, want %d", r.code, tt.code)
			}
			const usage = "Usage: kiln COMMAND"
			switch tt.usageOn {
			case "stdout":
				if !strings.Contains(r.stdout, usage) {
					t.Errorf("usage not on stdout: %q", r.stdout)
				}
			case "stderr":
				if !strings.Contains(r.stderr, usage) {
					t.Errorf("usage not on stderr: %q", r.stderr)
				}
			}
			if !strings.Contains(r.stderr, tt.stderrHas) {
				t.Errorf("stderr %q does not contain %q", r.stderr, tt.stderrHas)
			}
			if !strings.Contains(r.stdout, tt.stdoutHas) {
				t.Errorf("stdout %q does not contain %q", r.stdout, tt.stdoutHas)
			}
		})
	}
}

func TestParseArgsInterspersed(t *testing.T) {
	tests := []struct {
		args  []string
		pos   []string
		stack string
		vars  []string
		json  bool
	}{
		{args: []string{"dir"}, pos: []string{"dir"}},
		{args: []string{"-json", "dir"}, pos: []string{"dir"}, json: true},
		{args: []string{"dir", "-json"}, pos: []string{"dir"}, json: true},
		{args: []string{"-var", "a=1", "dir", "-stack", "s", "-var=b=2"}, pos: []string{"dir"}, stack: "s", vars: []string{"a=1", "b=2"}},
		{args: []string{"a", "b", "-json", "c"}, pos: []string{"a", "b", "c"}, json: true},
		{args: []string{"-json", "--", "-dir", "-var"}, pos: []string{"-dir", "-var"}, json: true},
		{args: []string{"dir", "--", "-json"}, pos: []string{"dir", "-json"}},
		{args: nil},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			fs := newFlagSet("plan")
			var v varFlags
			v.register(fs)
			asJSON := fs.Bool("json", false, "")
			e := &Env{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}}
			pos, _, ok := e.parseArgs(lookup("plan"), fs, tt.args)
			if !ok {
				t.Fatalf("parse failed: %s", e.Stderr)
			}
			if !reflect.DeepEqual(pos, tt.pos) {
				t.Errorf("positional = %q, want %q", pos, tt.pos)
			}
			if v.stack != tt.stack || *asJSON != tt.json || !reflect.DeepEqual([]string(v.vars), tt.vars) {
				t.Errorf("stack %q json %v vars %q; want %q %v %q", v.stack, *asJSON, v.vars, tt.stack, tt.json, tt.vars)
			}
		})
	}
}
