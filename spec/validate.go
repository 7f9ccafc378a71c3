package spec

import (
	"math/big"
	"net/netip"
	"regexp"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

var (
	forEachKeyRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	sha256Re     = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
)

const minMemory = 64 << 20

func typeDiag(name string, err error, a *hcl.Attribute, ctx *hcl.EvalContext) *hcl.Diagnostic {
	return &hcl.Diagnostic{
		Severity:    hcl.DiagError,
		Summary:     "Incorrect attribute value type",
		Detail:      sprintf("Inappropriate value for attribute %q: %s.", name, err),
		Subject:     rangePtr(a.Expr.Range()),
		Expression:  a.Expr,
		EvalContext: ctx,
	}
}

// convertAttr converts an attribute value to the type of its schema; sizes
// become a number of bytes.
func (l *loader) convertAttr(kind string, as *AttrSchema, a *hcl.Attribute, v cty.Value, ctx *hcl.EvalContext) cty.Value {
	ty := schemaType(as.Type)
	if v.IsNull() {
		return cty.NullVal(ty)
	}
	if as.Type == "size" {
		switch {
		case !v.IsKnown():
			return cty.UnknownVal(cty.Number)
		case v.Type() == cty.String:
			n, err := ParseSize(v.AsString())
			if err != nil {
				l.errorf(rangePtr(a.Expr.Range()), "Invalid size", "%s: %s.", as.Name, err)
				return cty.UnknownVal(cty.Number).Mark(errMark{})
			}
			return cty.NumberIntVal(n)
		case v.Type() == cty.Number:
			f := v.AsBigFloat()
			ff, _ := f.Float64()
			n, err := sizeFromFloat(numText(f), ff)
			if err != nil {
				l.errorf(rangePtr(a.Expr.Range()), "Invalid size", "%s: %s.", as.Name, err)
				return cty.UnknownVal(cty.Number).Mark(errMark{})
			}
			return cty.NumberIntVal(n)
		}
		l.errorf(rangePtr(a.Expr.Range()), "Incorrect attribute value type", "Inappropriate value for attribute %q: a size such as \"512MiB\" is required, not %s.", as.Name, v.Type().FriendlyName())
		return cty.UnknownVal(cty.Number).Mark(errMark{})
	}
	if l.longNumberValue(v, ty, rangePtr(a.Expr.Range())) {
		return cty.UnknownVal(ty).Mark(errMark{})
	}
	cv, err := convert.Convert(v, ty)
	if err != nil {
		l.diags = append(l.diags, typeDiag(as.Name, err, a, ctx))
		return cty.UnknownVal(ty).Mark(errMark{})
	}
	if bad := outOfRange(cv); bad != nil {
		l.errorf(rangePtr(a.Expr.Range()), "Number out of range", "Field %q: %s.", as.Name, rangeError("the number", bad))
		return cty.UnknownVal(ty).Mark(errMark{})
	}
	return cv
}

// checkAttr checks the value of one attribute of one instance; v is known.
func (l *loader) checkAttr(n *node, addr, name string, v cty.Value, a *hcl.Attribute) {
	subj := rangePtr(a.Expr.Range())
	key := n.kind + "." + name
	str := func() string { return v.AsString() }
	whole := func(lo, hi int64, what string) {
		f := v.AsBigFloat()
		i, _ := f.Int64()
		if !f.IsInt() || i < lo || i > hi {
			l.errorf(subj, "Invalid "+what, "%s must be a whole number from %d to %d, not %s.", name, lo, hi, numText(f))
		}
	}
	switch key {
	case "image.source":
		s := str()
		switch {
		case strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://"):
			rest := s[strings.Index(s, "//")+2:]
			if rest == "" || strings.HasPrefix(rest, "/") || strings.ContainsAny(s, " \t\n") {
				l.errorf(subj, "Invalid image source", "%q is not a valid URL.", s)
			}
		case strings.HasPrefix(s, "/"):
		default:
			l.errorf(subj, "Invalid image source", "%q is neither an http(s) URL nor an absolute path.", s)
		}
	case "image.sha256":
		if !sha256Re.MatchString(str()) {
			l.errorf(subj, "Invalid sha256", "sha256 must be 64 hexadecimal digits, not %q.", str())
		}
	case "image.format", "volume.format":
		if s := str(); s != "qcow2" && s != "raw" {
			l.errorf(subj, "Invalid format", "format must be \"qcow2\" or \"raw\", not %q.", s)
		}
	case "network.cidr":
		p, err := parseCIDR(str())
		switch {
		case err != nil:
			l.errorf(subj, "Invalid CIDR", "%s.", err)
		case p.Addr().Is6():
			l.errorf(subj, "IPv6 network not supported", "%s is an IPv6 prefix; kiln's networks (bridges, NAT, DHCP) are IPv4 only for now, so give an IPv4 prefix such as \"10.20.0.0/24\".", p)
		case p != p.Masked():
			l.errorf(subj, "Invalid CIDR", "%s has host bits set; the network address is %s.", p, p.Masked())
		case p.Addr().Is4() && p.Bits() > 29, p.Addr().Is6() && p.Bits() > 125:
			l.errorf(subj, "Invalid CIDR", "%s is too small for a network: it needs room for the network address, a gateway, servers and a broadcast address.", p)
		default:
			l.netInfo[addr] = &netState{prefix: p}
			l.nets = append(l.nets, netCheck{prefix: p, addr: addr, rng: *subj})
		}
	case "network.dns":
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			if _, err := netip.ParseAddr(e.AsString()); err != nil {
				l.errorf(subj, "Invalid DNS server", "%q is not an IP address.", e.AsString())
			}
		}
	case "server.cpus":
		whole(1, 1024, "cpus")
	case "server.cpu_mode":
		switch s := str(); s {
		case "host-passthrough", "host-model", "default":
		default:
			l.errorf(subj, "Invalid cpu_mode", "cpu_mode must be \"host-passthrough\", \"host-model\" or \"default\", not %q.", s)
		}
	case "server.memory":
		if f := v.AsBigFloat(); f.Cmp(bigInt(minMemory)) < 0 {
			i, _ := f.Int64()
			l.errorf(subj, "Invalid memory", "memory must be at least 64MiB, not %s.", FormatSize(i))
		}
	case "port_forward.host_port":
		whole(1, 65535, "port")
	case "port_forward.target_port":
		whole(1, 65535, "port")
	case "port_forward.protocol":
		if s := str(); s != "tcp" && s != "udp" {
			l.errorf(subj, "Invalid protocol", "protocol must be \"tcp\" or \"udp\", not %q.", s)
		}
	case "port_forward.target":
		if _, err := netip.ParseAddr(str()); err != nil {
			l.errorf(subj, "Invalid target", "target must be an IP address, such as server.web[0].address, not %q.", str())
		}
	}
}

