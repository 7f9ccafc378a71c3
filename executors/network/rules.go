package network

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// rulesFor is the network's iptables rules, in order. They isolate kiln's
// networks from each other and, like libvirt's "nat" mode, let guests out
// (when NAT is on) but nothing new in except through port forwards (whose
// rules sit above these in KILN-FORWARD). Of the host itself guests reach
// only DHCP, DNS and guestPorts on TCP (and answers to what the host opened).
func rulesFor(spec Spec, bridge string, guestPorts []int) []Rule {
	p, _ := spec.prefix()
	cidr := p.String()
	fwd := func(spec ...string) Rule { return Rule{"filter", ChainForward, spec} }
	in := func(spec ...string) Rule { return Rule{"filter", ChainInput, spec} }
	rules := []Rule{
		fwd("-i", bridge, "-o", bridge, "-j", "ACCEPT"),
		fwd("-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"),
		fwd("-i", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"),
		// Isolation: nothing new from this bridge to any other kiln bridge.
		fwd("-i", bridge, "-o", BridgePrefix+"+", "-j", "DROP"),
	}
	if spec.NAT {
		rules = append(rules, fwd("-i", bridge, "-s", cidr, "-j", "ACCEPT"))
	}
	rules = append(rules,
		fwd("-i", bridge, "-j", "REJECT"),
		fwd("-o", bridge, "-j", "REJECT"),
	)
	if spec.DHCP {
		rules = append(rules, in("-i", bridge, "-p", "udp", "--dport", "67", "-j", "ACCEPT"))
		if len(spec.DNS) > 0 {
			rules = append(rules,
				in("-i", bridge, "-p", "udp", "--dport", "53", "-j", "ACCEPT"),
				in("-i", bridge, "-p", "tcp", "--dport", "53", "-j", "ACCEPT"),
			)
		}
	}
	rules = append(rules, in("-i", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"))
	for _, p := range guestPorts {
		rules = append(rules, in("-i", bridge, "-p", "tcp", "--dport", strconv.Itoa(p), "-j", "ACCEPT"))
	}
	rules = append(rules, in("-i", bridge, "-j", "REJECT"))
	if spec.NAT {
		rules = append(rules, masquerade(cidr, bridge))
	}
	return rules
}

func masquerade(cidr, bridge string) Rule {
	return Rule{"nat", ChainPostrouting, []string{"-s", cidr, "!", "-o", bridge, "-j", "MASQUERADE"}}
}

// checkRules reports whether the MASQUERADE rule for the network is there,
// and whether owner's rules are exactly want.
func checkRules(ipt IPTables, owner string, want []Rule, nat bool) (natOK, exact bool, err error) {
	exact = true
	total := 0
	ipMu.Lock()
	defer ipMu.Unlock()
	for _, c := range Chains {
		ids, err := ownerRuleIDs(ipt, c.Table, c.Name, owner)
		if err != nil {
			return false, false, err
		}
		total += len(ids)
	}
	if total != len(want) {
		exact = false
	}
	for _, r := range want {
		ok, err := ruleExists(ipt, r, owner)
		if err != nil {
			return false, false, err
		}
		if !ok {
			exact = false
		}
		if r.Chain == ChainPostrouting && ok {
			natOK = true
		}
	}
	if !nat && total > 0 {
		// NAT off: look for a leftover MASQUERADE of this owner.
		lines, err := listRules(ipt, "nat", ChainPostrouting)
		if err != nil {
			return false, false, err
		}
		for _, l := range lines {
			if Comment(l) == owner && containsWord(l, "MASQUERADE") {
				natOK = true
			}
		}
	}
	return natOK, exact, nil
}

func ruleExists(ipt IPTables, r Rule, owner string) (bool, error) {
	ok, err := ipt.ChainExists(r.Table, r.Chain)
	if err != nil || !ok {
		return false, err
	}
	ok, err = ipt.Exists(r.Table, r.Chain, withOwner(r.Spec, owner)...)
	if err != nil {
		return false, fmt.Errorf("iptables check %s: %w", r, err)
	}
	return ok, nil
}

func containsWord(line, word string) bool {
	return slices.Contains(strings.Fields(line), word)
}
