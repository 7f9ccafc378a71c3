package spec

import (
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// nameRe is what every name must match: resource, param and output names and
// the stack name reach iptables chains, libvirt XML and file names.
var nameRe = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)

// ValidName reports whether s is a valid stack, resource, param or output name.
func ValidName(s string) bool { return nameRe.MatchString(s) }

// Load parses, evaluates and validates the template in the bundle and returns
// the desired stack. All problems are returned at once as diagnostics; the
// stack is nil when there is any error.
func Load(b Bundle, opts Options) (*Stack, hcl.Diagnostics) {
	l := &loader{
		bundle:    b,
		opts:      opts,
		templates: map[string]*parsedTemplate{},
		paramIdx:  map[string]*paramDecl{},
		nodes:     map[string]*node{},
		badExprs:  map[hcl.Expression]bool{},
		netInfo:   map[string]*netState{},
		ipUsed:    map[string]string{},
		portUsed:  map[string]portUse{},
		volUsed:   map[string]volumeUse{},
		budget:    newBudget(opts.Context, opts.Limits),
	}
	l.funcs = l.functions()
	if opts.Stack != "" && !ValidName(opts.Stack) {
		l.errorf(nil, "Invalid stack name", "The stack name %q is not valid: a name starts with a lower-case letter and holds only lower-case letters, digits, '_' and '-'.", opts.Stack)
	}
	l.parse()
	l.resolveParams()
	l.checkRefs()
	order := l.order()
	for _, n := range order {
		l.evalNode(n)
		if l.budget.spent() {
			break
		}
		if err := l.budget.chargeValue(n.value, "the value of "+n.key); err != nil {
			break
		}
	}
	if l.budget.spent() {
		l.diags = l.budget.limitDiags(l.diags, rangePtr(l.budgetAt))
		return nil, finishDiags(l.diags)
	}
	l.crossChecks()
	l.checkForwardTargets()
	diags := finishDiags(l.diags)
	if diags.HasErrors() {
		return nil, diags
	}
	return l.stack(), diags
}

type loader struct {
	bundle    Bundle
	opts      Options
	diags     hcl.Diagnostics
	funcs     map[string]function.Function
	templates map[string]*parsedTemplate

	params   []*paramDecl
	paramIdx map[string]*paramDecl
	paramObj cty.Value

	// nodes are the locals, resources and outputs by key ("local.x",
	// "server.web", "output.o").
	nodes    map[string]*node
	badExprs map[hcl.Expression]bool

	instances []*Resource
	outputs   map[string]Output

	netInfo  map[string]*netState // network name -> evaluated cidr (single-instance networks)
	nets     []netCheck
	ipUsed   map[string]string
	portUsed map[string]portUse
	volUsed  map[string]volumeUse // volume address -> the server it is attached to

	// budget bounds the work of evaluating (limits.go); budgetAt is the
	// node being evaluated, for a spent budget that has no expression to
	// name.
	budget   *budget
	budgetAt hcl.Range
}

func (l *loader) display(name string) string {
	if l.opts.Dir == "" {
		return name
	}
	return path.Join(l.opts.Dir, name)
}

func (l *loader) errorf(subject *hcl.Range, summary, detail string, args ...any) {
	l.diags = append(l.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   sprintf(detail, args...),
		Subject:  subject,
	})
}

func rangePtr(r hcl.Range) *hcl.Range { return &r }

// node kinds besides the resource kinds.
const (
	nodeLocal  = "local"
	nodeOutput = "output"
)

