package planner

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/kiln-dev/kiln/spec"
)

// TextOptions control RenderText.
type TextOptions struct {
	// Color adds ANSI colours; only for a terminal.
	Color bool
}

const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
)

type textPrinter struct {
	b     bytes.Buffer
	color bool
}

func (p *textPrinter) paint(code, s string) string {
	if !p.color {
		return s
	}
	return code + s + ansiReset
}

// symbol is the three-column marker of an action.
func (p *textPrinter) symbol(a Action, cbd bool) string {
	switch a {
	case Create:
		return "  " + p.paint(ansiGreen, "+")
	case Update:
		return "  " + p.paint(ansiYellow, "~")
	case Delete:
		return "  " + p.paint(ansiRed, "-")
	case Replace:
		if cbd {
			return p.paint(ansiGreen, "+") + "/" + p.paint(ansiRed, "-")
		}
		return p.paint(ansiRed, "-") + "/" + p.paint(ansiGreen, "+")
	}
	return "   "
}

// RenderText writes the plan as people read it, in the manner of Terraform.
// No-op changes are left out. The output depends only on r.
func RenderText(w io.Writer, r *Result, opts TextOptions) error {
	p := &textPrinter{color: opts.Color}
	if !r.HasChanges() {
		fmt.Fprintf(&p.b, "%s The actual state of stack %q matches the template.\n",
			p.paint(ansiBold+ansiGreen, "No changes."), r.Stack)
	} else {
		p.legend(r)
		fmt.Fprintf(&p.b, "kiln will perform the following actions on stack %q:\n", r.Stack)
		for i := range r.Changes {
			if r.Changes[i].Action != NoOp {
				p.b.WriteByte('\n')
				p.change(&r.Changes[i])
			}
		}
		s := r.Summary()
		fmt.Fprintf(&p.b, "\n%s %d to add, %d to change, %d to replace, %d to destroy.\n",
			p.paint(ansiBold, "Plan:"), s.Create, s.Update, s.Replace, s.Delete)
	}
	if len(r.Outputs) > 0 {
		p.outputs(r.Outputs)
	}
	_, err := w.Write(p.b.Bytes())
	return err
}

func (p *textPrinter) legend(r *Result) {
	var has [Delete + 1]bool
	var cbd, dbc bool
	for _, c := range r.Changes {
		has[c.Action] = true
		if c.Action == Replace {
			if c.CreateBeforeDestroy {
				cbd = true
			} else {
				dbc = true
			}
		}
	}
	p.b.WriteString("Resource actions are indicated with the following symbols:\n")
	if has[Create] {
		fmt.Fprintf(&p.b, "%s create\n", p.symbol(Create, false))
	}
	if has[Update] {
		fmt.Fprintf(&p.b, "%s update in place\n", p.symbol(Update, false))
	}
	if dbc {
		fmt.Fprintf(&p.b, "%s destroy and then create replacement\n", p.symbol(Replace, false))
	}
	if cbd {
		fmt.Fprintf(&p.b, "%s create replacement and then destroy\n", p.symbol(Replace, true))
	}
	if has[Delete] {
		fmt.Fprintf(&p.b, "%s destroy\n", p.symbol(Delete, false))
	}
	p.b.WriteByte('\n')
}

