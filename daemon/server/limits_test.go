package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/daemon/api"
)

// TestTemplateErrorsAnswer400 checks that every kind of template error (syntax,
// unknown variable, bad reference, validation) answers 400 with the
// diagnostics as JSON, each naming file, line and column, on plan and apply.
func TestTemplateErrorsAnswer400(t *testing.T) {
	_, c := single(t, nil)
	tests := []struct {
		name, src string
		line      int
		want      string // in a diagnostic's summary or detail
	}{
		{"syntax error", "network \"lan\" {\n  cidr = \n}\n", 2, "Invalid expression"},
		{"unclosed block", "network \"lan\" {\n  cidr = \"10.0.0.0/24\"\n", 1, "Unclosed"},
		{"unknown variable", "network \"lan\" {\n  cidr = nosuch.x\n}\n", 2, "nosuch"},
		{"unknown param", "network \"lan\" {\n  cidr = param.nope\n}\n", 2, "nope"},
		{"bad reference", "network \"lan\" {\n  cidr = \"10.0.0.0/24\"\n}\nserver \"web\" {\n  image = image.none.id\n  memory = \"64MiB\"\n}\n", 5, `No image named "none"`},
		{"bad function", "network \"lan\" {\n  cidr = nofunc(1)\n}\n", 2, "nofunc"},
	}
	for _, tt := range tests {
		for _, route := range []string{"plan", "apply"} {
			var body any = api.PlanRequest{Template: *bundle(map[string]string{"main.hcl": tt.src})}
			if route == "apply" {
				body = api.ApplyRequest{Template: bundle(map[string]string{"main.hcl": tt.src})}
			}
			code, out := c.do("POST", "/v1/stacks/s1/"+route, body)
			if code != http.StatusBadRequest {
				t.Errorf("%s (%s): status %d, want 400: %s", tt.name, route, code, out)
				continue
			}
			var e api.Error
			if err := json.Unmarshal(out, &e); err != nil {
				t.Fatalf("%s: decode %s: %v", tt.name, out, err)
			}
			if e.Error == "" || len(e.Diagnostics) == 0 {
				t.Errorf("%s (%s): no error text or no diagnostics: %s", tt.name, route, out)
				continue
			}
			found := false
			for _, d := range e.Diagnostics {
				if d.Severity == "error" && d.File == "main.hcl" && d.Line == tt.line && d.Column > 0 &&
					strings.Contains(d.Summary+" "+d.Detail, tt.want) {
					found = true
				}
			}
			if !found {
				t.Errorf("%s (%s): no error diagnostic at main.hcl:%d mentioning %q: %s", tt.name, route, tt.line, tt.want, out)
			}
		}
	}
}