// node is a vertex of the dependency graph: a local, a resource block or an
// output.
type node struct {
	key, kind, name string
	decl            hcl.Range // where it is declared
	// exprs are every expression of the node, evaluated in its scope.
	exprs []hcl.Expression
	// extraRefs are references that are not expressions (depends_on).
	extraRefs []hcl.Traversal
	deps      []*node
	// static instance dependencies and blocks referenced with a dynamic key
	fixedDeps     map[string]bool
	dynamicBlocks map[*node]bool
	allBlocks     map[*node]bool
	// keyRefs are references with a constant instance key, checked once the
	// referenced block has been expanded.
	keyRefs []keyRef

	local *hcl.Attribute
	res   *resDecl
	out   *outputDecl

	value cty.Value
	// instances of a resource block, in order, once evaluated
	instAddrs []string
	instKeys  map[string]bool // for_each keys / count indexes as strings
	count     int
	mode      int
	evaluated bool

	// Tarjan bookkeeping
	index, low int
	onStack    bool
	visited    bool
}

type keyRef struct {
	target *node
	key    cty.Value
	rng    hcl.Range
	expr   hcl.Expression
}

const (
	modeSingle = iota
	modeCount
	modeForEach
)

type resDecl struct {
	block     *hcl.Block
	attrs     map[string]*hcl.Attribute
	count     *hcl.Attribute
	forEach   *hcl.Attribute
	nets      []*netBlock
	ready     *readyBlock
	lifecycle Lifecycle
}

type netBlock struct {
	name    string
	rng     hcl.Range
	address *hcl.Attribute
}

type outputDecl struct {
	value       *hcl.Attribute
	description string
	sensitive   bool
}

type paramDecl struct {
	name        string
	block       *hcl.Block
	typ         cty.Type
	def         *hcl.Attribute
	description string
	sensitive   bool
	validations []validation
	value       cty.Value
	failed      bool
}

type validation struct {
	condition hcl.Expression
	message   hcl.Expression
}

var topSchema = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{
	{Type: "param", LabelNames: []string{"name"}},
	{Type: "locals"},
	{Type: KindImage, LabelNames: []string{"name"}},
	{Type: KindNetwork, LabelNames: []string{"name"}},
	{Type: KindVolume, LabelNames: []string{"name"}},
	{Type: KindServer, LabelNames: []string{"name"}},
	{Type: KindPortForward, LabelNames: []string{"name"}},
	{Type: "output", LabelNames: []string{"name"}},
}}

var paramSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "type"}, {Name: "default"}, {Name: "description"}, {Name: "sensitive"}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "validation"}},
}

var validationSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "condition", Required: true}, {Name: "error_message", Required: true},
}}

var outputSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "value", Required: true}, {Name: "description"}, {Name: "sensitive"}, {Name: "depends_on"},
}}

var lifecycleSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "prevent_destroy"}, {Name: "create_before_destroy"}, {Name: "ignore_changes"},
}}

var serverNetSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "address"}}}

// nestedBlockAttr reports whether an attribute of the schema is written in a
// template as nested blocks (a server's network and ready blocks) rather than
// as an attribute.
func nestedBlockAttr(kind, name string) bool {
	return kind == KindServer && (name == "networks" || name == "ready")
}

var resourceSchemas = func() map[string]*hcl.BodySchema {
	out := map[string]*hcl.BodySchema{}
	for kind, ks := range Schemas {
		s := &hcl.BodySchema{
			Attributes: []hcl.AttributeSchema{{Name: "count"}, {Name: "for_each"}, {Name: "depends_on"}},
			Blocks:     []hcl.BlockHeaderSchema{{Type: "lifecycle"}},
		}
		for _, a := range ks.Attrs {
			if nestedBlockAttr(kind, a.Name) {
				continue
			}
			s.Attributes = append(s.Attributes, hcl.AttributeSchema{Name: a.Name, Required: a.Required && !a.Computed})
		}
		if kind == KindServer {
			s.Blocks = append(s.Blocks,
				hcl.BlockHeaderSchema{Type: "network", LabelNames: []string{"name"}},
				hcl.BlockHeaderSchema{Type: "ready"})
		}
		out[kind] = s
	}
	return out
}()

func (l *loader) templateFiles() []string {
	if len(l.opts.Files) > 0 {
		return l.opts.Files
	}
	var files []string
	for name := range l.bundle {
		if !strings.Contains(name, "/") && strings.HasSuffix(name, ".hcl") {
			files = append(files, name)
		}
	}
	sort.Strings(files)
	return files
}

