package spec

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"
)

func limitDiag(t *testing.T, src string, opts Options) string {
	t.Helper()
	opts.Stack = "limits"
	st, diags := Load(Bundle{"main.hcl": []byte(src)}, opts)
	if st != nil || !diags.HasErrors() {
		t.Fatalf("Load accepted the template")
	}
	if diags[0].Summary != LimitSummary {
		t.Fatalf("first diagnostic is %q, want %q: %s", diags[0].Summary, LimitSummary, diags.Error())
	}
	if diags[0].Subject == nil || diags[0].Subject.Filename != "main.hcl" || diags[0].Subject.Start.Line == 0 {
		t.Errorf("the limit diagnostic names no place: %+v", diags[0])
	}
	return diags[0].Subject.Filename + ":" + strconv.Itoa(diags[0].Subject.Start.Line) + ": " + diags[0].Detail
}

// TestEvaluationDeadline: once the context is done evaluation stops with a
// diagnostic that says so, at the expression it was evaluating.
func TestEvaluationDeadline(t *testing.T) {
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	got := limitDiag(t, "locals {\n  a = range(10)\n}\n", Options{Context: ctx})
	if !strings.Contains(got, "main.hcl:2: ") || !strings.Contains(got, "time limit") {
		t.Errorf("got %q, want the time limit at main.hcl:2", got)
	}
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	got = limitDiag(t, "locals {\n  a = [for i in [1, 2] : i]\n}\n", Options{Context: ctx})
	if !strings.Contains(got, "main.hcl:2: ") || !strings.Contains(got, "cancelled") {
		t.Errorf("got %q, want cancelled at main.hcl:2", got)
	}
}

// TestEvaluationLimitsOption: Options.Limits lowers the defaults, and each
// limit is named in the error.
func TestEvaluationLimitsOption(t *testing.T) {
	tests := []struct {
		name, src string
		lim       Limits
		want      string
	}{
		{"range", "locals {\n  a = range(200)\n}\n", Limits{MaxValues: 100}, "main.hcl:2: Evaluation exceeded its limit of 100 values (range would make 200 values), in the call of range."},
		{"instances", "volume \"v\" {\n  count = 150\n  size  = \"1GiB\"\n}\n", Limits{MaxValues: 100}, "main.hcl:1: Evaluation exceeded its limit of 100 values (volume.v has 150 instances)."},
		{"join", "locals {\n  a = join(\"xxxxxxxxxx\", [\"a\", \"b\", \"c\"])\n}\n", Limits{MaxStringBytes: 10}, "main.hcl:2: Evaluation exceeded its limit of 10 bytes of strings (join would make 33 bytes), in the call of join."},
		{"indent", "locals {\n  a = indent(1000, \"a\\nb\")\n}\n", Limits{MaxStringBytes: 1000}, "main.hcl:2: Evaluation exceeded its limit of 1,000 bytes of strings (indent would make 2,003 bytes), in the call of indent."},
		{"replace", "locals {\n  a = replace(\"aaaa\", \"a\", \"bbbbbbbbbb\")\n}\n", Limits{MaxStringBytes: 30}, "main.hcl:2: Evaluation exceeded its limit of 30 bytes of strings (replace would make 44 bytes), in the call of replace."},
		{"for", "locals {\n  a = [for i in [1, 2, 3] : i]\n}\n", Limits{MaxValues: 2}, "main.hcl:2: Evaluation exceeded its limit of 2 values (a for expression over 3 elements)."},
		{"template", "locals {\n  s = \"xxxxxxxxxx\"\n  t = \"${local.s}${local.s}${local.s}\"\n}\n", Limits{MaxStringBytes: 25}, "main.hcl:3: Evaluation exceeded its limit of 25 bytes of strings (a string template part of 10 bytes)."},
		{"template loop", "locals {\n  s = \"xxxxxxxxxx\"\n  t = \"%{ for i in [1, 2, 3] }${local.s}%{ endfor }\"\n}\n", Limits{MaxStringBytes: 25}, "main.hcl:3: Evaluation exceeded its limit of 25 bytes of strings (a string template part of 10 bytes)."},
		{"jsonencode", "locals {\n  s = \"xxxxxxxxxx\"\n  t = jsonencode([local.s, local.s, local.s])\n}\n", Limits{MaxStringBytes: 60}, "main.hcl:3: Evaluation exceeded its limit of 60 bytes of strings (jsonencode would make 72 bytes), in the call of jsonencode."},
	}
	for _, tt := range tests {
		got := limitDiag(t, tt.src, Options{Limits: tt.lim})
		if got != tt.want {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, got, tt.want)
		}
	}
}

// TestTemplatefileLimit: a for directive of a templatefile template is
// charged too, and the limit is reported at the call.
func TestTemplatefileLimit(t *testing.T) {
	b := Bundle{
		"main.hcl": []byte("locals {\n  a = templatefile(\"t.tpl\", { n = 50 })\n}\n"),
		"t.tpl":    []byte("%{ for i in range(n) }%{ for j in range(n) }x%{ endfor }%{ endfor }"),
	}
	_, diags := Load(b, Options{Stack: "limits", Limits: Limits{MaxValues: 1000}})
	if !diags.HasErrors() || diags[0].Summary != LimitSummary || diags[0].Subject == nil || diags[0].Subject.Start.Line != 2 {
		t.Fatalf("want a limit error at main.hcl:2, got %s", diags.Error())
	}
	if _, diags := Load(b, Options{Stack: "limits"}); diags.HasErrors() {
		t.Fatalf("within the default limits: %s", diags.Error())
	}
}

// TestForExpressionsOutsideResources: for-expressions of param defaults, var
// files and -var values are charged too (they are evaluated before any
// resource, some with no function at hand).
func TestForExpressionsOutsideResources(t *testing.T) {
	param := "param \"x\" {\n  type    = list(number)\n  default = [for a in [1, 2, 3] : [for b in [1, 2, 3] : b]][0]\n}\n"
	got := limitDiag(t, param, Options{Limits: Limits{MaxValues: 5}})
	if !strings.HasPrefix(got, "main.hcl:3: ") || !strings.Contains(got, "a for expression over 3 elements") {
		t.Errorf("param default: %q", got)
	}
	decl := "param \"x\" {\n  type = list(number)\n}\n"
	_, diags := Load(Bundle{"main.hcl": []byte(decl)}, Options{Stack: "limits", Limits: Limits{MaxValues: 2},
		VarFiles: []VarFile{{Name: "v.hcl", Bytes: []byte("x = [for a in [1, 2, 3] : a]\n")}}})
	if !diags.HasErrors() || diags[0].Summary != LimitSummary || diags[0].Subject == nil || diags[0].Subject.Filename != "v.hcl" {
		t.Errorf("var file: %s", diags.Error())
	}
	_, diags = Load(Bundle{"main.hcl": []byte(decl)}, Options{Stack: "limits", Limits: Limits{MaxValues: 2},
		Vars: []RawVar{{Name: "x", Value: "[for a in [1, 2, 3] : a]"}}})
	if !diags.HasErrors() || diags[0].Summary != LimitSummary || !strings.Contains(diags[0].Detail, "-var x") {
		t.Errorf("-var: %s", diags.Error())
	}
	// within the limits all three load
	if _, diags := Load(Bundle{"main.hcl": []byte(decl)}, Options{Stack: "limits",
		Vars: []RawVar{{Name: "x", Value: "[for a in [1, 2, 3] : a]"}}}); diags.HasErrors() {
		t.Errorf("-var within the limits: %s", diags.Error())
	}
}
