package cli

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// readTemplateCase is one case of TestReadTemplate: files in a directory
// mystack, and what ReadTemplate makes of PATH.
type readTemplateCase struct {
	name  string
	files map[string]string
	// setup runs after the files are written, with the directory.
	setup func(t *testing.T, dir string)
	path  string // relative to the directory; "" is the directory itself
	keys  []string
	tmpl  []string
	stack string
	err   string
}

var readTemplateCases = []readTemplateCase{
	{
		name:  "directory",
		files: map[string]string{"a.hcl": "", "b.hcl": "", "cloud-init.yaml": "x", "sub/c.hcl": "", "sub/d.txt": ""},
		keys:  []string{"a.hcl", "b.hcl", "cloud-init.yaml", "sub/c.hcl", "sub/d.txt"},
		tmpl:  []string{"a.hcl", "b.hcl"},
	},
	{
		name:  "file is the only template file, its directory the bundle",
		files: map[string]string{"web.hcl": "", "other.hcl": "", "cloud-init.yaml": "x"},
		path:  "web.hcl",
		keys:  []string{"cloud-init.yaml", "other.hcl", "web.hcl"},
		tmpl:  []string{"web.hcl"},
		stack: "web",
	},
	{
		name:  "dot-directories skipped, dot files kept",
		files: map[string]string{"main.hcl": "", ".git/config": "", ".kiln/raft.db": "", "sub/.cache/x": "", ".env": ""},
		keys:  []string{".env", "main.hcl"},
		tmpl:  []string{"main.hcl"},
	},
	{
		name:  "symlink inside the directory is read",
		files: map[string]string{"main.hcl": "", "data/real.yaml": "real"},
		setup: func(t *testing.T, dir string) {
			symlink(t, "data/real.yaml", filepath.Join(dir, "link.yaml"))
		},
		keys: []string{"data/real.yaml", "link.yaml", "main.hcl"},
		tmpl: []string{"main.hcl"},
	},
	{
		name:  "symlink leaving the directory is refused",
		files: map[string]string{"main.hcl": ""},
		setup: func(t *testing.T, dir string) {
			secret := filepath.Join(t.TempDir(), "secret")
			if err := os.WriteFile(secret, []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			symlink(t, secret, filepath.Join(dir, "secret"))
		},
		err: "symlink secret points outside the template directory",
	},
	{
		name:  "relative symlink climbing out is refused",
		files: map[string]string{"main.hcl": "", "sub/x": ""},
		setup: func(t *testing.T, dir string) {
			symlink(t, "../../", filepath.Join(dir, "sub", "up"))
		},
		err: "symlink sub/up points outside the template directory",
	},
	{
		name:  "symlink to a directory is refused",
		files: map[string]string{"main.hcl": "", "sub/x": ""},
		setup: func(t *testing.T, dir string) {
			symlink(t, "sub", filepath.Join(dir, "alias"))
		},
		err: "symlink alias points to a directory",
	},
	{
		name:  "directory without .hcl files",
		files: map[string]string{"README.md": "", "sub/main.hcl": ""},
		err:   "no .hcl files",
	},
	{
		name: "missing path",
		path: "nope.hcl",
		err:  "no such file or directory",
	},
	{
		name:  "too large",
		files: map[string]string{"main.hcl": ""},
		setup: func(t *testing.T, dir string) {
			f, err := os.Create(filepath.Join(dir, "big.img"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := f.Truncate(MaxBundleSize + 1); err != nil {
				t.Fatal(err)
			}
		},
		err: ErrBundleTooLarge.Error(),
	},
}

func TestReadTemplate(t *testing.T) {
	for _, tt := range readTemplateCases {
		t.Run(tt.name, func(t *testing.T) {
			parent := writeFiles(t, nil)
			dir := filepath.Join(parent, "mystack")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for name, content := range tt.files {
				p := filepath.Join(dir, filepath.FromSlash(name))
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tt.setup != nil {
				tt.setup(t, dir)
			}
			// PATH relative to the working directory, as a user types it.
			p := filepath.Join("mystack", tt.path)
			tmpl, err := ReadTemplate(parent, p)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var keys []string
			for k := range tmpl.Bundle {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			if !reflect.DeepEqual(keys, tt.keys) {
				t.Errorf("bundle keys = %q, want %q", keys, tt.keys)
			}
			if !reflect.DeepEqual(tmpl.Files, tt.tmpl) {
				t.Errorf("template files = %q, want %q", tmpl.Files, tt.tmpl)
			}
			stack := tt.stack
			if stack == "" {
				stack = "mystack"
			}
			if tmpl.Name != stack {
				t.Errorf("stack name = %q, want %q", tmpl.Name, stack)
			}
			if tmpl.Dir != "mystack" {
				t.Errorf("dir = %q, want mystack", tmpl.Dir)
			}
		})
	}
}

func TestReadTemplateContent(t *testing.T) {
	dir := writeFiles(t, map[string]string{"main.hcl": "a = 1\n", "files/motd": "hello\n"})
	tmpl, err := ReadTemplate("/", dir) // absolute PATH: the working directory is not used
	if err != nil {
		t.Fatal(err)
	}
	if got := string(tmpl.Bundle["files/motd"]); got != "hello\n" {
		t.Errorf("files/motd = %q", got)
	}
	if tmpl.Dir != dir {
		t.Errorf("dir = %q, want %q", tmpl.Dir, dir)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}