func (l *loader) checkName(what, name string, rng hcl.Range) {
	if !ValidName(name) {
		l.errorf(&rng, "Invalid "+what+" name", "The name %q is not valid: a name starts with a lower-case letter and holds only lower-case letters, digits, '_' and '-', because it reaches iptables, libvirt and file names.", name)
	}
}

func (l *loader) parse() {
	files := l.templateFiles()
	if len(files) == 0 {
		l.errorf(nil, "No template files", "The template directory holds no *.hcl file.")
	}
	seen := map[string]hcl.Range{}
	dup := func(key, what string, rng hcl.Range) bool {
		if prev, ok := seen[key]; ok {
			l.errorf(&rng, "Duplicate "+what, "%s was already declared at %s; every name must be unique.", key, shortRange(prev))
			return true
		}
		seen[key] = rng
		return false
	}
	for _, name := range files {
		src, ok := l.bundle[name]
		if !ok {
			l.errorf(nil, "Missing template file", "The template file %q is not in the bundle.", l.display(name))
			continue
		}
		f, diags := hclsyntax.ParseConfig(src, l.display(name), hcl.InitialPos)
		l.diags = append(l.diags, diags...)
		if f == nil || f.Body == nil {
			continue
		}
		if b, ok := f.Body.(*hclsyntax.Body); ok {
			l.diags = append(l.diags, l.prepare(b)...)
		}
		content, diags := f.Body.Content(topSchema)
		l.diags = append(l.diags, diags...)
		for _, blk := range content.Blocks {
			switch blk.Type {
			case "param":
				p := l.parseParam(blk)
				if !dup("param."+p.name, "param", blk.DefRange) {
					l.params = append(l.params, p)
					l.paramIdx[p.name] = p
				}
			case "locals":
				attrs, diags := blk.Body.JustAttributes()
				l.diags = append(l.diags, diags...)
				for _, name := range sortedKeys(attrs) {
					a := attrs[name]
					n := &node{key: "local." + name, kind: nodeLocal, name: name, decl: a.Range, local: a, exprs: []hcl.Expression{a.Expr}}
					if !dup(n.key, "local", a.NameRange) {
						l.nodes[n.key] = n
					}
				}
			case "output":
				n := l.parseOutput(blk)
				if !dup(n.key, "output", blk.DefRange) {
					l.nodes[n.key] = n
				}
			default:
				n := l.parseResource(blk)
				if !dup(n.key, blk.Type, blk.DefRange) {
					l.nodes[n.key] = n
				}
			}
		}
	}
}

func shortRange(r hcl.Range) string {
	return sprintf("%s:%d,%d", r.Filename, r.Start.Line, r.Start.Column)
}

func (l *loader) constBool(a *hcl.Attribute) bool {
	if a == nil {
		return false
	}
	v, diags := a.Expr.Value(&hcl.EvalContext{Functions: l.funcs})
	l.diags = append(l.diags, diags...)
	if diags.HasErrors() {
		return false
	}
	if v.IsNull() || !v.Type().Equals(cty.Bool) || !v.IsWhollyKnown() {
		l.errorf(rangePtr(a.Expr.Range()), "Invalid value", "%s must be true or false.", a.Name)
		return false
	}
	return v.True()
}

func (l *loader) constString(a *hcl.Attribute) string {
	if a == nil {
		return ""
	}
	v, diags := a.Expr.Value(&hcl.EvalContext{Functions: l.funcs})
	l.diags = append(l.diags, diags...)
	if diags.HasErrors() {
		return ""
	}
	if v.IsNull() || !v.Type().Equals(cty.String) || !v.IsKnown() {
		l.errorf(rangePtr(a.Expr.Range()), "Invalid value", "%s must be a string.", a.Name)
		return ""
	}
	return v.AsString()
}

