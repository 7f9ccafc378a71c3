package network

import (
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

// checkRules reads the tables once and reports whether the MASQUERADE
// rule for the network is there (with NAT off: whether a MASQUERADE of
// owner is left), and whether owner's rules are exactly want.
func checkRules(ipt IPTables, owner string, want []Rule, nat bool) (natOK, exact bool, err error) {
	ipMu.Lock()
	defer ipMu.Unlock()
	snap, err := save(tablesOf(ipt))
	if err != nil {
		return false, false, err
	}
	if _, exact, err = checkOwner(ipt, snap, owner, want); err != nil {
		return false, false, err
	}
	post := Chain{"nat", ChainPostrouting, "POSTROUTING"}
	have := snap.ownerLines(post.Table, post.Name, owner)
	if !nat {
		for _, l := range have {
			if containsWord(l, "MASQUERADE") {
				natOK = true
			}
		}
		return natOK, exact, nil
	}
	if masq := rulesIn(want, post); len(masq) > 0 {
		if natOK, err = allPresent(ipt, post, owner, have, masq); err != nil {
			return false, false, err
		}
	}
	return natOK, exact, nil
}

func containsWord(line, word string) bool {
	return slices.Contains(strings.Fields(line), word)
}
