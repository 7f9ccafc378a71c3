package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"

	"github.com/kiln-dev/kiln/spec"
)

// stackLoad stands in for spec.Load and returns a stack with n networks.
func stackLoad(n int) func(spec.Bundle, spec.Options) (*spec.Stack, hcl.Diagnostics) {
	return func(b spec.Bundle, o spec.Options) (*spec.Stack, hcl.Diagnostics) {
		s := &spec.Stack{Name: o.Stack}
		for i := range n {
			s.Resources = append(s.Resources, &spec.Resource{
				Address:  fmt.Sprintf("network.n%d", i),
				Kind:     spec.KindNetwork,
				Name:     fmt.Sprintf("n%d", i),
				Attrs:    map[string]any{"cidr": fmt.Sprintf("10.%d.0.0/24", i), "nat": false, "dhcp": true},
				Computed: map[string]any{"id": spec.Unknown{}, "gateway": fmt.Sprintf("10.%d.0.1", i), "bridge": spec.Unknown{}},
			})
		}
		return s, nil
	}
}

// planDoc is the part of the plan JSON the CLI tests look at.
type planDoc struct {
	Stack   string `json:"stack"`
	Changes []struct {
		Address string `json:"address"`
		Action  string `json:"action"`
	} `json:"changes"`
	Summary struct {
		Create, Update, Replace, Delete int
	} `json:"summary"`
	Outputs map[string]struct {
		Value any `json:"value"`
	} `json:"outputs"`
}

func TestPlanExitCodes(t *testing.T) {
	tests := []struct {
		name      string
		load      func(spec.Bundle, spec.Options) (*spec.Stack, hcl.Diagnostics)
		args      []string
		code      int
		stdoutHas string
	}{
		{name: "changes", load: stackLoad(2), code: ExitOK, stdoutHas: "network.n1"},
		{name: "changes detailed", load: stackLoad(2), args: []string{"-detailed-exitcode"}, code: ExitChanges},
		{name: "no changes", load: stackLoad(0), code: ExitOK, stdoutHas: "No changes."},
		{name: "no changes detailed", load: stackLoad(0), args: []string{"-detailed-exitcode"}, code: ExitOK},
		{name: "template error", load: diagLoad, code: ExitError},
		{name: "template error detailed", load: diagLoad, args: []string{"-detailed-exitcode"}, code: ExitError},
		{name: "json detailed", load: stackLoad(1), args: []string{"-json", "-detailed-exitcode"}, code: ExitChanges, stdoutHas: `"stack": "tmpl"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{"tmpl/main.hcl": badCIDR})
			r := kiln(t, &Env{Dir: dir, specLoad: tt.load}, append([]string{"plan", "tmpl"}, tt.args...)...)
			if r.code != tt.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", r.code, tt.code, r.stderr)
			}
			if !strings.Contains(r.stdout, tt.stdoutHas) {
				t.Errorf("stdout does not contain %q:\n%s", tt.stdoutHas, r.stdout)
			}
			if tt.code == ExitError && (r.stderr == "" || r.stdout != "") {
				t.Errorf("error run: stdout %q, stderr %q", r.stdout, r.stderr)
			}
		})
	}
}

func TestPlanJSON(t *testing.T) {
	dir := writeFiles(t, map[string]string{"tmpl/main.hcl": ""})
	r := kiln(t, &Env{Dir: dir, specLoad: stackLoad(3)}, "plan", "-json", "tmpl", "-stack", "s1")
	if r.code != ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var doc planDoc
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, r.stdout)
	}
	if doc.Stack != "s1" || len(doc.Changes) != 3 || doc.Summary.Create != 3 {
		t.Errorf("plan = %+v", doc)
	}
	for _, c := range doc.Changes {
		if c.Action != "create" {
			t.Errorf("%s: action %s, want create (no state yet)", c.Address, c.Action)
		}
	}
}

func TestPlanColor(t *testing.T) {
	tests := []struct {
		name     string
		terminal bool
		args     []string
		environ  []string
		color    bool
	}{
		{name: "terminal", terminal: true, color: true},
		{name: "not a terminal", terminal: false, color: false},
		{name: "terminal with -no-color", terminal: true, args: []string{"-no-color"}, color: false},
		{name: "terminal with NO_COLOR", terminal: true, environ: []string{"NO_COLOR=1"}, color: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{"tmpl/main.hcl": ""})
			e := &Env{Dir: dir, Environ: tt.environ, specLoad: stackLoad(1), Terminal: func(io.Writer) bool { return tt.terminal }}
			r := kiln(t, e, append([]string{"plan", "tmpl"}, tt.args...)...)
			if r.code != ExitOK {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			if got := strings.Contains(r.stdout, "\x1b["); got != tt.color {
				t.Errorf("colour = %v, want %v:\n%q", got, tt.color, r.stdout)
			}
		})
	}
}

// TestPlanVarPrecedence runs the real spec.Load: -var over -var-file (the
// later file winning) over KILN_VAR_ over the default.
func TestPlanVarPrecedence(t *testing.T) {
	const tmpl = `param "n" {
  type    = number
  default = 1
}

volume "v" {
  count = param.n
  size  = "1GiB"
}

output "n" {
  value = param.n
}
`
	tests := []struct {
		name    string
		args    []string
		environ []string
		want    int
	}{
		{name: "default", want: 1},
		{name: "env", environ: []string{"KILN_VAR_n=2"}, want: 2},
		{name: "var file over env", environ: []string{"KILN_VAR_n=2"}, args: []string{"-var-file", "three.hcl"}, want: 3},
		{name: "later var file wins", args: []string{"-var-file", "three.hcl", "-var-file", "four.hcl"}, want: 4},
		{name: "var over var file and env", environ: []string{"KILN_VAR_n=2"}, args: []string{"-var", "n=5", "-var-file", "three.hcl"}, want: 5},
		{name: "later var wins", args: []string{"-var", "n=5", "-var", "n=6"}, want: 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{"tmpl/main.hcl": tmpl, "three.hcl": "n = 3\n", "four.hcl": "n = 4\n"})
			r := kiln(t, &Env{Dir: dir, Environ: tt.environ}, append([]string{"plan", "-json", "tmpl"}, tt.args...)...)
			if r.code != ExitOK {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			var doc planDoc
			if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
				t.Fatalf("stdout is not JSON: %v\n%s", err, r.stdout)
			}
			if doc.Summary.Create != tt.want {
				t.Errorf("%d creates, want %d", doc.Summary.Create, tt.want)
			}
			if v, _ := doc.Outputs["n"].Value.(float64); int(v) != tt.want {
				t.Errorf("output n = %v, want %d", doc.Outputs["n"].Value, tt.want)
			}
		})
	}
}

// TestPlanExamples plans every example with the real spec and planner.
func TestPlanExamples(t *testing.T) {
	for _, ex := range []string{"quickstart", "web", "ci"} {
		t.Run(ex, func(t *testing.T) {
			r := kiln(t, &Env{Dir: "../examples"}, "plan", ex, "-detailed-exitcode", "-no-color")
			if r.code != ExitChanges {
				t.Fatalf("exit %d, want 2; stderr:\n%s", r.code, r.stderr)
			}
			if !strings.Contains(r.stdout, "Plan: ") {
				t.Errorf("no summary line:\n%s", r.stdout)
			}
		})
	}
}