// checkPort refuses two port forwards on one host port and protocol.
func (l *loader) checkPort(addr string, r *resDecl, vals map[string]cty.Value) {
	hp, ok1 := vals["host_port"]
	proto, ok2 := vals["protocol"]
	if !ok1 || !ok2 || !hp.IsKnown() || !proto.IsKnown() || !hp.AsBigFloat().IsInt() {
		return
	}
	key := proto.AsString() + "/" + hp.AsBigFloat().Text('f', -1)
	if prev, ok := l.portUsed[key]; ok {
		l.errorf(rangePtr(r.attrs["host_port"].Expr.Range()), "Duplicate host port", "Host port %s is already forwarded by %s at %s.", key, prev.addr, shortRange(prev.rng))
		return
	}
	l.portUsed[key] = portUse{addr: addr, rng: r.attrs["host_port"].Expr.Range()}
}

type portUse struct {
	addr string
	rng  hcl.Range
}

func (l *loader) checkServerAddress(server string, nb *netBlock, s string) {
	subj := rangePtr(nb.address.Expr.Range())
	ip, err := netip.ParseAddr(s)
	if err != nil {
		l.errorf(subj, "Invalid address", "%q is not an IP address.", s)
		return
	}
	netAddr := KindNetwork + "." + nb.name
	st := l.netInfo[netAddr]
	if st == nil {
		return // the network's cidr is unknown or already reported
	}
	p := st.prefix
	switch {
	case !p.Contains(ip):
		l.errorf(subj, "Address outside its network", "%s is not inside %s (%s).", ip, netAddr, p)
		return
	case ip == p.Addr():
		l.errorf(subj, "Reserved address", "%s is the network address of %s (%s); pick a host address.", ip, netAddr, p)
		return
	case ip == firstHost(p):
		l.errorf(subj, "Reserved address", "%s is the gateway of %s (its first host, held by the bridge); pick another address.", ip, netAddr)
		return
	case ip.Is4() && ip == lastAddr(p):
		l.errorf(subj, "Reserved address", "%s is the broadcast address of %s (%s); pick another address.", ip, netAddr, p)
		return
	}
	key := netAddr + "|" + ip.String()
	if prev, ok := l.ipUsed[key]; ok {
		l.errorf(subj, "Duplicate address", "%s on %s is given to both %s and %s.", ip, netAddr, prev, server)
		return
	}
	l.ipUsed[key] = server
}

// crossChecks runs the checks that need every resource: overlapping networks.
func (l *loader) crossChecks() {
	nets := l.nets
	sort.SliceStable(nets, func(i, j int) bool {
		if c := nets[i].prefix.Addr().Compare(nets[j].prefix.Addr()); c != 0 {
			return c < 0
		}
		return nets[i].prefix.Bits() < nets[j].prefix.Bits()
	})
	var widest *netCheck
	for i := range nets {
		c := &nets[i]
		if widest != nil && widest.prefix.Addr().Is4() == c.prefix.Addr().Is4() && lastAddr(widest.prefix).Compare(c.prefix.Addr()) >= 0 {
			l.errorf(&c.rng, "Overlapping networks", "%s (%s) overlaps %s (%s); the networks of a stack must not share addresses.", c.addr, c.prefix, widest.addr, widest.prefix)
		}
		if widest == nil || widest.prefix.Addr().Is4() != c.prefix.Addr().Is4() || lastAddr(c.prefix).Compare(lastAddr(widest.prefix)) > 0 {
			widest = c
		}
	}
}

func (l *loader) stack() *Stack {
	s := &Stack{Name: l.opts.Stack, Params: map[string]Param{}, Outputs: l.outputs}
	if s.Outputs == nil {
		s.Outputs = map[string]Output{}
	}
	for _, p := range l.params {
		s.Params[p.name] = Param{Name: p.name, Value: toGo(p.value), Sensitive: p.sensitive, Description: p.description}
	}
	s.Resources = l.instances
	sort.Slice(s.Resources, func(i, j int) bool { return s.Resources[i].Address < s.Resources[j].Address })
	return s
}

func bigInt(n int64) *big.Float { return new(big.Float).SetInt64(n) }
