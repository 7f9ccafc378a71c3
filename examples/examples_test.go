// Package examples_test loads every example the way `kiln validate` does, so
// an example that stops validating fails the build.
package examples_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/hclwrite"

	"github.com/kiln-dev/kiln/cli"
	"github.com/kiln-dev/kiln/spec"
)

// want lists, per example, resource addresses and outputs it must produce
// with its default params.
var want = map[string]struct {
	resources []string
	outputs   []string
}{
	"quickstart": {
		resources: []string{"image.guest", "network.lan", "server.hello"},
		outputs:   []string{"address"},
	},
	"web": {
		resources: []string{
			"image.debian", "network.front", "network.back",
			"volume.web_data[0]", "volume.web_data[1]",
			`volume.db_data["primary"]`, `volume.db_data["replica"]`,
			"server.lb", "server.web[0]", "server.web[1]",
			`server.db["primary"]`, `server.db["replica"]`,
			"port_forward.http",
		},
		outputs: []string{"url", "web_addresses", "db_addresses"},
	},
	"ci": {
		resources: []string{"image.guest", "network.job", "server.runner", "port_forward.ssh"},
		outputs:   []string{"runner_address", "ssh_port", "endpoint"},
	},
}

func exampleDirs(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			dirs = append(dirs, e.Name())
		}
	}
	if len(dirs) == 0 {
		t.Fatal("no example directories")
	}
	return dirs
}

func TestExamplesValidate(t *testing.T) {
	for _, dir := range exampleDirs(t) {
		t.Run(dir, func(t *testing.T) {
			w, ok := want[dir]
			if !ok {
				t.Fatalf("example %s has no entry in want: add its resources and outputs", dir)
			}
			tmpl, err := cli.ReadTemplate(".", dir)
			if err != nil {
				t.Fatal(err)
			}
			stack, diags := spec.Load(tmpl.Bundle, tmpl.SpecOptions())
			for _, d := range diags {
				t.Errorf("%s", d.Error())
			}
			if stack == nil {
				t.FailNow()
			}
			if stack.Name != dir {
				t.Errorf("stack name = %q, want %q", stack.Name, dir)
			}
			for _, addr := range w.resources {
				if stack.Resource(addr) == nil {
					t.Errorf("resource %s missing", addr)
				}
			}
			if len(stack.Resources) != len(w.resources) {
				var got []string
				for _, r := range stack.Resources {
					got = append(got, r.Address)
				}
				t.Errorf("resources = %v, want %v", got, w.resources)
			}
			for _, o := range w.outputs {
				if _, ok := stack.Outputs[o]; !ok {
					t.Errorf("output %s missing", o)
				}
			}
			if len(stack.Outputs) != len(w.outputs) {
				t.Errorf("%d outputs, want %d", len(stack.Outputs), len(w.outputs))
			}
		})
	}
}

// TestExamplesFormatted keeps the examples in the style `kiln fmt` writes.
func TestExamplesFormatted(t *testing.T) {
	files, err := filepath.Glob("*/*.hcl")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(hclwrite.Format(src), src) {
			t.Errorf("%s is not formatted: run kiln fmt examples", f)
		}
	}
}

// TestReadmeTemplate loads the template shown in the README, so the tour
// stays true.
func TestReadmeTemplate(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "```hcl\n")
	if !ok {
		t.Fatal("README.md has no ```hcl block")
	}
	src, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("README.md: unterminated ```hcl block")
	}
	b := spec.Bundle{"main.hcl": []byte(src), "cloud-init.yaml": []byte("index: ${index}\n")}
	stack, diags := spec.Load(b, spec.Options{Stack: "readme", Dir: "README.md"})
	for _, d := range diags {
		t.Errorf("%s", d.Error())
	}
	if stack != nil && stack.Resource("server.web[1]") == nil {
		t.Error("server.web[1] missing")
	}
	if !bytes.Equal(hclwrite.Format([]byte(src)), []byte(src)) {
		t.Error("the README template is not formatted")
	}
}
