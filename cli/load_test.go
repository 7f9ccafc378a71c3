package cli

import (
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"

	"github.com/kiln-dev/kiln/spec"
)

// captureLoad stands in for spec.Load and records the options it was given.
func captureLoad(got *spec.Options) func(spec.Bundle, spec.Options) (*spec.Stack, hcl.Diagnostics) {
	return func(b spec.Bundle, o spec.Options) (*spec.Stack, hcl.Diagnostics) {
		*got = o
		return &spec.Stack{Name: o.Stack}, nil
	}
}

// TestVarsReachSpec checks that -var, -var-file and KILN_VAR_ reach spec in
// the order given; spec decides precedence (see TestPlanVarPrecedence).
func TestVarsReachSpec(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		environ []string
		want    spec.Options
		code    int
		stderr  string
	}{
		{
			name: "defaults",
			args: []string{"mystack"},
			want: spec.Options{Stack: "mystack", Env: map[string]string{}},
		},
		{
			name: "file names the stack",
			args: []string{"mystack/main.hcl"},
			want: spec.Options{Stack: "main", Env: map[string]string{}},
		},
		{
			name:    "flags before and after the path, env with prefix only",
			args:    []string{"-var", "a=1", "mystack", "-stack", "ci-42", "-var", "b=x=y", "-var-file", "mystack/vals.hcl", "-var", "a=2"},
			environ: []string{"KILN_VAR_c=3", "KILN_VAR_=ignored", "OTHER=1", "KILN_VARX=no"},
			want: spec.Options{
				Stack:    "ci-42",
				Vars:     []spec.RawVar{{Name: "a", Value: "1"}, {Name: "b", Value: "x=y"}, {Name: "a", Value: "2"}},
				VarFiles: []spec.VarFile{{Name: "mystack/vals.hcl", Bytes: []byte("a = 5\n")}},
				Env:      map[string]string{"c": "3"},
			},
		},
		{
			name:   "var without equals",
			args:   []string{"mystack", "-var", "novalue"},
			code:   ExitError,
			stderr: `-var "novalue": want NAME=VALUE`,
		},
		{
			name:   "missing var file",
			args:   []string{"mystack", "-var-file", "nope.hcl"},
			code:   ExitError,
			stderr: "-var-file: open",
		},
		{
			name:   "directory name is not a stack name",
			args:   []string{"Bad Name"},
			code:   ExitError,
			stderr: "choose one with -stack NAME",
		},
		{
			name: "bad directory name with -stack",
			args: []string{"Bad Name", "-stack", "good"},
			want: spec.Options{Stack: "good", Env: map[string]string{}},
		},
	}
	for _, verb := range []string{"validate", "plan"} {
		for _, tt := range tests {
			t.Run(verb+"/"+tt.name, func(t *testing.T) {
				dir := writeFiles(t, map[string]string{
					"mystack/main.hcl":  "",
					"mystack/vals.hcl":  "a = 5\n",
					"Bad Name/main.hcl": "",
				})
				var got spec.Options
				e := &Env{Dir: dir, Environ: tt.environ, specLoad: captureLoad(&got)}
				r := kiln(t, e, append([]string{verb}, tt.args...)...)
				if r.code != tt.code {
					t.Fatalf("exit %d, want %d; stderr: %s", r.code, tt.code, r.stderr)
				}
				if !strings.Contains(r.stderr, tt.stderr) {
					t.Errorf("stderr %q does not contain %q", r.stderr, tt.stderr)
				}
				if tt.code != ExitOK {
					return
				}
				// Dir and Files come from the template (bundle_test.go).
				if got.Stack != tt.want.Stack {
					t.Errorf("stack = %q, want %q", got.Stack, tt.want.Stack)
				}
				if !reflect.DeepEqual(got.Vars, tt.want.Vars) {
					t.Errorf("vars = %q, want %q", got.Vars, tt.want.Vars)
				}
				if !reflect.DeepEqual(got.VarFiles, tt.want.VarFiles) {
					t.Errorf("var files = %q, want %q", got.VarFiles, tt.want.VarFiles)
				}
				if !reflect.DeepEqual(got.Env, tt.want.Env) {
					t.Errorf("env = %q, want %q", got.Env, tt.want.Env)
				}
			})
		}
	}
}

// diagLoad stands in for spec.Load and reports one error at line 2 of
// tmpl/main.hcl (the file as spec names it when the template PATH is tmpl).
func diagLoad(b spec.Bundle, o spec.Options) (*spec.Stack, hcl.Diagnostics) {
	return nil, hcl.Diagnostics{{
		Severity: hcl.DiagError,
		Summary:  "Invalid CIDR",
		Detail:   `"10.0.0.0/33" is not a CIDR block.`,
		Subject: &hcl.Range{
			Filename: "tmpl/main.hcl",
			Start:    hcl.Pos{Line: 2, Column: 10, Byte: 23},
			End:      hcl.Pos{Line: 2, Column: 23, Byte: 36},
		},
	}}
}
