package spec

import (
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"
)

// TestNumberRange: a number out of the range of a 64-bit float is an error
// where it is made (writing it in decimal would take minutes: FuzzParse
// found 11E11111000 as a volume size), whichever way it is made.
func TestNumberRange(t *testing.T) {
	tests := []struct {
		name string
		b    Bundle
		opts Options
		want string // the first error
	}{
		{"literal", Bundle{"main.hcl": []byte("volume \"v\" {\n  size = 11E11111000\n}\n")}, Options{},
			"main.hcl:2,10: Number out of range; This number, about 1.1e+11111001, is out of range: " + numberRangeText + "."},
		{"tiny literal", Bundle{"main.hcl": []byte("locals {\n  a = \"x${1e-1000000}\"\n}\n")}, Options{},
			"main.hcl:2,11: Number out of range; This number, about 1.0e-1000000, is out of range: " + numberRangeText + "."},
		{"index key", Bundle{"main.hcl": []byte("locals {\n  m = { a = 1 }\n  b = local.m[1e1000000]\n}\n")}, Options{},
			"main.hcl:3,14: Number out of range; This number, about 1.0e+1000000, is out of range: " + numberRangeText + "."},
		{"operator", Bundle{"main.hcl": []byte("locals {\n  a = 1e300\n  b = \"x${local.a * local.a}\"\n}\n")}, Options{},
			"main.hcl:3,11: Operation failed; Error during operation: the result, about 1.0e+600, is out of range: " + numberRangeText + "."},
		{"negation", Bundle{"main.hcl": []byte("locals {\n  a = \"x${-\"1e1000000\"}\"\n}\n")}, Options{},
			"main.hcl:2,11: Operation failed; Error during operation: the result, about -1.0e+1000000, is out of range: " + numberRangeText + "."},
		{"function result", Bundle{"main.hcl": []byte("locals {\n  a = \"x${tonumber(\"1e-1000000\")}\"\n}\n")}, Options{},
			"main.hcl:2,11: Error in function call; Call to function \"tonumber\" failed: a number of the result, about 1.0e-1000000, is out of range: " + numberRangeText + "."},
		{"function argument", Bundle{"main.hcl": []byte("locals {\n  a = format(\"%d\", \"1e1000000\")\n}\n")}, Options{},
			"main.hcl:2,21: Invalid function argument; Invalid value for \"args\" parameter: a number of this argument, about 1.0e+1000000, is out of range: " + numberRangeText + "."},
		{"count", Bundle{"main.hcl": []byte("volume \"v\" {\n  count = \"1e1000000\"\n  size  = \"1GiB\"\n}\n")}, Options{},
			"main.hcl:2,11: Invalid count argument; count about 1.0e+1000000 is too large; the limit is 10000 instances per resource."},
		{"field", Bundle{"main.hcl": []byte("image \"i\" {\n  source = \"/i.qcow2\"\n}\nserver \"s\" {\n  image = image.i.id\n  cpus  = \"1e1000000\"\n}\n")}, Options{},
			"main.hcl:6,11: Number out of range; Field \"cpus\": the number, about 1.0e+1000000, is out of range: " + numberRangeText + "."},
		{"param default", Bundle{"main.hcl": []byte("param \"x\" {\n  type    = number\n  default = \"1e1000000\"\n}\n")}, Options{},
			"main.hcl:3,13: Number out of range; The value for param \"x\" from the default: a number of it, about 1.0e+1000000, is out of range: " + numberRangeText + "."},
		{"-var", Bundle{"main.hcl": []byte("param \"x\" {\n  type = number\n}\n")}, Options{Vars: []RawVar{{Name: "x", Value: "1e1000000"}}},
			"main.hcl:1,1: Number out of range; The value given by -var x for param \"x\" holds a number out of range: " + numberRangeText + "."},
		{"templatefile", Bundle{"main.hcl": []byte("locals {\n  a = templatefile(\"t.tpl\", {})\n}\n"), "t.tpl": []byte("x ${1e1000000}")}, Options{},
			"main.hcl:2,21: Invalid function argument; Invalid value for \"path\" parameter: template \"t.tpl\": t.tpl:1,5-14: Number out of range; This number, about 1.0e+1000000, is out of range: " + numberRangeText + ".."},
	}
	for _, tt := range tests {
		got := loadErrors(t, tt.b, tt.opts)
		if first, _, _ := strings.Cut(got, "\n"); first != tt.want {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, first, tt.want)
		}
	}
}

// TestNumberRangeEnds: the ends of the range still load, and are written
// out in full.
func TestNumberRangeEnds(t *testing.T) {
	src := "locals {\n  big = 1.7e308\n  small = 5e-324\n}\noutput \"o\" {\n  value = \"${local.big} ${local.small * 1} ${-local.big}\"\n}\n"
	st := mustLoad(t, Bundle{"main.hcl": []byte(src)}, Options{})
	got, _ := st.Outputs["o"].Value.(string)
	if !strings.HasPrefix(got, "17") || !strings.Contains(got, " 0.000") || !strings.Contains(got, " -17") {
		t.Errorf("output o = %q", st.Outputs["o"].Value)
	}
}

