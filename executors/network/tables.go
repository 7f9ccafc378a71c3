package network

import (
	"bytes"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
)

// Tables reads all of iptables at once and changes it in one transaction:
// iptables-save and iptables-restore --noflush. SyncRules and the drivers'
// reads go through it, so that a network costs one listing and at most one
// change however many rules it has. An IPTables that also implements Tables
// is used for both; otherwise the iptables-save and iptables-restore in
// PATH are run.
type Tables interface {
	// Save returns the rules of every table, as iptables-save prints them.
	Save() ([]byte, error)
	// Restore applies iptables-restore input without flushing anything
	// it does not name. Each table of the input (a "*table" ... "COMMIT"
	// block) is applied whole or not at all.
	Restore(input []byte) error
}

type execTables struct{}

func (execTables) Save() ([]byte, error) {
	var stderr bytes.Buffer
	cmd := exec.Command("iptables-save")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("iptables-save: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func (execTables) Restore(input []byte) error {
	cmd := exec.Command("iptables-restore", "--noflush", "-w")
	cmd.Stdin = bytes.NewReader(input)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("iptables-restore: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

func tablesOf(ipt IPTables) Tables {
	if t, ok := ipt.(Tables); ok {
		return t
	}
	return execTables{}
}

// snapshot is one iptables-save: per table, its chains and each chain's
// rules ("-A CHAIN ..." lines) in order. A table the save does not show
// has only its built-in chains, empty.
type snapshot map[string]*savedTable

type savedTable struct {
	chains map[string]bool
	rules  map[string][]string
}

func parseSave(out []byte) snapshot {
	s := snapshot{}
	var cur *savedTable
	for _, l := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(l, "*"):
			cur = &savedTable{chains: map[string]bool{}, rules: map[string][]string{}}
			s[strings.TrimSpace(l[1:])] = cur
		case cur == nil:
		case strings.HasPrefix(l, ":"):
			name, _, _ := strings.Cut(l[1:], " ")
			cur.chains[name] = true
		case strings.HasPrefix(l, "-A "):
			f := strings.Fields(l)
			if len(f) > 1 {
				cur.rules[f[1]] = append(cur.rules[f[1]], l)
			}
		}
	}
	return s
}

func save(tb Tables) (snapshot, error) {
	out, err := tb.Save()
	if err != nil {
		return nil, err
	}
	return parseSave(out), nil
}

func (s snapshot) chainExists(table, chain string) bool {
	t := s[table]
	return t != nil && t.chains[chain]
}

// rules are the chain's "-A" lines, in order.
func (s snapshot) rules(table, chain string) []string {
	if t := s[table]; t != nil {
		return t.rules[chain]
	}
	return nil
}

// ownerLines are the chain's rules tagged with owner, in order.
func (s snapshot) ownerLines(table, chain, owner string) []string {
	var out []string
	for _, l := range s.rules(table, chain) {
		if Comment(l) == owner {
			out = append(out, l)
		}
	}
	return out
}

// hasJump reports whether chain from has kiln's jump to chain to.
func (s snapshot) hasJump(table, from, to string) bool {
	for _, l := range s.rules(table, from) {
		f := strings.Fields(l)
		if len(f) >= 2 && f[len(f)-2] == "-j" && f[len(f)-1] == to && Comment(l) == JumpComment {
			return true
		}
	}
	return false
}

// restoreArgs joins args as one iptables-restore line reads them back:
// an argument that is not plain is double-quoted, with '"' and '\'
// escaped. An argument holding a line break cannot be written.
func restoreArgs(args []string) (string, error) {
	var b strings.Builder
	for i, a := range args {
		if strings.ContainsAny(a, "\n\r\x00") {
			return "", fmt.Errorf("iptables argument %q holds a line break", a)
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		if a != "" && strings.Trim(a, plainChars) == "" {
			b.WriteString(a)
			continue
		}
		b.WriteString(saveString(a))
	}
	return b.String(), nil
}

// plainChars never need quoting on an iptables-restore line.
const plainChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+.,:/!=@%"

// saveString is a string argument (a comment) as iptables-save prints it
// (libxtables' xtables_save_string): bare when it has only letters,
// digits, '_' and '-', else in double quotes, with double quotes,
// backslashes and single quotes escaped by a backslash.
func saveString(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == "" {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' || s[i] == '\'' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

// canonical is the line iptables-save prints for the rule that
// `iptables -A chain args...` adds, or "" when args use something this
// does not know how iptables prints. It knows what kiln's rules use: the
// -s/-d/-i/-o/-p header (printed first, in that order), matches in their
// order (the implicit tcp/udp match of --dport/--sport included), the
// comment match, and the target with its options (REJECT's default
// --reject-with). A rule it cannot print is compared with `iptables -C`
// instead, which is slower but never wrong.
func canonical(chain string, args []string) string {
	var head [5]string // -s -d -i -o -p
	var matches, target []string
	proto := ""
	const (
		inHead = iota
		inMatch
		inTarget
	)
	mode, match := inHead, ""
	for i := 0; i < len(args); i++ {
		neg := ""
		if args[i] == "!" {
			neg = "! "
			if i++; i >= len(args) {
				return ""
			}
		}
		a := args[i]
		value := func() (string, bool) {
			if i+1 >= len(args) {
				return "", false
			}
			i++
			return args[i], true
		}
		switch a {
		case "-s", "-d":
			v, ok := value()
			p, err := parseAddr(v)
			if !ok || err != nil {
				return ""
			}
			head[map[string]int{"-s": 0, "-d": 1}[a]] = neg + a + " " + p
		case "-i", "-o":
			v, ok := value()
			if !ok || v == "" || strings.Trim(v, plainChars) != "" {
				return ""
			}
			head[map[string]int{"-i": 2, "-o": 3}[a]] = neg + a + " " + v
		case "-p":
			v, ok := value()
			if !ok || (v != "tcp" && v != "udp") || neg != "" {
				return ""
			}
			head[4], proto = a+" "+v, v
		case "-m":
			v, ok := value()
			if !ok || neg != "" {
				return ""
			}
			matches = append(matches, "-m "+v)
			mode, match = inMatch, v
		case "-j":
			v, ok := value()
			if !ok || neg != "" || target != nil {
				return ""
			}
			target = []string{"-j " + v}
			mode = inTarget
		default:
			if !strings.HasPrefix(a, "--") {
				return ""
			}
			// An option and its values, up to the next option.
			opt := []string{neg + a}
			for i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") && args[i+1] != "!" {
				i++
				v := args[i]
				if match == "comment" && a == "--comment" && mode == inMatch {
					v = saveString(v)
				} else if strings.Trim(v, plainChars) != "" {
					return ""
				}
				opt = append(opt, v)
			}
			switch {
			case mode == inTarget:
				target = append(target, strings.Join(opt, " "))
			case mode == inMatch:
				matches = append(matches, strings.Join(opt, " "))
			case proto != "" && (a == "--dport" || a == "--sport"):
				// iptables loads the protocol's match for its options.
				matches = append(matches, "-m "+proto, strings.Join(opt, " "))
				mode, match = inMatch, proto
			default:
				return ""
			}
		}
	}
	if len(target) == 1 && target[0] == "-j REJECT" {
		target = append(target, "--reject-with icmp-port-unreachable")
	}
	parts := []string{"-A", chain}
	for _, h := range head {
		if h != "" {
			parts = append(parts, h)
		}
	}
	parts = append(parts, matches...)
	parts = append(parts, target...)
	return strings.Join(parts, " ")
}

// parseAddr is an address or prefix as iptables prints it: masked, with
// its length (/32 for a single address).
func parseAddr(s string) (string, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			return "", fmt.Errorf("not an IPv4 address: %q", s)
		}
		return a.String() + "/32", nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() {
		return "", fmt.Errorf("not an IPv4 prefix: %q", s)
	}
	return p.Masked().String(), nil
}
