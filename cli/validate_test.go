package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/spec"
)

const badCIDR = "network \"lan\" {\n  cidr = \"10.0.0.0/33\"\n}\n"

func TestValidateDiagnostics(t *testing.T) {
	dir := writeFiles(t, map[string]string{"tmpl/main.hcl": badCIDR})
	r := kiln(t, &Env{Dir: dir, specLoad: diagLoad}, "validate", "tmpl")
	if r.code != ExitError {
		t.Errorf("exit %d, want 1", r.code)
	}
	for _, want := range []string{"Error: Invalid CIDR", "tmpl/main.hcl line 2", `cidr = "10.0.0.0/33"`, "is not a CIDR block."} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr does not contain %q:\n%s", want, r.stderr)
		}
	}
	if r.stdout != "" {
		t.Errorf("stdout = %q, want nothing", r.stdout)
	}
}

func TestValidateJSON(t *testing.T) {
	dir := writeFiles(t, map[string]string{"tmpl/main.hcl": badCIDR})
	tests := []struct {
		name  string
		env   *Env
		code  int
		valid bool
		diags int
	}{
		{name: "invalid", env: &Env{Dir: dir, specLoad: diagLoad}, code: ExitError, valid: false, diags: 1},
		{name: "valid", env: &Env{Dir: dir, specLoad: captureLoad(new(spec.Options))}, code: ExitOK, valid: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := kiln(t, tt.env, "validate", "-json", "tmpl")
			if r.code != tt.code {
				t.Errorf("exit %d, want %d", r.code, tt.code)
			}
			var doc validateJSON
			if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
				t.Fatalf("stdout is not JSON: %v\n%s", err, r.stdout)
			}
			if doc.Valid != tt.valid || len(doc.Diagnostics) != tt.diags || doc.ErrorCount != tt.diags {
				t.Errorf("doc = %+v", doc)
			}
			if tt.diags > 0 {
				d := doc.Diagnostics[0]
				if d.Severity != "error" || d.Summary != "Invalid CIDR" || d.Range == nil || d.Range.Start.Line != 2 {
					t.Errorf("diagnostic = %+v", d)
				}
			}
		})
	}
}

// TestValidateTemplates runs the real spec.Load.
func TestValidateTemplates(t *testing.T) {
	tests := []struct {
		name   string
		tmpl   string
		code   int
		stdout string
		stderr []string
	}{
		{
			name:   "valid",
			tmpl:   "network \"lan\" {\n  cidr = \"10.0.0.0/24\"\n}\n",
			code:   ExitOK,
			stdout: "The template is valid: stack tmpl, 1 resources",
		},
		{
			name:   "syntax error",
			tmpl:   "network \"lan\" {\n  cidr = \n}\n",
			code:   ExitError,
			stderr: []string{"main.hcl line 2"},
		},
		{
			name:   "bad CIDR",
			tmpl:   badCIDR,
			code:   ExitError,
			stderr: []string{"main.hcl line 2", "10.0.0.0/33"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{"tmpl/main.hcl": tt.tmpl})
			r := kiln(t, &Env{Dir: dir}, "validate", "tmpl", "-no-color")
			if r.code != tt.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", r.code, tt.code, r.stderr)
			}
			if !strings.Contains(r.stdout, tt.stdout) {
				t.Errorf("stdout %q does not contain %q", r.stdout, tt.stdout)
			}
			for _, s := range tt.stderr {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("stderr does not contain %q:\n%s", s, r.stderr)
				}
			}
			if strings.Contains(r.stderr, "\x1b[") {
				t.Errorf("colour in stderr with -no-color")
			}
		})
	}
}

// TestValidateEvaluationLimit: the CLI's local evaluation has the server's
// limits: a template that would make millions of values is refused with the
// limit named at its line.
func TestValidateEvaluationLimit(t *testing.T) {
	src := "locals {\n  a = range(150)\n  p = setproduct(local.a, local.a, local.a)\n}\n"
	dir := writeFiles(t, map[string]string{"tmpl/main.hcl": src})
	r := kiln(t, &Env{Dir: dir}, "validate", "tmpl")
	if r.code != ExitError {
		t.Errorf("exit %d, want 1", r.code)
	}
	for _, want := range []string{"Error: " + spec.LimitSummary, "tmpl/main.hcl line 3", "1,000,000 values", "setproduct"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr does not contain %q:\n%s", want, r.stderr)
		}
	}
}
