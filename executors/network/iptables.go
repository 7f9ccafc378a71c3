package network

import (
	"bytes"
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
	return restoreSynced(ipt, func(snap snapshot) ([]byte, error) {
		var in bytes.Buffer
		for _, table := range []string{"filter", "nat"} {
			writeTable(&in, table, ensureLines(snap, table))
		}
		return in.Bytes(), nil
	})
}

// ensureLines are the iptables-restore lines that make kiln's chains of
// table and their jumps where the snapshot lacks them. A jump is inserted
// at the top of its built-in chain.
func ensureLines(snap snapshot, table string) []string {
	var lines []string
	for _, c := range Chains {
		if c.Table == table && !snap.chainExists(c.Table, c.Name) {
			lines = append(lines, "-N "+c.Name)
		}
	}
	for _, c := range Chains {
		if c.Table == table && !snap.hasJump(c.Table, c.From, c.Name) {
			args, _ := restoreArgs(jumpSpec(c.Name))
			lines = append(lines, "-I "+c.From+" 1 "+args)
		}
	}
	return lines
}

func writeTable(in *bytes.Buffer, table string, lines []string) {
	if len(lines) == 0 {
		return
	}
	in.WriteString("*" + table + "\n")
	for _, l := range lines {
		in.WriteString(l + "\n")
	}
	in.WriteString("COMMIT\n")
}

