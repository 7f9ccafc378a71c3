package spec

import (
	"net/netip"
	"strings"
)

// checkForwardTargets refuses a port forward whose target is not the
// address of one of the stack's own servers: a template is untrusted, and a
// forward to any other address would expose another tenant's guest, or the
// host itself, on a host port. A known target must equal an address of a
// server of the stack (configured or known from the prior state); a target
// that is still unknown must come from server addresses only. The agent
// checks again, against the addresses it gave the stack's servers, when the
// forward is made.
func (l *loader) checkForwardTargets() {
	addrs := map[netip.Addr]string{} // address -> server
	for _, r := range l.instances {
		if r.Kind != KindServer {
			continue
		}
		add := func(v any) {
			if s, ok := v.(string); ok {
				if a, err := netip.ParseAddr(s); err == nil {
					addrs[a.Unmap()] = r.Address
				}
			}
		}
		if nets, ok := r.Attrs["networks"].([]any); ok {
			for _, n := range nets {
				if m, ok := n.(map[string]any); ok {
					add(m["address"])
				}
			}
		}
		add(r.Computed["address"])
		if m, ok := r.Computed["addresses"].(map[string]any); ok {
			for _, v := range m {
				add(v)
			}
		}
	}
	for _, r := range l.instances {
		if r.Kind != KindPortForward {
			continue
		}
		n := l.nodes[r.Kind+"."+r.Name]
		if n == nil || n.res == nil || n.res.attrs["target"] == nil {
			continue
		}
		subj := rangePtr(n.res.attrs["target"].Expr.Range())
		switch v := r.Attrs["target"].(type) {
		case string:
			a, err := netip.ParseAddr(v)
			if err != nil {
				continue // reported as an invalid target
			}
			if _, ok := addrs[a.Unmap()]; !ok {
				l.errorf(subj, "Target outside the stack", "Target %s is not the address of a server of this stack. A port forward reaches only the stack's own servers: use server.NAME.address.", v)
			}
		default:
			for _, ref := range r.AttrRefs["target"] {
				if !serverAddressRef(ref) {
					l.errorf(subj, "Target outside the stack", "The target comes from %s, which is not a server address. A port forward reaches only the stack's own servers: use server.NAME.address.", ref)
					break
				}
			}
		}
	}
}

// serverAddressRef reports whether a reference ("server.web[0].address")
// is to a server's address or addresses.
func serverAddressRef(ref string) bool {
	return strings.HasPrefix(ref, KindServer+".") && (strings.HasSuffix(ref, ".address") || strings.HasSuffix(ref, ".addresses"))
}
