package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"

	"github.com/kiln-dev/kiln/planner"
	"github.com/kiln-dev/kiln/spec"
)

// renderPlanText and renderPlanJSON are the seam to the planner's renderers.
//
// TODO: call planner.RenderText / planner.RenderJSON once they land; this
// minimal rendering only keeps the CLI usable until then.
func renderPlanText(w io.Writer, r *planner.Result, color bool) error {
	sym := map[planner.Action]string{planner.Create: "+", planner.Update: "~", planner.Replace: "-/+", planner.Delete: "-"}
	col := map[planner.Action]string{planner.Create: "\x1b[32m", planner.Update: "\x1b[33m", planner.Replace: "\x1b[35m", planner.Delete: "\x1b[31m"}
	for _, c := range r.Changes {
		if c.Action == planner.NoOp {
			continue
		}
		line := fmt.Sprintf("  %s %s", sym[c.Action], c.Address)
		if color {
			line = col[c.Action] + line + "\x1b[0m"
		}
		fmt.Fprintln(w, line)
		attrs := c.After
		if c.Action == planner.Delete {
			attrs = c.Before
		}
		for _, k := range sortedKeys(attrs) {
			val := attrs[k]
			if c.Sensitive[k] {
				val = "(sensitive)"
			}
			fmt.Fprintf(w, "      %s = %s\n", k, showValue(val))
		}
	}
	s := r.Summary()
	if !r.HasChanges() {
		_, err := fmt.Fprintf(w, "No changes. Stack %s matches the template.\n", r.Stack)
		return err
	}
	_, err := fmt.Fprintf(w, "\nPlan: %d to create, %d to update, %d to replace, %d to delete.\n", s.Create, s.Update, s.Replace, s.Delete)
	return err
}

func showValue(v any) string {
	switch t := v.(type) {
	case spec.Unknown:
		return t.String()
	case string:
		return fmt.Sprintf("%q", t)
	}
	b, err := json.Marshal(jsonValue(v))
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// jsonValue replaces unknown values with null for JSON output.
func jsonValue(v any) any {
	switch t := v.(type) {
	case spec.Unknown:
		return nil
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = jsonValue(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = jsonValue(e)
		}
		return out
	}
	return v
}

func renderPlanJSON(w io.Writer, r *planner.Result) error {
	type change struct {
		Address   string   `json:"address"`
		Kind      string   `json:"kind"`
		Action    string   `json:"action"`
		DependsOn []string `json:"depends_on"`
	}
	s := r.Summary()
	doc := struct {
		Stack   string         `json:"stack"`
		Changes []change       `json:"changes"`
		Summary map[string]int `json:"summary"`
	}{Stack: r.Stack, Changes: []change{}, Summary: map[string]int{
		"create": s.Create, "update": s.Update, "replace": s.Replace, "delete": s.Delete,
	}}
	for _, c := range r.Changes {
		deps := append([]string{}, c.DependsOn...)
		sort.Strings(deps)
		doc.Changes = append(doc.Changes, change{c.Address, c.Kind, c.Action.String(), deps})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}
