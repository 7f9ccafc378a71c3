package network

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

// countingIPT is the system's iptables, counting what is asked of it: the
// per-rule commands of IPTables (each one iptables run) and Save and
// Restore (one iptables-save or iptables-restore run). restore, when set,
// stands in for Restore.
type countingIPT struct {
	IPTables
	calls   map[string]int
	restore func(in []byte) error
}

func newCountingIPT(t *testing.T) *countingIPT {
	t.Helper()
	ipt, err := NewIPTables()
	if err != nil {
		t.Fatal(err)
	}
	return &countingIPT{IPTables: ipt, calls: map[string]int{}}
}

// reset returns the counts so far and starts again.
func (c *countingIPT) reset() map[string]int {
	m := c.calls
	c.calls = map[string]int{}
	return m
}

func (c *countingIPT) Save() ([]byte, error) { c.calls["save"]++; return execTables{}.Save() }
func (c *countingIPT) Restore(in []byte) error {
	c.calls["restore"]++
	if c.restore != nil {
		return c.restore(in)
	}
	return execTables{}.Restore(in)
}
func (c *countingIPT) ChainExists(table, chain string) (bool, error) {
	c.calls["iptables"]++
	return c.IPTables.ChainExists(table, chain)
}
func (c *countingIPT) NewChain(table, chain string) error {
	c.calls["iptables"]++
	return c.IPTables.NewChain(table, chain)
}
func (c *countingIPT) Exists(table, chain string, spec ...string) (bool, error) {
	c.calls["iptables"]++
	return c.IPTables.Exists(table, chain, spec...)
}
func (c *countingIPT) Insert(table, chain string, pos int, spec ...string) error {
	c.calls["iptables"]++
	return c.IPTables.Insert(table, chain, pos, spec...)
}
func (c *countingIPT) InsertUnique(table, chain string, pos int, spec ...string) error {
	c.calls["iptables"]++
	return c.IPTables.InsertUnique(table, chain, pos, spec...)
}
func (c *countingIPT) Append(table, chain string, spec ...string) error {
	c.calls["iptables"]++
	return c.IPTables.Append(table, chain, spec...)
}
func (c *countingIPT) List(table, chain string) ([]string, error) {
	c.calls["iptables"]++
	return c.IPTables.List(table, chain)
}
func (c *countingIPT) DeleteById(table, chain string, id int) error {
	c.calls["iptables"]++
	return c.IPTables.DeleteById(table, chain, id)
}

func wantCalls(t *testing.T, what string, got, want map[string]int) {
	t.Helper()
	for k, v := range got {
		if v == 0 {
			delete(got, k)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%s: iptables runs %v, want %v", what, got, want)
		return
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: iptables runs %v, want %v", what, got, want)
			return
		}
	}
}