func (l *loader) parseParam(blk *hcl.Block) *paramDecl {
	p := &paramDecl{name: blk.Labels[0], block: blk, typ: cty.DynamicPseudoType}
	l.checkName("param", p.name, blk.LabelRanges[0])
	content, diags := blk.Body.Content(paramSchema)
	l.diags = append(l.diags, diags...)
	if a := content.Attributes["type"]; a != nil {
		ty, diags := typeexpr.TypeConstraint(a.Expr)
		l.diags = append(l.diags, diags...)
		if !diags.HasErrors() {
			p.typ = ty
		}
	}
	p.def = content.Attributes["default"]
	p.description = l.constString(content.Attributes["description"])
	p.sensitive = l.constBool(content.Attributes["sensitive"])
	for _, vb := range content.Blocks {
		vc, diags := vb.Body.Content(validationSchema)
		l.diags = append(l.diags, diags...)
		if vc.Attributes["condition"] != nil && vc.Attributes["error_message"] != nil {
			p.validations = append(p.validations, validation{condition: vc.Attributes["condition"].Expr, message: vc.Attributes["error_message"].Expr})
		}
	}
	return p
}

func (l *loader) parseOutput(blk *hcl.Block) *node {
	name := blk.Labels[0]
	l.checkName("output", name, blk.LabelRanges[0])
	n := &node{key: "output." + name, kind: nodeOutput, name: name, decl: blk.DefRange, out: &outputDecl{}}
	content, diags := blk.Body.Content(outputSchema)
	l.diags = append(l.diags, diags...)
	n.out.value = content.Attributes["value"]
	if n.out.value != nil {
		n.exprs = append(n.exprs, n.out.value.Expr)
	}
	n.out.description = l.constString(content.Attributes["description"])
	n.out.sensitive = l.constBool(content.Attributes["sensitive"])
	if a := content.Attributes["depends_on"]; a != nil {
		n.extraRefs = l.parseDependsOn(a)
	}
	return n
}

func (l *loader) parseDependsOn(a *hcl.Attribute) []hcl.Traversal {
	exprs, diags := hcl.ExprList(a.Expr)
	l.diags = append(l.diags, diags...)
	var out []hcl.Traversal
	for _, e := range exprs {
		tr, diags := hcl.AbsTraversalForExpr(e)
		if diags.HasErrors() {
			l.errorf(rangePtr(e.Range()), "Invalid depends_on reference", "depends_on lists resources, such as server.web or volume.data[0], not expressions.")
			continue
		}
		if _, ok := Schemas[tr.RootName()]; !ok || len(tr) < 2 {
			l.errorf(rangePtr(e.Range()), "Invalid depends_on reference", "depends_on lists resources, such as server.web or volume.data[0]; %q is not one.", traversalString(tr))
			continue
		}
		out = append(out, tr)
	}
	return out
}