// TestVolumesNotAList: a whole resource given as volumes is a type error,
// not a panic (FuzzParse seed a7a053f6e12645a5).
func TestVolumesNotAList(t *testing.T) {
	src := "image \"i\" {\n  source = \"/i.qcow2\"\n}\nvolume \"data\" {\n  size = \"1GiB\"\n}\nserver \"s\" {\n  image   = image.i.id\n  volumes = volume.data\n}\n"
	got := loadErrors(t, Bundle{"main.hcl": []byte(src)}, Options{})
	if !strings.HasPrefix(got, "main.hcl:9,13: Incorrect attribute value type") {
		t.Errorf("got %q", got)
	}
}

// TestLongNumberText: a string read as a number is at most maxNumberText
// bytes, wherever it is read (reading one of 10,000,000 digits, which format
// can make, takes minutes), and the limit is reported where it is read.
func TestLongNumberText(t *testing.T) {
	long := "format(\"1%05000d\", 1)" // 5,001 digits
	want := "Evaluation limit exceeded; Evaluation exceeded its limit of 4,096 bytes for a string read as a number (a string of 5,001 bytes)"
	tests := []struct {
		name, src, at string
	}{
		{"operator", "locals {\n  a = " + long + " + 1\n}\n", "main.hcl:2,7"},
		{"comparison", "locals {\n  a = 1 < " + long + "\n}\n", "main.hcl:2,11"},
		{"index", "locals {\n  l = [1]\n  a = local.l[" + long + "]\n}\n", "main.hcl:3,15"},
		{"tonumber", "locals {\n  a = tonumber(" + long + ")\n}\n", "main.hcl:2,7"},
		{"format %d", "locals {\n  a = format(\"%s %d\", \"x\", " + long + ")\n}\n", "main.hcl:2,7"},
		{"jsondecode", "locals {\n  a = jsondecode(format(\"[1%05000d]\", 1))\n}\n", "main.hcl:2,7"},
		{"count", "volume \"v\" {\n  count = " + long + "\n  size  = \"1GiB\"\n}\n", "main.hcl:2,11"},
		{"field", "image \"i\" {\n  source = \"/i.qcow2\"\n}\nserver \"s\" {\n  image = image.i.id\n  cpus  = " + long + "\n}\n", "main.hcl:6,11"},
		{"param default", "param \"x\" {\n  type    = number\n  default = \"" + strings.Repeat("1", 5001) + "\"\n}\n", "main.hcl:3,13"},
	}
	for _, tt := range tests {
		got := loadErrors(t, Bundle{"main.hcl": []byte(tt.src)}, Options{})
		if first, _, _ := strings.Cut(got, "\n"); !strings.HasPrefix(first, tt.at+": "+want) {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, first, tt.at+": "+want)
		}
	}
	// a long string that is not read as a number is fine
	src := "locals {\n  a = format(\"%d %s\", 1, " + long + ")\n  b = jsondecode(format(\"[\\\"1%05000d\\\"]\", 1))\n}\n"
	mustLoad(t, Bundle{"main.hcl": []byte(src)}, Options{})
}

// TestComparisonCharged: == and != charge the values they compare, so a for
// expression comparing a large value once per element is stopped by the
// budget (it took minutes, past any deadline, before).
func TestComparisonCharged(t *testing.T) {
	src := "locals {\n  a = [1, 2, 3, 4, 5]\n  b = [for x in local.a : local.a == local.a]\n}\n"
	got := limitDiag(t, src, Options{Limits: Limits{MaxValues: 40}})
	want := "main.hcl:3: Evaluation exceeded its limit of 40 values (a value compared with == or !=)."
	if got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	mustLoad(t, Bundle{"main.hcl": []byte(src)}, Options{})
}

// TestSpentBudgetHidesVariables: once the budget is spent the variables of
// the contexts in use read as unknown, so what HCL still evaluates (the rest
// of a for expression) reads no large value.
func TestSpentBudgetHidesVariables(t *testing.T) {
	b := newBudget(nil, Limits{MaxValues: 1})
	vars := b.track(map[string]cty.Value{"local": cty.ObjectVal(map[string]cty.Value{"a": cty.NumberIntVal(1)})})
	if err := b.charge(2, 0, "two values"); err == nil {
		t.Fatal("the budget was not spent")
	}
	if vars["local"].IsKnown() {
		t.Errorf("local is %#v after the budget was spent, want unknown", vars["local"])
	}
	late := b.track(map[string]cty.Value{"param": cty.True})
	if late["param"].IsKnown() {
		t.Errorf("a context made after the budget was spent reads param = %#v", late["param"])
	}
}
