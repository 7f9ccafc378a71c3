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

// answered prints what the daemon answered: the error err under cmd; with
// -json, x as one JSON document; else what text prints.
func answered[T any](v *verb, cmd string, x T, err error, text func(x T) int) int {
	if err != nil {
		return v.e.apiErr(cmd, err)
	}
	if v.asJSON {
		return v.e.printJSON(x)
	}
	return text(x)
}

// printList prints a list the daemon answered, as answered does: the JSON
// array ([] for none), or the table with its header head and a line per
// item; the line empty instead when there are none and empty is not "".
func printList[T any](v *verb, cmd string, list []T, err error, empty, head string, row func(T) string) int {
	return answered(v, cmd, nonNil(list), err, func(list []T) int {
		if len(list) == 0 && empty != "" {
			fmt.Fprintln(v.e.Stdout, empty)
			return ExitOK
		}
		writeTable(v.e.Stdout, head, list, row)
		return ExitOK
	})
}
