package spec

// Checks that a reference gives the kind of thing its field takes: a server's
// image takes an image id, its volumes take volume ids (each volume attached
// to one server only), and a network block's address takes an address, never
// an id. A wrong kind plans fine as an unknown value and would fail only at
// apply, so it is refused here, naming the field.

import (
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// idFields are the attributes that take the id of a resource of one kind.
var idFields = map[string]string{
	KindServer + ".image":   KindImage,
	KindServer + ".volumes": KindVolume,
}

// volumeUse is where a volume was attached first.
type volumeUse struct {
	server string
	rng    hcl.Range
}

func kindOf(block string) string {
	k, _, _ := strings.Cut(block, ".")
	return k
}

func article(kind string) string {
	if strings.ContainsAny(kind[:1], "aeiou") {
		return "an " + kind
	}
	return "a " + kind
}

// refsByElement returns, per top-level element of v (or for v itself, at
// index -1), the computed attributes it was derived from.
func refsByElement(v cty.Value) map[int][]refMark {
	_, pvms := v.UnmarkDeepWithPaths()
	out := map[int][]refMark{}
	for _, pvm := range pvms {
		idx := -1
		if len(pvm.Path) > 0 {
			if ix, ok := pvm.Path[0].(cty.IndexStep); ok && ix.Key.Type() == cty.Number {
				i, _ := ix.Key.AsBigFloat().Int64()
				idx = int(i)
			}
		}
		for m := range pvm.Marks {
			if r, ok := m.(refMark); ok {
				out[idx] = append(out[idx], r)
			}
		}
	}
	return out
}

// checkRefKinds checks the references in the value of attribute name of
// instance addr (raw: as evaluated, with its marks).
func (l *loader) checkRefKinds(n *node, addr, name string, raw cty.Value, a *hcl.Attribute) {
	want, ok := idFields[n.kind+"."+name]
	if !ok || hasErrMark(raw.Marks()) {
		return
	}
	subj := rangePtr(a.Expr.Range())
	byElem := refsByElement(raw)
	reported := map[string]bool{}
	for _, idx := range slices.Sorted(maps.Keys(byElem)) {
		for _, r := range byElem[idx] {
			k := kindOf(r.block)
			if r.attr != "id" || k == want {
				continue
			}
			ref := r.addr + "." + r.attr
			if reported[ref] {
				continue
			}
			reported[ref] = true
			l.errorf(subj, "Wrong kind of reference", "Field %q of %s takes the ids of %ss, such as %s.NAME.id; %s is the id of %s.", name, addr, want, want, ref, article(k))
		}
	}
	if want == KindVolume {
		l.checkVolumes(addr, raw, byElem, subj)
	}
}

// volumeRefs are the volumes whose ids refs name.
func volumeRefs(refs []refMark) []string {
	var out []string
	for _, r := range refs {
		if r.attr == "id" && kindOf(r.block) == KindVolume {
			out = append(out, r.addr)
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// checkVolumes checks the volumes of server addr: every entry is the id of a
// volume of this stack (a literal id could name any volume on the host,
// another project's included), none is listed twice, and no volume is
// attached to two servers. An entry whose own value carries no reference
// (the list came out of a function such as concat) is taken to be one of
// the volumes the whole list was derived from.
func (l *loader) checkVolumes(addr string, raw cty.Value, byElem map[int][]refMark, subj *hcl.Range) {
	v, _ := raw.UnmarkDeep()
	// a map or an object (a whole resource, say) is no list of ids: the
	// conversion to the field's type refuses it
	ty := v.Type()
	if !v.IsKnown() || v.IsNull() || !(ty.IsListType() || ty.IsTupleType() || ty.IsSetType()) {
		return
	}
	whole := volumeRefs(byElem[-1])
	var uses []string
	i := -1
	for it := v.ElementIterator(); it.Next(); {
		i++
		_, e := it.Element()
		own := volumeRefs(byElem[i])
		switch {
		case len(own) > 0:
			uses = append(uses, own...)
		case len(whole) > 0:
		case e.IsKnown() && !e.IsNull() && e.Type() == cty.String:
			l.errorf(subj, "Invalid volume reference", "Entry %d of the volumes of %s is %q, not a volume of this stack: write volume.NAME.id.", i, addr, e.AsString())
		}
	}
	if len(uses) == 0 {
		uses = whole
	}
	attached := map[string]bool{}
	for _, vol := range uses {
		if attached[vol] {
			l.errorf(subj, "Volume attached twice", "%s lists %s more than once in volumes.", addr, vol)
			continue
		}
		attached[vol] = true
		if prev, ok := l.volUsed[vol]; ok && prev.server != addr {
			l.errorf(subj, "Volume attached to two servers", "%s is attached to both %s (at %s) and %s; a volume attaches to one server only.", vol, prev.server, shortRange(prev.rng), addr)
			continue
		}
		l.volUsed[vol] = volumeUse{server: addr, rng: *subj}
	}
}

// checkAddressRefs refuses an id where a network block's address is expected.
func (l *loader) checkAddressRefs(addr string, nb *netBlock, raw cty.Value) {
	if hasErrMark(raw.Marks()) {
		return
	}
	for _, refs := range refsByElement(raw) {
		for _, r := range refs {
			if r.attr == "id" {
				l.errorf(rangePtr(nb.address.Expr.Range()), "Wrong kind of reference", "The address of %s on network %q takes an IP address, such as cidrhost(network.%s.cidr, 10); %s.%s is the id of %s.", addr, nb.name, nb.name, r.addr, r.attr, article(kindOf(r.block)))
				return
			}
		}
	}
}
