package cli

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// writeTable prints a table to w: the header line, then one line per item
// as row makes it, the cells (separated by tabs) aligned in columns two
// spaces apart.
func writeTable[T any](w io.Writer, head string, items []T, row func(T) string) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, head)
	for _, it := range items {
		fmt.Fprintln(tw, row(it))
	}
	tw.Flush()
}

// nonNil returns s, or an empty slice for nil: a JSON list prints [] for
// none, never null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// dash is s, or "-" for an empty cell.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
