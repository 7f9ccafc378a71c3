package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	unformatted = "server \"web\" {\n  image = \"x\"\n    cpus= 1\n  memory =   \"1GiB\"\n}\n"
	formatted   = "server \"web\" {\n  image  = \"x\"\n  cpus   = 1\n  memory = \"1GiB\"\n}\n"
)

// fmtCase is one case of TestFmt: files in a directory tmpl, kiln fmt run
// on it, and what it does.
type fmtCase struct {
	name   string
	files  map[string]string
	args   []string // PATH is added last, relative to the directory
	path   string
	code   int
	stdout []string // each must appear
	stderr string
	// after: expected content of files after the run
	after map[string]string
}

var fmtCases = []fmtCase{
	{
		name:   "check lists unformatted files and changes nothing",
		files:  map[string]string{"a.hcl": unformatted, "b.hcl": formatted},
		args:   []string{"-check"},
		code:   ExitError,
		stdout: []string{"a.hcl"},
		after:  map[string]string{"a.hcl": unformatted, "b.hcl": formatted},
	},
	{
		name:  "check on formatted files succeeds silently",
		files: map[string]string{"a.hcl": formatted},
		args:  []string{"-check"},
		code:  ExitOK,
		after: map[string]string{"a.hcl": formatted},
	},
	{
		name:   "check with diff after the path",
		files:  map[string]string{"a.hcl": unformatted},
		args:   []string{"-check", "-diff"},
		code:   ExitError,
		stdout: []string{"--- ", "-    cpus= 1", "+  cpus   = 1", "@@ -1,5 +1,5 @@"},
		after:  map[string]string{"a.hcl": unformatted},
	},
	{
		name:   "rewrites and names what changed",
		files:  map[string]string{"a.hcl": unformatted, "b.hcl": formatted, "notes.txt": unformatted},
		code:   ExitOK,
		stdout: []string{"a.hcl"},
		after:  map[string]string{"a.hcl": formatted, "b.hcl": formatted, "notes.txt": unformatted},
	},
	{
		name:  "subdirectories only with -recursive",
		files: map[string]string{"a.hcl": formatted, "sub/c.hcl": unformatted},
		code:  ExitOK,
		after: map[string]string{"sub/c.hcl": unformatted},
	},
	{
		name:   "recursive",
		files:  map[string]string{"a.hcl": formatted, "sub/c.hcl": unformatted, ".kiln/d.hcl": unformatted},
		args:   []string{"-recursive"},
		code:   ExitOK,
		stdout: []string{filepath.Join("sub", "c.hcl")},
		after:  map[string]string{"sub/c.hcl": formatted, ".kiln/d.hcl": unformatted},
	},
	{
		name:   "one file",
		files:  map[string]string{"a.hcl": unformatted, "b.hcl": unformatted},
		path:   "a.hcl",
		code:   ExitOK,
		after:  map[string]string{"a.hcl": formatted, "b.hcl": unformatted},
		stdout: []string{"a.hcl"},
	},
	{
		name:   "syntax error is a diagnostic, file untouched",
		files:  map[string]string{"bad.hcl": "server \"web\" {\n  image = \n"},
		code:   ExitError,
		stderr: "on " + filepath.Join("tmpl", "bad.hcl") + " line 2",
		after:  map[string]string{"bad.hcl": "server \"web\" {\n  image = \n"},
	},
}

func TestFmt(t *testing.T) {
	for _, tt := range fmtCases {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, tt.files)
			args := append(append([]string{"fmt"}, tt.args...), filepath.Join("tmpl", tt.path))
			parent := filepath.Dir(dir)
			if err := os.Rename(dir, filepath.Join(parent, "tmpl")); err != nil {
				t.Fatal(err)
			}
			dir = filepath.Join(parent, "tmpl")
			r := kiln(t, &Env{Dir: parent}, args...)
			if r.code != tt.code {
				t.Errorf("exit %d, want %d; stderr: %s", r.code, tt.code, r.stderr)
			}
			for _, s := range tt.stdout {
				if !strings.Contains(r.stdout, s) {
					t.Errorf("stdout does not contain %q:\n%s", s, r.stdout)
				}
			}
			if len(tt.stdout) == 0 && r.stdout != "" {
				t.Errorf("stdout = %q, want nothing", r.stdout)
			}
			if !strings.Contains(r.stderr, tt.stderr) || (tt.stderr == "" && r.stderr != "") {
				t.Errorf("stderr = %q, want %q", r.stderr, tt.stderr)
			}
			for name, want := range tt.after {
				got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != want {
					t.Errorf("%s after fmt:\n%s\nwant:\n%s", name, got, want)
				}
			}
		})
	}
}

func TestFmtKeepsMode(t *testing.T) {
	dir := writeFiles(t, map[string]string{"a.hcl": unformatted})
	p := filepath.Join(dir, "a.hcl")
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := kiln(t, &Env{Dir: dir}, "fmt", "a.hcl"); r.code != ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
	}
}

func TestFmtStdin(t *testing.T) {
	tests := []struct {
		in     string
		args   []string
		code   int
		stdout string
	}{
		{in: unformatted, code: ExitOK, stdout: formatted},
		{in: unformatted, args: []string{"-check"}, code: ExitError, stdout: "<stdin>\n"},
		{in: formatted, args: []string{"-check"}, code: ExitOK, stdout: ""},
		{in: "a = \n", code: ExitError, stdout: ""},
	}
	for _, tt := range tests {
		r := kiln(t, &Env{Stdin: strings.NewReader(tt.in)}, append(append([]string{"fmt"}, tt.args...), "-")...)
		if r.code != tt.code || r.stdout != tt.stdout {
			t.Errorf("fmt %v -: exit %d stdout %q; want %d %q (stderr %s)", tt.args, r.code, r.stdout, tt.code, tt.stdout, r.stderr)
		}
	}
}

func TestUnifiedDiff(t *testing.T) {
	tests := []struct {
		name, a, b, want string
	}{
		{name: "equal", a: "x\n", b: "x\n", want: ""},
		{
			name: "one line changed",
			a:    "a\nb\nc\n", b: "a\nB\nc\n",
			want: "--- f\n+++ f\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n",
		},
		{
			name: "insert into empty",
			a:    "", b: "x\n",
			want: "--- f\n+++ f\n@@ -0,0 +1,1 @@\n+x\n",
		},
		{
			name: "two hunks far apart",
			a:    "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n",
			b:    "one\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\ntwelve\n",
			want: "--- f\n+++ f\n@@ -1,4 +1,4 @@\n-1\n+one\n 2\n 3\n 4\n@@ -9,4 +9,4 @@\n 9\n 10\n 11\n-12\n+twelve\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := unifiedDiff("f", tt.a, tt.b); got != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}
