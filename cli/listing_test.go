package cli

import (
	"regexp"
	"strings"
	"testing"
)

// TestEmbeddedListings: the text the daemon verbs print (tables, one-line
// answers, nothing-to-do lines), run by run on the embedded default, each
// line of want a pattern matched against the whole line in order.
func TestEmbeddedListings(t *testing.T) {
	e, out, errb := embeddedEnv(t)
	steps := []struct {
		args []string
		want []string // patterns for the lines of stdout, in order
	}{
		{[]string{"stacks"}, []string{`No stacks\.`}},
		{[]string{"stacks", "-json"}, []string{`\[\]`}},
		{[]string{"apply", "quickstart", "-auto-approve", "-json"}, nil},
		{[]string{"apply", "quickstart", "-auto-approve"}, []string{
			`No changes\. .*`, ``, `Outputs:`, `  address = "10\.42\.0\.10"`,
			``, `No changes: the stack matches the template\.`, ``, `Outputs:`, `  address = 10\.42\.0\.10`,
		}},
		{[]string{"stacks"}, []string{
			`NAME {8}PROJECT  STATUS    RESOURCES  EXPIRES  UPDATED`,
			`quickstart  default  COMPLETE  3 {10}- {8}\d{4}-\d\d-\d\d \d\d:\d\d:\d\d`,
		}},
		{[]string{"status", "quickstart"}, []string{
			`Stack:     quickstart \(project default\)`, `Status:    COMPLETE`, `Updated:   .*`, ``, `Resources:`,
			`  ADDRESS +STATUS +READY +NODE +PHYSICAL NAME +ERROR`,
			`  image\.guest +ready +- +local +\S+ *`, `  network\.lan +ready +- +local +\S+ *`, `  server\.hello +ready +- +local +\S+ *`,
			``, `Outputs:`, `  .* = .*`,
		}},
		{[]string{"token", "create", "-project", "p1", "-role", "member", "-name", "ci"}, []string{
			`ID:      tok-[0-9a-f]+`, `Project: p1`, `Role:    member`, `Expires: never`, `Secret:  kiln_[0-9a-f]+`, ``,
			`The secret is shown only now: give it to its user as KILN_TOKEN\.`,
		}},
		{[]string{"token", "list"}, []string{`ID +PROJECT +ROLE +NAME +CREATED +EXPIRES`, `.*`, `.*`, `.*`}},
		{[]string{"stack", "renew", "quickstart", "-ttl", "1h"}, []string{`Stack quickstart now expires at \d{4}-\d\d-\d\dT.*\.`}},
		{[]string{"operator", "raft", "list-peers"}, []string{
			`ID {5}RAFT ADDRESS +HTTP ADDRESS +STATE   VOTER`, `local  127\.0\.0\.1:\d+  127\.0\.0\.1:\d+ +leader  true`,
		}},
		{[]string{"image", "list"}, []string{`AGENT  SHA256 +FORMAT  SIZE  STACKS`, `local  \S{1,12} +qcow2 +\S+ +default/quickstart`}},
		{[]string{"destroy", "quickstart", "-auto-approve", "-json"}, nil},
		{[]string{"destroy", "quickstart", "-auto-approve"}, []string{``, `Operation op-[0-9a-f]+:`, ``, `Destroy complete: 0 done, 0 failed, 0 skipped\.`}},
	}
	for _, st := range steps {
		if code := run(t, e, out, errb, st.args...); code != ExitOK {
			t.Fatalf("%v: exit %d\n%s%s", st.args, code, out, errb)
		}
		if st.want == nil {
			continue
		}
		lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
		if len(lines) != len(st.want) {
			t.Errorf("%v: %d lines, want %d:\n%s", st.args, len(lines), len(st.want), out)
			continue
		}
		for i, w := range st.want {
			if !regexp.MustCompile(`^` + w + `$`).MatchString(lines[i]) {
				t.Errorf("%v: line %d %q, want %q", st.args, i+1, lines[i], w)
			}
		}
	}
}
