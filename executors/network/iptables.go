package network

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/coreos/go-iptables/iptables"
)

// IPTables is the part of github.com/coreos/go-iptables kiln uses. Tests and
// other executors (portforward) go through it too.
type IPTables interface {
	ChainExists(table, chain string) (bool, error)
	NewChain(table, chain string) error
	Exists(table, chain string, rulespec ...string) (bool, error)
	Insert(table, chain string, pos int, rulespec ...string) error
	InsertUnique(table, chain string, pos int, rulespec ...string) error
	Append(table, chain string, rulespec ...string) error
	List(table, chain string) ([]string, error)
	DeleteById(table, chain string, id int) error
}

// NewIPTables returns the IPv4 iptables of the calling process's network
// namespace.
func NewIPTables() (IPTables, error) {
	ipt, err := iptables.NewWithProtocol(iptables.ProtocolIPv4)
	if err != nil {
		return nil, fmt.Errorf("iptables: %w", err)
	}
	return ipt, nil
}

// kiln's own chains. Every rule kiln adds lives in one of them; the only
// rules outside are one jump from each built-in chain, commented "kiln".
const (
	ChainPrerouting  = "KILN-PREROUTING"  // nat: DNAT of port forwards, traffic from outside
	ChainOutput      = "KILN-OUTPUT"      // nat: DNAT of port forwards, traffic from the host
	ChainPostrouting = "KILN-POSTROUTING" // nat: MASQUERADE
	ChainForward     = "KILN-FORWARD"     // filter: what may cross kiln's bridges
	ChainInput       = "KILN-INPUT"       // filter: DHCP and DNS to dnsmasq
)

// JumpComment tags the single jump from a built-in chain to a kiln chain.
const JumpComment = "kiln"

// Chain is one of kiln's chains and the built-in chain that jumps to it.
type Chain struct {
	Table, Name, From string
}

// Chains lists kiln's chains in a fixed order.
var Chains = []Chain{
	{"nat", ChainPrerouting, "PREROUTING"},
	{"nat", ChainOutput, "OUTPUT"},
	{"nat", ChainPostrouting, "POSTROUTING"},
	{"filter", ChainForward, "FORWARD"},
	{"filter", ChainInput, "INPUT"},
}

// Rule is one iptables rule in one of kiln's chains, without its owner
// comment (SyncRules adds it).
type Rule struct {
	Table, Chain string
	Spec         []string
}

func (r Rule) String() string {
	return fmt.Sprintf("-t %s -A %s %s", r.Table, r.Chain, strings.Join(r.Spec, " "))
}

// ipMu serializes kiln's own list-then-change sequences within a process;
// iptables' --wait lock covers single commands across processes.
var ipMu sync.Mutex

// EnsureChains makes kiln's chains and the one jump to each of them from
// its built-in chain, at the top, if they are missing. It never duplicates
// a jump.
func EnsureChains(ipt IPTables) error {
	ipMu.Lock()
	defer ipMu.Unlock()
	return ensureChains(ipt)
}

func ensureChains(ipt IPTables) error {
	for _, c := range Chains {
		ok, err := ipt.ChainExists(c.Table, c.Name)
		if err != nil {
			return fmt.Errorf("iptables chain %s/%s: %w", c.Table, c.Name, err)
		}
		if !ok {
			if err := ipt.NewChain(c.Table, c.Name); err != nil {
				// Another process may have made it meanwhile.
				if ok, err2 := ipt.ChainExists(c.Table, c.Name); err2 != nil || !ok {
					return fmt.Errorf("iptables new chain %s/%s: %w", c.Table, c.Name, err)
				}
			}
		}
		if err := ipt.InsertUnique(c.Table, c.From, 1, jumpSpec(c.Name)...); err != nil {
			return fmt.Errorf("iptables jump %s -> %s: %w", c.From, c.Name, err)
		}
	}
	return nil
}

func jumpSpec(chain string) []string {
	return []string{"-m", "comment", "--comment", JumpComment, "-j", chain}
}

func withOwner(spec []string, owner string) []string {
	out := make([]string, 0, len(spec)+4)
	out = append(out, spec...)
	return append(out, "-m", "comment", "--comment", owner)
}

