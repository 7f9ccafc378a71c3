package spec

import (
	"fmt"
	"sort"
	"strconv"

	"github.com/hashicorp/hcl/v2"
)

func sprintf(format string, args ...any) string {
	if len(args) == 0 {
		return format
	}
	return fmt.Sprintf(format, args...)
}

func quote(s string) string { return strconv.Quote(s) }

// finishDiags drops repeated diagnostics (the same problem found in every
// instance of a counted resource) and sorts them by file and position.
func finishDiags(in hcl.Diagnostics) hcl.Diagnostics {
	type key struct {
		summary, detail string
		rng             hcl.Range
	}
	seen := map[key]bool{}
	var out hcl.Diagnostics
	for _, d := range in {
		k := key{summary: d.Summary, detail: d.Detail}
		if d.Subject != nil {
			k.rng = *d.Subject
		}
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, d)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].Subject, out[j].Subject
		switch {
		case a == nil || b == nil:
			return a == nil && b != nil
		case a.Filename != b.Filename:
			return a.Filename < b.Filename
		case a.Start.Byte != b.Start.Byte:
			return a.Start.Byte < b.Start.Byte
		}
		return false
	})
	return out
}