func (p *textPrinter) change(c *Change) {
	var verb string
	switch c.Action {
	case Create:
		verb = "will be created"
	case Update:
		verb = "will be updated in place"
	case Replace:
		verb = "must be replaced"
	case Delete:
		verb = "will be destroyed"
	}
	fmt.Fprintf(&p.b, "  %s %s\n", p.paint(ansiBold, "# "+c.Address), p.paint(ansiBold, verb))
	if c.Action == Replace && len(c.ReplaceBecause) > 0 {
		fmt.Fprintf(&p.b, "  # (because of %s)\n", strings.Join(c.ReplaceBecause, ", "))
	}
	if c.Action == Delete && len(c.DependsOn) > 0 {
		fmt.Fprintf(&p.b, "  # (after %s)\n", strings.Join(c.DependsOn, ", "))
	}
	kind, name := c.Kind, c.Address
	if strings.HasPrefix(name, kind+".") {
		name = name[len(kind)+1:]
	}
	if i := strings.IndexByte(name, '['); i >= 0 {
		name = name[:i]
	}
	fmt.Fprintf(&p.b, "%s %s %q {\n", p.symbol(c.Action, c.CreateBeforeDestroy), kind, name)

	type line struct {
		sym, name, val, note string
	}
	var lines []line
	hidden := 0
	forces := make(map[string]bool, len(c.ReplaceAttrs))
	for _, a := range c.ReplaceAttrs {
		forces[a] = true
	}
	keys := unionKeys(c.Before, c.After)
	for _, k := range keys {
		bv, inBefore := c.Before[k]
		av, inAfter := c.After[k]
		l := line{name: k}
		switch {
		case c.Action == Create:
			l.sym, l.val = p.paint(ansiGreen, "+"), p.value(c, k, av)
		case c.Action == Delete:
			l.sym, l.val = p.paint(ansiRed, "-"), p.value(c, k, bv)+" -> null"
		case !inBefore:
			l.sym, l.val = p.paint(ansiGreen, "+"), p.value(c, k, av)
		case !inAfter:
			l.sym, l.val = p.paint(ansiRed, "-"), p.value(c, k, bv)+" -> null"
		case valueEqual(bv, av):
			if k != "id" {
				hidden++
				continue
			}
			l.sym, l.val = " ", p.value(c, k, av)
		default:
			l.sym, l.val = p.paint(ansiYellow, "~"), p.value(c, k, bv)+" -> "+p.value(c, k, av)
		}
		if c.Action == Replace && forces[k] {
			l.note = p.paint(ansiRed, " # forces replacement")
		}
		lines = append(lines, l)
	}
	width := 0
	for _, l := range lines {
		width = max(width, len(l.name))
	}
	for _, l := range lines {
		fmt.Fprintf(&p.b, "      %s %-*s = %s%s\n", l.sym, width, l.name, l.val, l.note)
	}
	if hidden > 0 {
		fmt.Fprintf(&p.b, "        # (%d unchanged %s hidden)\n", hidden, plural(hidden, "attribute", "attributes"))
	}
	p.b.WriteString("    }\n")
}

func (p *textPrinter) outputs(outs map[string]spec.Output) {
	p.b.WriteString("\nOutputs:\n")
	names := make([]string, 0, len(outs))
	width := 0
	for k := range outs {
		names = append(names, k)
		width = max(width, len(k))
	}
	sort.Strings(names)
	for _, k := range names {
		o := outs[k]
		v := "(sensitive)"
		if !o.Sensitive {
			v = formatValue(o.Value, false)
		}
		fmt.Fprintf(&p.b, "  %-*s = %s\n", width, k, v)
	}
}

// value renders attribute k of the change for text.
func (p *textPrinter) value(c *Change, k string, v any) string {
	if c.Sensitive[k] {
		return "(sensitive)"
	}
	if c.Kind == spec.KindServer && k == "ready" {
		return formatReady(v)
	}
	return formatValue(v, isSizeAttr(c.Kind, k))
}

// formatReady renders a server's ready block with its timeout, a number of
// seconds in the plan, spelled as in a template: { tcp_port = 22, timeout = "5m" }.
func formatReady(v any) string {
	m, ok := v.(map[string]any)
	if !ok {
		return formatValue(v, false)
	}
	secs, ok := m["timeout"].(int64)
	if !ok || secs < 0 {
		return formatValue(v, false)
	}
	out := make(map[string]any, len(m))
	for k, e := range m {
		out[k] = e
	}
	out["timeout"] = formatSeconds(secs)
	return formatValue(out, false)
}

// formatSeconds renders a duration as a template spells it: 90 -> "1m30s",
// 5400 -> "1h30m", 0 -> "0s".
func formatSeconds(n int64) string {
	if n == 0 {
		return "0s"
	}
	var b strings.Builder
	for _, u := range []struct {
		secs int64
		unit string
	}{{3600, "h"}, {60, "m"}, {1, "s"}} {
		if n >= u.secs {
			b.WriteString(strconv.FormatInt(n/u.secs, 10) + u.unit)
			n %= u.secs
		}
	}
	return b.String()
}

func isSizeAttr(kind, attr string) bool {
	s := spec.Schemas[kind]
	if s == nil {
		return false
	}
	a := s.Attr(attr)
	return a != nil && a.Type == "size"
}

// formatValue renders a value the way a template would spell it.
func formatValue(v any, size bool) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case spec.Unknown:
		return "(known after apply)"
	case string:
		return strconv.Quote(x)
	case bool:
		return strconv.FormatBool(x)
	case int64:
		if size {
			return strconv.Quote(FormatSize(x))
		}
		return strconv.FormatInt(x, 10)
	case int:
		return formatValue(int64(x), size)
	case float64:
		if size && x == math.Trunc(x) && math.Abs(x) < 1<<62 {
			return formatValue(int64(x), true)
		}
		return strconv.FormatFloat(x, 'g', -1, 64)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = formatValue(e, false)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case map[string]any:
		if len(x) == 0 {
			return "{}"
		}
		keys := sortedKeys(x)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + " = " + formatValue(x[k], false)
		}
		return "{ " + strings.Join(parts, ", ") + " }"
	}
	return fmt.Sprintf("%v", v)
}