func (l *loader) parseResource(blk *hcl.Block) *node {
	kind, name := blk.Type, blk.Labels[0]
	l.checkName(kind, name, blk.LabelRanges[0])
	r := &resDecl{block: blk, attrs: map[string]*hcl.Attribute{}}
	n := &node{key: kind + "." + name, kind: kind, name: name, decl: blk.DefRange, res: r}
	content, diags := blk.Body.Content(resourceSchemas[kind])
	l.diags = append(l.diags, diags...)
	ks := Schemas[kind]
	for _, aname := range sortedKeys(content.Attributes) {
		a := content.Attributes[aname]
		switch aname {
		case "count":
			r.count = a
		case "for_each":
			r.forEach = a
		case "depends_on":
			n.extraRefs = l.parseDependsOn(a)
			continue
		default:
			if as := ks.Attr(aname); as != nil && as.Computed {
				l.errorf(&a.NameRange, "Cannot set computed attribute", "%s %q is set by kiln once the %s exists and cannot be written in a template.", kind, aname, kind)
				continue
			}
			r.attrs[aname] = a
		}
		n.exprs = append(n.exprs, a.Expr)
	}
	if r.count != nil && r.forEach != nil {
		l.errorf(&r.forEach.NameRange, "Invalid combination of count and for_each", "A %s may set count or for_each, not both.", kind)
	}
	nlife := 0
	for _, b := range content.Blocks {
		switch b.Type {
		case "lifecycle":
			nlife++
			if nlife > 1 {
				l.errorf(&b.DefRange, "Duplicate lifecycle block", "A resource may have only one lifecycle block.")
				continue
			}
			r.lifecycle = l.parseLifecycle(kind, b)
		case "network":
			nb := &netBlock{name: b.Labels[0], rng: b.LabelRanges[0]}
			for _, prev := range r.nets {
				if prev.name == nb.name {
					l.errorf(&nb.rng, "Duplicate network block", "This server already attaches to network %q at %s.", nb.name, shortRange(prev.rng))
				}
			}
			bc, diags := b.Body.Content(serverNetSchema)
			l.diags = append(l.diags, diags...)
			nb.address = bc.Attributes["address"]
			if nb.address != nil {
				n.exprs = append(n.exprs, nb.address.Expr)
			}
			r.nets = append(r.nets, nb)
		case "ready":
			if r.ready != nil {
				l.errorf(&b.DefRange, "Duplicate ready block", "This server already has a ready block at %s; a server has at most one.", shortRange(r.ready.rng))
				continue
			}
			r.ready = l.parseReady(n, b)
		}
	}
	return n
}

func (l *loader) parseLifecycle(kind string, b *hcl.Block) Lifecycle {
	var lc Lifecycle
	c, diags := b.Body.Content(lifecycleSchema)
	l.diags = append(l.diags, diags...)
	lc.PreventDestroy = l.constBool(c.Attributes["prevent_destroy"])
	lc.CreateBeforeDestroy = l.constBool(c.Attributes["create_before_destroy"])
	a := c.Attributes["ignore_changes"]
	if a == nil {
		return lc
	}
	if tr, diags := hcl.AbsTraversalForExpr(a.Expr); !diags.HasErrors() && len(tr) == 1 && tr.RootName() == "all" {
		lc.IgnoreChanges = []string{"all"}
		return lc
	}
	exprs, diags := hcl.ExprList(a.Expr)
	l.diags = append(l.diags, diags...)
	for _, e := range exprs {
		var name string
		if tr, diags := hcl.AbsTraversalForExpr(e); !diags.HasErrors() && len(tr) == 1 {
			name = tr.RootName()
		} else if v, diags := e.Value(l.countCtx()); !diags.HasErrors() && v.Type() == cty.String && v.IsKnown() && !v.IsNull() {
			name = v.AsString()
		} else {
			l.errorf(rangePtr(e.Range()), "Invalid ignore_changes entry", "ignore_changes lists attribute names, such as [user_data, volumes], or is all.")
			continue
		}
		if name == "network" {
			name = "networks"
		}
		as := Schemas[kind].Attr(name)
		if as == nil || as.Computed {
			l.errorf(rangePtr(e.Range()), "Invalid ignore_changes entry", "%q is not an attribute a %s template sets.", name, kind)
			continue
		}
		lc.IgnoreChanges = append(lc.IgnoreChanges, name)
	}
	sort.Strings(lc.IgnoreChanges)
	return lc
}

func traversalString(tr hcl.Traversal) string {
	var b strings.Builder
	for _, s := range tr {
		switch t := s.(type) {
		case hcl.TraverseRoot:
			b.WriteString(t.Name)
		case hcl.TraverseAttr:
			b.WriteString("." + t.Name)
		case hcl.TraverseIndex:
			b.WriteString("[" + keyString(t.Key) + "]")
		case hcl.TraverseSplat:
			b.WriteString("[*]")
		}
	}
	return b.String()
}

func keyString(k cty.Value) string {
	if !k.IsKnown() || k.IsNull() {
		return "?"
	}
	switch k.Type() {
	case cty.String:
		return quote(k.AsString())
	case cty.Number:
		return numText(k.AsBigFloat())
	}
	return "?"
}
