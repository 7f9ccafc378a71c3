package spec

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestSumAndStrcontains pins what docs/templates.md says of sum and
// strcontains.
func TestSumAndStrcontains(t *testing.T) {
	b := Bundle{"main.hcl": []byte(`
output "sum" { value = [sum([1, 2, 3]), sum([0.5, 1.25]), sum([]), sum(toset([2, 2, 3]))] }
output "strcontains" { value = [strcontains("hello", "ell"), strcontains("hello", "Ell"), strcontains("hello", "")] }
`)}
	st := mustLoad(t, b, Options{})
	want := map[string]any{
		"sum":         []any{int64(6), 1.75, int64(0), int64(5)},
		"strcontains": []any{true, false, true},
	}
	for k, w := range want {
		if got := st.Outputs[k].Value; !reflect.DeepEqual(got, w) {
			t.Errorf("%s = %#v, want %#v", k, got, w)
		}
	}
	for _, c := range []struct{ expr, want string }{
		{`sum(["a"])`, "Invalid function argument"},
		{`sum([1, null])`, "sum cannot add null"},
		{`strcontains("a")`, "Not enough function arguments"},
	} {
		errs := loadErrors(t, Bundle{"main.hcl": []byte("output \"x\" { value = " + c.expr + " }\n")}, Options{})
		if !strings.Contains(errs, c.want) {
			t.Errorf("%s: %s", c.expr, errs)
		}
	}
}

// TestFunctionsDocumented checks that docs/templates.md's Functions section
// names every function a template can call.
func TestFunctionsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/templates.md")
	if err != nil {
		t.Fatal(err)
	}
	sec := string(doc)
	start := strings.Index(sec, "\n## Functions\n")
	if start < 0 {
		t.Fatal("docs/templates.md has no Functions section")
	}
	sec = sec[start+1:]
	if end := strings.Index(sec, "\n## "); end >= 0 {
		sec = sec[:end]
	}
	for name := range (&loader{}).functions() {
		if !strings.Contains(sec, "`"+name+"`") && !strings.Contains(sec, "`"+name+"(") {
			t.Errorf("docs/templates.md, Functions: %s is not listed", name)
		}
	}
}