// TestIPTablesRuns pins what a network costs in iptables runs: a create
// reads the tables once and changes them in one transaction, a second
// create only reads them, a read reads them once, a delete reads them and
// removes the rules in one transaction, a second delete only reads.
func TestIPTablesRuns(t *testing.T) {
	requireTools(t, "iptables", "iptables-save", "iptables-restore")
	ipt := newCountingIPT(t)
	d := &Driver{DataDir: t.TempDir(), IPTables: ipt, GuestPorts: []int{18775}}
	ctx := context.Background()
	other := Spec{Stack: "runs", Address: "network.other", CIDR: "10.61.0.0/24", NAT: true}
	spec := Spec{Stack: "runs", Address: "network.lan", CIDR: "10.62.0.0/24", NAT: true}
	create(t, d, other)
	ipt.reset()

	st, err := d.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if drift := st.Drift(spec); len(drift) > 0 {
		t.Errorf("drift after create: %v", drift)
	}
	wantCalls(t, "create", ipt.reset(), map[string]int{"save": 1, "restore": 1})
	rules := ownerLines(t, spec.owner())
	if len(rules) != len(rulesFor(spec, st.Bridge, d.GuestPorts)) {
		t.Fatalf("%d rules after create:\n%s", len(rules), strings.Join(rules, "\n"))
	}

	before := allRules(t)
	st, err = d.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	wantCalls(t, "second create", ipt.reset(), map[string]int{"save": 1})
	if after := allRules(t); !slices.Equal(before, after) {
		t.Errorf("second create changed the rules:\n%s", lineDiff(strings.Join(before, "\n"), strings.Join(after, "\n")))
	}

	if st, err = d.Read(ctx, spec); err != nil || len(st.Drift(spec)) > 0 {
		t.Errorf("Read: %v, drift %v", err, st.Drift(spec))
	}
	wantCalls(t, "read", ipt.reset(), map[string]int{"save": 1})

	// NAT off: one transaction, and Read sees no MASQUERADE.
	spec.NAT = false
	if st, err = d.Update(ctx, spec); err != nil || st.NAT {
		t.Fatalf("Update NAT off: %v, NAT %v", err, st.NAT)
	}
	wantCalls(t, "update", ipt.reset(), map[string]int{"save": 1, "restore": 1})
	if st, err = d.Read(ctx, spec); err != nil || len(st.Drift(spec)) > 0 || st.NAT {
		t.Errorf("Read after NAT off: %+v, %v, drift %v", st, err, st.Drift(spec))
	}
	ipt.reset()

	otherRules := ownerLines(t, other.owner())
	if err := d.Delete(ctx, spec); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, "delete", ipt.reset(), map[string]int{"save": 1, "restore": 1})
	if left := ownerLines(t, spec.owner()); len(left) > 0 {
		t.Errorf("rules left after delete:\n%s", strings.Join(left, "\n"))
	}
	if got := ownerLines(t, other.owner()); !slices.Equal(got, otherRules) {
		t.Errorf("the other network's rules changed:\n%s", lineDiff(strings.Join(otherRules, "\n"), strings.Join(got, "\n")))
	}
	if err := d.Delete(ctx, spec); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, "second delete", ipt.reset(), map[string]int{"save": 1})
}