// restoreSynced reads the tables, asks change for the iptables-restore
// input that brings them where they should be, and applies it (nothing
// when the input is empty). When the restore fails (another process changed
// the tables between the read and the restore) it reads and tries once
// more. The caller holds ipMu.
func restoreSynced(ipt IPTables, change func(snapshot) ([]byte, error)) error {
	tb := tablesOf(ipt)
	var err error
	for range 2 {
		var snap snapshot
		if snap, err = save(tb); err != nil {
			return err
		}
		in, err2 := change(snap)
		if err2 != nil {
			return err2
		}
		if len(in) == 0 {
			return nil
		}
		if err = tb.Restore(in); err == nil {
			return nil
		}
	}
	return err
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
// its rules removed. Rules of other owners are never touched. kiln's chains
// and jumps are made too when they are missing.
//
// It reads the tables once (iptables-save) and makes the whole change in
// one iptables-restore: each table's part of it is applied whole or not at
// all. When rules are written the filter table goes first, so that a
// network's MASQUERADE (nat) never exists without its isolation (filter);
// when they are removed nat goes first, for the same reason. A change cut
// short between the two tables leaves a state the next run repairs, as it
// compares everything again.
func SyncRules(ipt IPTables, owner string, rules []Rule, top bool) error {
	if owner == "" || !strings.HasPrefix(owner, "kiln:") {
		return fmt.Errorf("iptables owner %q is not a kiln owner tag", owner)
	}
	for _, r := range rules {
		if !isKilnChain(r.Table, r.Chain) {
			return fmt.Errorf("iptables rule %s: not in one of kiln's chains", r)
		}
		if _, err := restoreArgs(withOwner(r.Spec, owner)); err != nil {
			return fmt.Errorf("iptables rule %s: %w", r, err)
		}
	}
	tables := []string{"filter", "nat"}
	if len(rules) == 0 {
		tables = []string{"nat", "filter"}
	}
	ipMu.Lock()
	defer ipMu.Unlock()
	return restoreSynced(ipt, func(snap snapshot) ([]byte, error) {
		var in bytes.Buffer
		for _, table := range tables {
			lines := ensureLines(snap, table)
			for _, c := range Chains {
				if c.Table != table {
					continue
				}
				l, err := chainLines(ipt, snap, c, owner, rulesIn(rules, c), top)
				if err != nil {
					return nil, err
				}
				lines = append(lines, l...)
			}
			writeTable(&in, table, lines)
		}
		return in.Bytes(), nil
	})
}

func isKilnChain(table, chain string) bool {
	for _, c := range Chains {
		if c.Table == table && c.Name == chain {
			return true
		}
	}
	return false
}

// rulesIn are the rules of chain c, in order.
func rulesIn(rules []Rule, c Chain) []Rule {
	var out []Rule
	for _, r := range rules {
		if r.Table == c.Table && r.Chain == c.Name {
			out = append(out, r)
		}
	}
	return out
}

// chainLines are the iptables-restore lines that make owner's rules in
// chain c exactly want: none when they already are, else the deletion of
// each of owner's rules there (by its text, so a rule that changed
// meanwhile fails the restore rather than another being deleted) and the
// rules of want appended, or inserted at the top.
func chainLines(ipt IPTables, snap snapshot, c Chain, owner string, want []Rule, top bool) ([]string, error) {
	have := snap.ownerLines(c.Table, c.Name, owner)
	if len(have) == len(want) {
		same, err := allPresent(ipt, c, owner, have, want)
		if err != nil || same {
			return nil, err
		}
	}
	var lines []string
	for _, l := range have {
		lines = append(lines, "-D "+strings.TrimPrefix(l, "-A "))
	}
	for i, r := range want {
		args, err := restoreArgs(withOwner(r.Spec, owner))
		if err != nil {
			return nil, fmt.Errorf("iptables rule %s: %w", r, err)
		}
		if top {
			lines = append(lines, fmt.Sprintf("-I %s %d %s", c.Name, i+1, args))
		} else {
			lines = append(lines, "-A "+c.Name+" "+args)
		}
	}
	return lines, nil
}

// allPresent reports whether every rule of want (tagged with owner) is among
// have, the owner's lines of chain c in a snapshot. A rule is compared by
// the line iptables-save prints for it; when that line is not among have
// (or the rule is one canonical does not know), `iptables -C` decides, so a
// difference in how some iptables version prints a rule costs runs, never
// a wrong answer.
func allPresent(ipt IPTables, c Chain, owner string, have []string, want []Rule) (bool, error) {
	left := map[string]int{}
	for _, l := range have {
		left[l]++
	}
	for _, r := range want {
		spec := withOwner(r.Spec, owner)
		if line := canonical(c.Name, spec); line != "" && left[line] > 0 {
			left[line]--
			continue
		}
		if len(have) == 0 {
			return false, nil
		}
		ok, err := ipt.Exists(c.Table, c.Name, spec...)
		if err != nil {
			return false, fmt.Errorf("iptables check %s: %w", r, err)
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

// CheckRules reads the tables once and reports how many rules owner has in
// kiln's chains and whether they are exactly rules: in each chain, the
// same number, each of them there.
func CheckRules(ipt IPTables, owner string, rules []Rule) (n int, exact bool, err error) {
	ipMu.Lock()
	defer ipMu.Unlock()
	snap, err := save(tablesOf(ipt))
	if err != nil {
		return 0, false, err
	}
	return checkOwner(ipt, snap, owner, rules)
}

func checkOwner(ipt IPTables, snap snapshot, owner string, rules []Rule) (n int, exact bool, err error) {
	exact = true
	for _, c := range Chains {
		have := snap.ownerLines(c.Table, c.Name, owner)
		want := rulesIn(rules, c)
		n += len(have)
		switch {
		case len(have) != len(want):
			exact = false
		case exact:
			if exact, err = allPresent(ipt, c, owner, have, want); err != nil {
				return n, false, err
			}
		}
	}
	return n, exact, nil
}

// OwnerRules lists, as `iptables -S` prints them, the rules tagged with
// owner in kiln's chains.
func OwnerRules(ipt IPTables, owner string) ([]string, error) {
	ipMu.Lock()
	defer ipMu.Unlock()
	snap, err := save(tablesOf(ipt))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, c := range Chains {
		for _, l := range snap.ownerLines(c.Table, c.Name, owner) {
			out = append(out, "-t "+c.Table+" "+l)
		}
	}
	return out, nil
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
