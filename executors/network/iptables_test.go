package network

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// saveTables is `iptables-save` of the filter and nat tables as a golden
// file holds it: no comments, counters zeroed.
func saveTables(t testing.TB) string {
	t.Helper()
	counters := regexp.MustCompile(`\[\d+:\d+\]`)
	var b strings.Builder
	for _, table := range []string{"filter", "nat"} {
		out, err := exec.Command("iptables-save", "-t", table).CombinedOutput()
		if err != nil {
			t.Fatalf("iptables-save -t %s: %v: %s", table, err, out)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			b.WriteString(counters.ReplaceAllString(l, "[0:0]") + "\n")
		}
	}
	return b.String()
}

// pfRules are port-forward-like rules (SyncRules with top set), as
// executors/portforward makes them.
func pfRules(target string, hostPort, port int) []Rule {
	hp, tp := fmt.Sprint(hostPort), fmt.Sprint(port)
	dnat := []string{"-p", "tcp", "-m", "addrtype", "--dst-type", "LOCAL", "-m", "tcp", "--dport", hp, "-j", "DNAT", "--to-destination", target + ":" + tp}
	return []Rule{
		{"nat", ChainPrerouting, dnat},
		{"nat", ChainOutput, dnat},
		{"nat", ChainPostrouting, []string{"-s", "127.0.0.0/8", "-d", target + "/32", "-p", "tcp", "-m", "tcp", "--dport", tp, "-j", "MASQUERADE"}},
		{"filter", ChainForward, []string{"-d", target + "/32", "-p", "tcp", "-m", "tcp", "--dport", tp, "-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT"}},
	}
}

// TestRulesGolden pins the iptables rules kiln makes, in a sequence of
// creates, updates, port forwards and deletes among rules of the host:
// every rule, its chain and its place relative to the others' rules. The
// golden file was written by the per-rule code that preceded
// iptables-save/-restore, so it shows that the batched code makes the same.
func TestRulesGolden(t *testing.T) {
	d := newDriver(t)
	d.GuestPorts = []int{18775}
	ctx := context.Background()
	// Rules of the host, which kiln's jumps go above and which stay.
	hostRules := [][]string{
		{"-t", "filter", "FORWARD", "-i", "eth9", "-m", "comment", "--comment", "host rule", "-j", "ACCEPT"},
		{"-t", "filter", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"},
		{"-t", "nat", "POSTROUTING", "-o", "eth9", "-j", "MASQUERADE"},
	}
	for _, r := range hostRules {
		run(t, append([]string{"iptables", "-w", r[0], r[1], "-A"}, r[2:]...)...)
	}
	t.Cleanup(func() {
		for _, r := range hostRules {
			exec.Command("iptables", append([]string{"-w", r[0], r[1], "-D"}, r[2:]...)...).Run()
		}
	})
	a := Spec{Stack: "g", Address: "network.a", CIDR: "10.51.0.0/24", NAT: true, DHCP: true, DNS: []string{"192.0.2.53"},
		Hosts: []Host{{MAC: "52:54:00:51:00:10", IP: "10.51.0.10"}}}
	b := Spec{Stack: "g", Address: "network.b", CIDR: "10.52.0.0/24"}
	c := Spec{Stack: "g", Address: "network.c", CIDR: "10.53.0.0/16", NAT: true}
	pf := "kiln:g/port_forward.web"
	steps := []struct {
		name string
		do   func() error
	}{
		{"create a", func() error { _, err := d.Create(ctx, a); return err }},
		{"create b", func() error { _, err := d.Create(ctx, b); return err }},
		{"create c", func() error { _, err := d.Create(ctx, c); return err }},
		{"create a again", func() error { _, err := d.Create(ctx, a); return err }},
		{"port forward", func() error { return SyncRules(d.ipt, pf, pfRules("10.51.0.10", 8080, 80), true) }},
		{"update a: nat off", func() error {
			a.NAT = false
			_, err := d.Update(ctx, a)
			return err
		}},
		{"port forward moved", func() error { return SyncRules(d.ipt, pf, pfRules("10.53.0.5", 8080, 8000), true) }},
		{"delete b", func() error { return d.Delete(ctx, b) }},
		{"delete b again", func() error { return d.Delete(ctx, b) }},
		{"port forward deleted", func() error { return SyncRules(d.ipt, pf, nil, true) }},
		{"update a: nat on", func() error {
			a.NAT = true
			_, err := d.Update(ctx, a)
			return err
		}},
		{"delete a", func() error { return d.Delete(ctx, a) }},
		{"delete c", func() error { return d.Delete(ctx, c) }},
	}
	var got strings.Builder
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		fmt.Fprintf(&got, "## %s\n%s", s.name, saveTables(t))
	}
	golden := filepath.Join("testdata", "rules.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(got.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if got.String() != string(want) {
		t.Errorf("rules differ from %s:\n%s", golden, lineDiff(string(want), got.String()))
	}
}

// lineDiff shows the first lines where want and got differ, with context.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		if i < len(w) && i < len(g) && w[i] == g[i] {
			continue
		}
		from := max(0, i-8)
		return fmt.Sprintf("at line %d:\nwant:\n%s\ngot:\n%s", i+1,
			strings.Join(w[from:min(len(w), i+8)], "\n"), strings.Join(g[from:min(len(g), i+8)], "\n"))
	}
	return ""
}