// TestCanonical: the line canonical predicts for each kind of rule kiln
// makes is the one iptables-save prints (TestIPTablesRuns shows it on the
// real tables: a second create asks no `iptables -C`).
func TestCanonical(t *testing.T) {
	owner := "kiln:s/network.lan"
	tests := []struct {
		chain string
		spec  []string
		want  string
	}{
		{ChainForward, []string{"-i", "kb-x", "-o", "kb-+", "-j", "DROP"},
			`-A KILN-FORWARD -i kb-x -o kb-+ -m comment --comment "kiln:s/network.lan" -j DROP`},
		{ChainForward, []string{"-i", "kb-x", "-s", "10.20.0.0/24", "-j", "ACCEPT"},
			`-A KILN-FORWARD -s 10.20.0.0/24 -i kb-x -m comment --comment "kiln:s/network.lan" -j ACCEPT`},
		{ChainForward, []string{"-o", "kb-x", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"},
			`-A KILN-FORWARD -o kb-x -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "kiln:s/network.lan" -j ACCEPT`},
		{ChainForward, []string{"-i", "kb-x", "-j", "REJECT"},
			`-A KILN-FORWARD -i kb-x -m comment --comment "kiln:s/network.lan" -j REJECT --reject-with icmp-port-unreachable`},
		{ChainInput, []string{"-i", "kb-x", "-p", "udp", "--dport", "67", "-j", "ACCEPT"},
			`-A KILN-INPUT -i kb-x -p udp -m udp --dport 67 -m comment --comment "kiln:s/network.lan" -j ACCEPT`},
		{ChainPostrouting, []string{"-s", "10.20.0.0/24", "!", "-o", "kb-x", "-j", "MASQUERADE"},
			`-A KILN-POSTROUTING -s 10.20.0.0/24 ! -o kb-x -m comment --comment "kiln:s/network.lan" -j MASQUERADE`},
		{ChainPrerouting, []string{"-p", "tcp", "-m", "addrtype", "--dst-type", "LOCAL", "-m", "tcp", "--dport", "8080", "-j", "DNAT", "--to-destination", "10.0.0.5:80"},
			`-A KILN-PREROUTING -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 8080 -m comment --comment "kiln:s/network.lan" -j DNAT --to-destination 10.0.0.5:80`},
		{ChainForward, []string{"-d", "10.0.0.5", "-p", "tcp", "-m", "tcp", "--dport", "80", "-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT"},
			`-A KILN-FORWARD -d 10.0.0.5/32 -p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT -m comment --comment "kiln:s/network.lan" -j ACCEPT`},
		// What it does not know: "" (iptables -C decides).
		{ChainForward, []string{"--in-interface", "kb-x", "-j", "ACCEPT"}, ""},
		{ChainForward, []string{"-p", "icmp", "-j", "ACCEPT"}, ""},
		{ChainForward, []string{"-s", "host.example", "-j", "ACCEPT"}, ""},
	}
	for _, tt := range tests {
		if got := canonical(tt.chain, withOwner(tt.spec, owner)); got != tt.want {
			t.Errorf("canonical(%v)\n got %s\nwant %s", tt.spec, got, tt.want)
		}
	}
	if got := saveString(`kiln:s/n["a b"]\`); got != `"kiln:s/n[\"a b\"]\\"` {
		t.Errorf("saveString = %s", got)
	}
	if got := saveString("kiln"); got != "kiln" {
		t.Errorf("saveString(kiln) = %s", got)
	}
}

// TestSyncRulesOddRules: rules canonical cannot print, and an owner that
// needs quoting, are still made once and left alone by a re-run.
func TestSyncRulesOddRules(t *testing.T) {
	requireTools(t, "iptables", "iptables-save", "iptables-restore")
	ipt := newCountingIPT(t)
	owner := `kiln:q/port_forward.p["a b"]`
	rules := []Rule{
		{"filter", ChainForward, []string{"--in-interface", "kb-odd", "-j", "ACCEPT"}},
		{"filter", ChainForward, []string{"-p", "icmp", "-i", "kb-odd", "-j", "ACCEPT"}},
		{"nat", ChainPostrouting, []string{"-s", "10.70.0.9", "-j", "MASQUERADE"}},
	}
	t.Cleanup(func() {
		if err := SyncRules(ipt, owner, nil, true); err != nil {
			t.Error(err)
		}
	})
	for i := range 3 {
		if err := SyncRules(ipt, owner, rules, true); err != nil {
			t.Fatalf("SyncRules #%d: %v", i+1, err)
		}
		got := ipt.reset()
		if i > 0 && got["restore"] != 0 {
			t.Errorf("SyncRules #%d changed the tables: %v", i+1, got)
		}
	}
	lines, err := OwnerRules(ipt, owner)
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != len(rules) {
		t.Fatalf("owner rules:\n%s", strings.Join(lines, "\n"))
	}
	for _, l := range lines {
		if Comment(l) != owner {
			t.Errorf("comment of %s is %q", l, Comment(l))
		}
	}
	if n, exact, err := CheckRules(ipt, owner, rules); n != 3 || !exact || err != nil {
		t.Errorf("CheckRules = %d, %v, %v", n, exact, err)
	}
	if err := SyncRules(ipt, owner, nil, true); err != nil {
		t.Fatal(err)
	}
	if lines, _ := OwnerRules(ipt, owner); len(lines) != 0 {
		t.Errorf("rules left:\n%s", strings.Join(lines, "\n"))
	}
}

// TestCutShortChangeIsRepaired: a change that stops after its first table
// (iptables-restore applies each table whole, one after the other) leaves
// the filter rules of a new network without its MASQUERADE, never the
// reverse, and the next create completes it; a delete cut short the same
// way has removed the MASQUERADE first, and the next delete finishes.
func TestCutShortChangeIsRepaired(t *testing.T) {
	requireTools(t, "iptables", "iptables-save", "iptables-restore")
	ipt := newCountingIPT(t)
	d := &Driver{DataDir: t.TempDir(), IPTables: ipt}
	ctx := context.Background()
	spec := Spec{Stack: "cut", Address: "network.lan", CIDR: "10.63.0.0/24", NAT: true}
	cut := errors.New("cut short")
	// firstTable makes a restore stop after its first table, as a crash
	// there would; the process is gone, so it changes nothing more.
	var firstTable func(in []byte) error
	firstTable = func(in []byte) error {
		first, _, _ := bytes.Cut(in, []byte("COMMIT\n"))
		if err := (execTables{}).Restore(append(first, "COMMIT\n"...)); err != nil {
			return err
		}
		ipt.restore = func([]byte) error { return cut }
		return cut
	}

	ipt.restore = firstTable
	if _, err := d.Create(ctx, spec); !errors.Is(err, cut) {
		t.Fatalf("cut create: %v", err)
	}
	half := ownerLines(t, spec.owner())
	if len(half) == 0 || count(half, "MASQUERADE") != 0 {
		t.Errorf("after a create cut short:\n%s", strings.Join(half, "\n"))
	}
	if st, err := d.Read(ctx, spec); err != nil || st.Firewall || st.NAT {
		t.Errorf("Read after a cut create: %+v, %v", st, err)
	}
	ipt.restore = nil
	st, err := d.Create(ctx, spec)
	if err != nil || len(st.Drift(spec)) > 0 {
		t.Fatalf("repairing create: %v, drift %v", err, st.Drift(spec))
	}
	if got := ownerLines(t, spec.owner()); len(got) != len(rulesFor(spec, st.Bridge, nil)) || count(got, "MASQUERADE") != 1 {
		t.Errorf("after repair:\n%s", strings.Join(got, "\n"))
	}

	ipt.restore = firstTable
	if err := d.Delete(ctx, spec); !errors.Is(err, cut) {
		t.Fatalf("cut delete: %v", err)
	}
	half = ownerLines(t, spec.owner())
	if len(half) == 0 || count(half, "MASQUERADE") != 0 {
		t.Errorf("after a delete cut short:\n%s", strings.Join(half, "\n"))
	}
	ipt.restore = nil
	if err := d.Delete(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if left := ownerLines(t, spec.owner()); len(left) > 0 {
		t.Errorf("rules left:\n%s", strings.Join(left, "\n"))
	}
}

// TestRestoreArgs: an argument is one token of an iptables-restore line,
// whatever it holds; one that would start a new line is refused, so a name
// can never add a command of its own to the transaction.
func TestRestoreArgs(t *testing.T) {
	requireTools(t, "iptables-save")
	got, err := restoreArgs([]string{"-i", "kb-x", "-m", "comment", "--comment", `kiln:s/a["b c"]\`, "-j", "ACCEPT"})
	if want := `-i kb-x -m comment --comment "kiln:s/a[\"b c\"]\\" -j ACCEPT`; err != nil || got != want {
		t.Errorf("restoreArgs = %s, %v; want %s", got, err, want)
	}
	ipt := newCountingIPT(t)
	for _, bad := range []string{"kiln:s/a\n-A KILN-INPUT -j ACCEPT", "a\rb", "a\x00b"} {
		if _, err := restoreArgs([]string{"--comment", bad}); err == nil {
			t.Errorf("restoreArgs(%q) took it", bad)
		}
		if err := SyncRules(ipt, "kiln:s/x", []Rule{{"filter", ChainInput, []string{"-m", "comment", "--comment", bad, "-j", "ACCEPT"}}}, false); err == nil {
			t.Errorf("SyncRules with %q took it", bad)
		}
	}
	wantCalls(t, "refused SyncRules", ipt.reset(), map[string]int{})
}