// FormatSize renders a byte count with the largest binary unit that keeps it
// exact to two decimals: 536870912 -> "512MiB", 1610612736 -> "1.5GiB".
func FormatSize(n int64) string {
	units := []struct {
		name  string
		shift uint
	}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}}
	neg := ""
	if n < 0 {
		neg, n = "-", -n
	}
	for _, u := range units {
		unit := int64(1) << u.shift
		if n < unit {
			continue
		}
		if n%unit == 0 {
			return neg + strconv.FormatInt(n/unit, 10) + u.name
		}
		if (n*100)%unit == 0 && n < math.MaxInt64/100 {
			return neg + strconv.FormatFloat(float64(n)/float64(unit), 'f', -1, 64) + u.name
		}
	}
	return neg + strconv.FormatInt(n, 10) + "B"
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func unionKeys(a, b map[string]any) []string {
	keys := make([]string, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// The plan JSON contract (docs/plan-json.md).
type planJSON struct {
	Stack   string                    `json:"stack"`
	Changes []changeOut               `json:"changes"`
	Summary summaryOut                `json:"summary"`
	Outputs map[string]outputValueOut `json:"outputs"`
}

type changeOut struct {
	Address             string         `json:"address"`
	Kind                string         `json:"kind"`
	Action              string         `json:"action"`
	DependsOn           []string       `json:"depends_on"`
	Before              map[string]any `json:"before"`
	After               map[string]any `json:"after"`
	AfterUnknown        []string       `json:"after_unknown"`
	Changed             []string       `json:"changed"`
	ReplaceBecause      []string       `json:"replace_because"`
	CreateBeforeDestroy bool           `json:"create_before_destroy,omitempty"`
}

type summaryOut struct {
	Create  int `json:"create"`
	Update  int `json:"update"`
	Replace int `json:"replace"`
	Delete  int `json:"delete"`
}

type outputValueOut struct {
	Value     any  `json:"value"`
	Unknown   bool `json:"unknown"`
	Sensitive bool `json:"sensitive"`
}

// RenderJSON writes the machine-readable plan described in docs/plan-json.md.
// Unknown values are null and listed in after_unknown; sensitive values are
// "(sensitive)". The output depends only on r.
func RenderJSON(w io.Writer, r *Result) error {
	out := planJSON{
		Stack:   r.Stack,
		Changes: make([]changeOut, 0, len(r.Changes)),
		Outputs: make(map[string]outputValueOut, len(r.Outputs)),
	}
	for i := range r.Changes {
		c := &r.Changes[i]
		co := changeOut{
			Address:             c.Address,
			Kind:                c.Kind,
			Action:              c.Action.String(),
			DependsOn:           nonNil(c.DependsOn),
			Before:              jsonAttrs(c.Before, c.Sensitive),
			After:               jsonAttrs(c.After, c.Sensitive),
			AfterUnknown:        []string{},
			Changed:             nonNil(c.Changed),
			ReplaceBecause:      nonNil(c.ReplaceBecause),
			CreateBeforeDestroy: c.CreateBeforeDestroy,
		}
		for _, k := range sortedKeys(c.After) {
			if spec.IsUnknown(c.After[k]) && !c.Sensitive[k] {
				co.AfterUnknown = append(co.AfterUnknown, k)
			}
		}
		out.Changes = append(out.Changes, co)
	}
	s := r.Summary()
	out.Summary = summaryOut{s.Create, s.Update, s.Replace, s.Delete}
	for k, o := range r.Outputs {
		ov := outputValueOut{Unknown: spec.IsUnknown(o.Value), Sensitive: o.Sensitive}
		if o.Sensitive {
			ov.Value = "(sensitive)"
		} else {
			ov.Value = jsonValue(o.Value)
		}
		out.Outputs[k] = ov
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("render plan json: %w", err)
	}
	_, err := w.Write(b.Bytes())
	return err
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func jsonAttrs(m map[string]any, sensitive map[string]bool) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		if sensitive[k] {
			out[k] = "(sensitive)"
		} else {
			out[k] = jsonValue(v)
		}
	}
	return out
}

// jsonValue replaces unknowns (at any depth) with nil.
func jsonValue(v any) any {
	return MapValue(v, func(x any) any {
		if _, ok := x.(spec.Unknown); ok {
			return nil
		}
		return x
	})
}