// SyncRules makes the rules tagged with owner in kiln's chains exactly
// rules, in their order: appended at the end of their chain, or inserted at
// its top when top is set. A chain whose owner rules already match is left
// alone, so a re-run changes nothing; otherwise that owner's rules in the
// chain are removed and written again. An owner with no rules (nil) has all
// its rules removed. Rules of other owners are never touched.
func SyncRules(ipt IPTables, owner string, rules []Rule, top bool) error {
	if owner == "" || !strings.HasPrefix(owner, "kiln:") {
		return fmt.Errorf("iptables owner %q is not a kiln owner tag", owner)
	}
	for _, r := range rules {
		if !isKilnChain(r.Table, r.Chain) {
			return fmt.Errorf("iptables rule %s: not in one of kiln's chains", r)
		}
	}
	ipMu.Lock()
	defer ipMu.Unlock()
	if err := ensureChains(ipt); err != nil {
		return err
	}
	for _, c := range Chains {
		var want []Rule
		for _, r := range rules {
			if r.Table == c.Table && r.Chain == c.Name {
				want = append(want, r)
			}
		}
		if err := syncChain(ipt, c, owner, want, top); err != nil {
			return err
		}
	}
	return nil
}

func isKilnChain(table, chain string) bool {
	for _, c := range Chains {
		if c.Table == table && c.Name == chain {
			return true
		}
	}
	return false
}

func syncChain(ipt IPTables, c Chain, owner string, want []Rule, top bool) error {
	have, err := ownerRuleIDs(ipt, c.Table, c.Name, owner)
	if err != nil {
		return err
	}
	if len(have) == len(want) {
		same := true
		for _, r := range want {
			ok, err := ipt.Exists(c.Table, c.Name, withOwner(r.Spec, owner)...)
			if err != nil {
				return fmt.Errorf("iptables check %s: %w", r, err)
			}
			if !ok {
				same = false
				break
			}
		}
		if same {
			return nil
		}
	}
	// Highest first, so the lower numbers stay valid.
	for i := len(have) - 1; i >= 0; i-- {
		if err := ipt.DeleteById(c.Table, c.Name, have[i]); err != nil {
			return fmt.Errorf("iptables delete %s/%s rule %d of %s: %w", c.Table, c.Name, have[i], owner, err)
		}
	}
	for i, r := range want {
		var err error
		if top {
			err = ipt.Insert(c.Table, c.Name, i+1, withOwner(r.Spec, owner)...)
		} else {
			err = ipt.Append(c.Table, c.Name, withOwner(r.Spec, owner)...)
		}
		if err != nil {
			return fmt.Errorf("iptables add %s: %w", r, err)
		}
	}
	return nil
}

// OwnerRules lists, as `iptables -S` prints them, the rules tagged with
// owner in kiln's chains.
func OwnerRules(ipt IPTables, owner string) ([]string, error) {
	ipMu.Lock()
	defer ipMu.Unlock()
	var out []string
	for _, c := range Chains {
		lines, err := listRules(ipt, c.Table, c.Name)
		if err != nil {
			return nil, err
		}
		for _, l := range lines {
			if Comment(l) == owner {
				out = append(out, "-t "+c.Table+" "+l)
			}
		}
	}
	return out, nil
}

// listRules returns the "-A" lines of a chain, in order; a missing chain
// has none.
func listRules(ipt IPTables, table, chain string) ([]string, error) {
	ok, err := ipt.ChainExists(table, chain)
	if err != nil {
		return nil, fmt.Errorf("iptables chain %s/%s: %w", table, chain, err)
	}
	if !ok {
		return nil, nil
	}
	lines, err := ipt.List(table, chain)
	if err != nil {
		var e *iptables.Error
		if errors.As(err, &e) && e.IsNotExist() {
			return nil, nil
		}
		return nil, fmt.Errorf("iptables list %s/%s: %w", table, chain, err)
	}
	var rules []string
	for _, l := range lines {
		if strings.HasPrefix(l, "-A ") {
			rules = append(rules, l)
		}
	}
	return rules, nil
}

// ownerRuleIDs returns the 1-based positions of owner's rules in a chain.
func ownerRuleIDs(ipt IPTables, table, chain, owner string) ([]int, error) {
	lines, err := listRules(ipt, table, chain)
	if err != nil {
		return nil, err
	}
	var ids []int
	for i, l := range lines {
		if Comment(l) == owner {
			ids = append(ids, i+1)
		}
	}
	return ids, nil
}

// Comment returns the value of the comment match of a rule as `iptables -S`
// prints it (quoted or not), or "".
func Comment(rule string) string {
	_, rest, ok := strings.Cut(rule, " --comment ")
	if !ok {
		return ""
	}
	if !strings.HasPrefix(rest, `"`) {
		v, _, _ := strings.Cut(rest, " ")
		return v
	}
	var b strings.Builder
	for i := 1; i < len(rest); i++ {
		switch rest[i] {
		case '\\':
			if i+1 < len(rest) {
				i++
				b.WriteByte(rest[i])
			}
		case '"':
			return b.String()
		default:
			b.WriteByte(rest[i])
		}
	}
	return b.String()
}
