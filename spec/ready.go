package spec

// A server's ready block says when its guest is ready: the check the agent
// runs before it calls a create or update done, and how long it waits.
//
//	ready {
//	  http_port = 80     # or tcp_port = 22, console = "regexp", signal = true
//	  http_path = "/"    # only with http_port
//	  timeout   = "5m"
//	}
//
// It becomes Attrs["ready"], normalised (see Resource.Attrs).

import (
	"math/big"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// defaultReadyTimeout is the timeout of a ready block that sets none, in seconds.
const defaultReadyTimeout = 300

// readyChecks are the attributes of a ready block of which exactly one is set.
var readyChecks = []string{"tcp_port", "http_port", "console", "signal"}

// readyTypes are the types the attributes of a ready block convert to.
var readyTypes = map[string]cty.Type{
	"tcp_port":  cty.Number,
	"http_port": cty.Number,
	"http_path": cty.String,
	"console":   cty.String,
	"signal":    cty.Bool,
	"timeout":   cty.String,
}

var readySchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "tcp_port"}, {Name: "http_port"}, {Name: "http_path"},
	{Name: "console"}, {Name: "signal"}, {Name: "timeout"},
}}

type readyBlock struct {
	rng   hcl.Range // the block's header
	attrs map[string]*hcl.Attribute
}

func (l *loader) parseReady(n *node, b *hcl.Block) *readyBlock {
	rb := &readyBlock{rng: b.DefRange, attrs: map[string]*hcl.Attribute{}}
	c, diags := b.Body.Content(readySchema)
	l.diags = append(l.diags, diags...)
	for _, name := range sortedKeys(c.Attributes) {
		a := c.Attributes[name]
		rb.attrs[name] = a
		n.exprs = append(n.exprs, a.Expr)
	}
	return rb
}

// evalServerReady evaluates the ready block of one server instance into
// res.Attrs["ready"] and returns its value for references. A server without
// a ready block has no "ready" attribute and a null value.
func (l *loader) evalServerReady(n *node, ctx *hcl.EvalContext, st *instState, res *Resource, dep depMark) cty.Value {
	rb := n.res.ready
	if rb == nil {
		return cty.NullVal(cty.DynamicPseudoType).Mark(dep)
	}
	all := make(cty.ValueMarks)
	vals := map[string]cty.Value{} // set attributes: known, unknown or failed
	failed := false
	for _, name := range sortedKeys(rb.attrs) {
		a := rb.attrs[name]
		uv, marks := unmarkDeep(l.eval(a.Expr, ctx))
		st.collect("ready", marks)
		for m := range marks {
			all[m] = struct{}{}
		}
		if hasErrMark(marks) {
			failed = true
			vals[name] = cty.DynamicVal
			continue
		}
		v, ok := l.readyValue(name, a, uv, ctx)
		switch {
		case !ok:
			failed = true
			vals[name] = cty.DynamicVal
		case !v.IsNull(): // null is not set
			vals[name] = v
		}
	}

	var checks []string
	for _, c := range readyChecks {
		if _, ok := vals[c]; ok {
			checks = append(checks, c)
		}
	}
	sort.Slice(checks, func(i, j int) bool {
		return rb.attrs[checks[i]].Range.Start.Byte < rb.attrs[checks[j]].Range.Start.Byte
	})
	switch {
	case len(checks) == 0:
		failed = true
		l.errorf(&rb.rng, "Missing ready check", "The ready block needs one check: tcp_port, http_port, console or signal.")
	case len(checks) > 1:
		failed = true
		l.errorf(&rb.attrs[checks[1]].NameRange, "Too many ready checks", "The ready block sets %s; it takes exactly one check: tcp_port, http_port, console or signal.", andList(checks))
	}
	if _, ok := vals["http_path"]; ok {
		if _, ok := vals["http_port"]; !ok {
			failed = true
			l.errorf(&rb.attrs["http_path"].NameRange, "Invalid http_path", "http_path is the path of an http_port check, and this ready block sets no http_port.")
		}
	}
	if failed {
		return cty.DynamicVal.WithMarks(cty.NewValueMarks(errMark{}, dep))
	}

	check := checks[0]
	obj := map[string]cty.Value{check: vals[check], "timeout": cty.NumberIntVal(defaultReadyTimeout)}
	if check == "http_port" {
		obj["http_path"] = cty.StringVal("/")
		if p, ok := vals["http_path"]; ok {
			obj["http_path"] = p
		}
	}
	if t, ok := vals["timeout"]; ok {
		obj["timeout"] = t
	}
	v := cty.ObjectVal(obj)
	res.Attrs["ready"] = toGo(v)
	return withMarks(v, all, dep)
}

// readyValue converts and checks one attribute of a ready block; v carries no
// marks. An unknown value is not checked. The timeout becomes a number of
// seconds. ok is false when an error was reported.
func (l *loader) readyValue(name string, a *hcl.Attribute, v cty.Value, ctx *hcl.EvalContext) (cty.Value, bool) {
	if v.IsNull() {
		return v, true
	}
	if l.longNumberValue(v, readyTypes[name], rangePtr(a.Expr.Range())) {
		return cty.NilVal, false
	}
	cv, err := convert.Convert(v, readyTypes[name])
	if err != nil {
		l.diags = append(l.diags, typeDiag(name, err, a, ctx))
		return cty.NilVal, false
	}
	if !cv.IsKnown() {
		if name == "timeout" {
			return cty.UnknownVal(cty.Number), true // seconds, once known
		}
		return cv, true
	}
	subj := rangePtr(a.Expr.Range())
	bad := func(summary, detail string, args ...any) (cty.Value, bool) {
		l.errorf(subj, summary, detail, args...)
		return cty.NilVal, false
	}
	switch name {
	case "tcp_port", "http_port":
		f := cv.AsBigFloat()
		i, acc := f.Int64()
		if !f.IsInt() || acc != big.Exact || i < 1 || i > 65535 {
			return bad("Invalid port", "%s must be a whole number from 1 to 65535, not %s.", name, numText(f))
		}
		return cty.NumberIntVal(i), true
	case "http_path":
		p := cv.AsString()
		if !strings.HasPrefix(p, "/") {
			return bad("Invalid http_path", "http_path must start with \"/\", such as \"/healthz\", not %q.", p)
		}
		if strings.IndexFunc(p, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
			return bad("Invalid http_path", "http_path must not hold spaces or control characters: %q.", p)
		}
	case "console":
		p := cv.AsString()
		if p == "" {
			return bad("Invalid console regexp", "console must be a regular expression that a line of the guest's console matches, not an empty string.")
		}
		if _, err := regexp.Compile(p); err != nil {
			return bad("Invalid console regexp", "console %q is not a valid regular expression (Go RE2 syntax): %s.", p, err)
		}
	case "signal":
		if cv.False() {
			return bad("Invalid signal", "signal = false is not a check; remove it or set signal = true.")
		}
	case "timeout":
		s := cv.AsString()
		d, err := time.ParseDuration(s)
		switch {
		case err != nil:
			return bad("Invalid timeout", "timeout must be a duration such as \"90s\", \"5m\" or \"1h30m\": %s.", err)
		case d < time.Second || d > 24*time.Hour:
			return bad("Invalid timeout", "timeout must be from 1s to 24h, not %q.", s)
		case d%time.Second != 0:
			return bad("Invalid timeout", "timeout must be a whole number of seconds, not %q.", s)
		}
		return cty.NumberIntVal(int64(d / time.Second)), true
	}
	return cv, true
}

// andList joins names as "a and b" or "a, b and c".
func andList(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}
