package portforward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/executors"
	"github.com/kiln-dev/kiln/executors/network"
	"github.com/kiln-dev/kiln/internal/netnstest"
)

func TestMain(m *testing.M) { os.Exit(netnstest.Run(m)) }

func requireTools(t *testing.T) {
	t.Helper()
	netnstest.Guard(t)
	for _, tool := range []string{"iptables", "dnsmasq", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed; these tests need it (Debian: iptables, dnsmasq-base, iproute2)", tool)
		}
	}
}

// makeLAN makes the network lan in the test's namespace, deleted when the
// test ends, and returns its state.
func makeLAN(t *testing.T, lan network.Spec) network.State {
	t.Helper()
	nd := &network.Driver{DataDir: t.TempDir()}
	st, err := nd.Create(context.Background(), lan)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nd.Delete(context.Background(), lan) })
	return st
}

// natHost builds a host as kiln would for the port forwards of stack: the
// NAT network lan, 10.N.0.0/24, with a guest at 10.N.0.10 (a namespace on
// its bridge) serving HTTP on port 80 as name (see serveIn), and an
// "outside" machine, a namespace at 192.0.2.2 on a veth from the host's
// 192.0.2.1, which it returns.
func natHost(t *testing.T, stack string, n int, name string) (outside *netnstest.NS) {
	t.Helper()
	st := makeLAN(t, network.Spec{Stack: stack, Address: "network.lan", CIDR: fmt.Sprintf("10.%d.0.0/24", n), NAT: true})
	guest := netnstest.Guest(t, st.Bridge, fmt.Sprintf("52:54:00:%d:00:10", n), fmt.Sprintf("10.%d.0.10/24", n), fmt.Sprintf("10.%d.0.1", n))
	serveIn(t, guest, fmt.Sprintf("10.%d.0.10:80", n), name)
	outside = netnstest.New(t)
	netnstest.Veth(t, outside, "kt-"+stack, stack+"0", "192.0.2.1/24", "192.0.2.2/24")
	return outside
}

// ownerLines reads back, with iptables -S, the rules carrying owner.
func ownerLines(t *testing.T, owner string) []string {
	t.Helper()
	return netnstest.Rules(t, func(l string) bool { return network.Comment(l) == owner })
}

// httpGet fetches url from ns (nil: the test's namespace, i.e. the host).
func httpGet(ns *netnstest.NS, url string) (string, error) {
	dialer := &net.Dialer{Timeout: 2 * time.Second}
	tr := &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, n, addr string) (c net.Conn, err error) {
		if ns == nil {
			return dialer.DialContext(ctx, n, addr)
		}
		err = ns.Do(func() (err error) { c, err = dialer.DialContext(ctx, n, addr); return err })
		return c, err
	}}
	client := &http.Client{Transport: tr, Timeout: 4 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// TestForwardsTraffic builds a host as kiln would: a NAT network with a
// guest (a namespace on the bridge serving HTTP on port 80), an uplink to
// an "outside" namespace, and a port forward 8080 -> guest:80.
func TestForwardsTraffic(t *testing.T) {
	requireTools(t)
	ctx := context.Background()
	outside := natHost(t, "pf", 51, "guest-0")

	d := &Driver{}
	spec := Spec{Stack: "pf", Address: "port_forward.http", HostPort: 8080, Target: "10.51.0.10", TargetPort: 80}
	pst, err := d.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Delete(context.Background(), spec) })
	if drift := pst.Drift(); len(drift) > 0 || pst.Rules != 4 {
		t.Errorf("state after Create: %+v, drift %v", pst, drift)
	}

	tests := []struct {
		name string
		from *netnstest.NS
		url  string
		want string // prefix of the answer; "" means it must fail
	}{
		{"from outside (PREROUTING)", outside, "http://192.0.2.1:8080/", "guest-0 saw 192.0.2.2:"},
		{"from the host to its own address (OUTPUT)", nil, "http://192.0.2.1:8080/", "guest-0 saw "},
		{"from the host to its gateway address (OUTPUT)", nil, "http://10.51.0.1:8080/", "guest-0 saw "},
		{"from the host to loopback (route_localnet)", nil, "http://127.0.0.1:8080/", "guest-0 saw 10.51.0.1:"},
		{"another port is not forwarded", outside, "http://192.0.2.1:8081/", ""},
		{"no direct way in from outside", outside, "http://10.51.0.10:80/", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := httpGet(tt.from, tt.url)
			switch {
			case tt.want == "" && err == nil:
				t.Errorf("GET %s answered %q, want failure", tt.url, got)
			case tt.want != "" && err != nil:
				t.Errorf("GET %s: %v", tt.url, err)
			case tt.want != "" && !strings.HasPrefix(got, tt.want):
				t.Errorf("GET %s = %q, want prefix %q", tt.url, got, tt.want)
			}
		})
	}

	// Delete: no rule of the owner, and outside no longer gets through.
	if err := d.Delete(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if left := ownerLines(t, spec.owner()); len(left) > 0 {
		t.Errorf("rules left after Delete:\n%s", strings.Join(left, "\n"))
	}
	if got, err := httpGet(outside, "http://192.0.2.1:8080/"); err == nil {
		t.Errorf("forward still works after Delete: %q", got)
	}
	if _, err := d.Read(ctx, spec); !errors.Is(err, executors.ErrNotFound) {
		t.Errorf("Read after Delete: %v, want ErrNotFound", err)
	}
	if err := d.Delete(ctx, spec); err != nil {
		t.Errorf("second Delete: %v", err)
	}
}

func TestRules(t *testing.T) {
	requireTools(t)
	ctx := context.Background()
	tests := []struct {
		name string
		spec Spec
		want []string // substrings, one rule each, in iptables -S form
	}{
		{"tcp", Spec{Stack: "r", Address: "port_forward.web", HostPort: 8080, Target: "10.60.0.10", TargetPort: 80}, []string{
			"nat: -A KILN-PREROUTING -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 8080 -m comment --comment \"kiln:r/port_forward.web\" -j DNAT --to-destination 10.60.0.10:80",
			"nat: -A KILN-OUTPUT -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 8080 -m comment --comment \"kiln:r/port_forward.web\" -j DNAT --to-destination 10.60.0.10:80",
			"nat: -A KILN-POSTROUTING -s 127.0.0.0/8 -d 10.60.0.10/32 -p tcp -m tcp --dport 80 -m comment --comment \"kiln:r/port_forward.web\" -j MASQUERADE",
			"filter: -A KILN-FORWARD -d 10.60.0.10/32 -p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT -m comment --comment \"kiln:r/port_forward.web\" -j ACCEPT",
		}},
		{"udp", Spec{Stack: "r", Address: "port_forward.dns[0]", HostPort: 5353, Protocol: "udp", Target: "10.60.0.11", TargetPort: 53}, []string{
			"nat: -A KILN-PREROUTING -p udp -m addrtype --dst-type LOCAL -m udp --dport 5353 -m comment --comment \"kiln:r/port_forward.dns[0]\" -j DNAT --to-destination 10.60.0.11:53",
			"nat: -A KILN-OUTPUT -p udp -m addrtype --dst-type LOCAL -m udp --dport 5353 -m comment --comment \"kiln:r/port_forward.dns[0]\" -j DNAT --to-destination 10.60.0.11:53",
			"nat: -A KILN-POSTROUTING -s 127.0.0.0/8 -d 10.60.0.11/32 -p udp -m udp --dport 53 -m comment --comment \"kiln:r/port_forward.dns[0]\" -j MASQUERADE",
			"filter: -A KILN-FORWARD -d 10.60.0.11/32 -p udp -m udp --dport 53 -m conntrack --ctstate DNAT -m comment --comment \"kiln:r/port_forward.dns[0]\" -j ACCEPT",
		}},
	}
	makeLAN(t, network.Spec{Stack: "r", Address: "network.lan", CIDR: "10.60.0.0/24", NAT: true})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &Driver{}
			for i := range 2 { // the second Create must change nothing
				if _, err := d.Create(ctx, tt.spec); err != nil {
					t.Fatalf("Create #%d: %v", i+1, err)
				}
				got := ownerLines(t, tt.spec.owner())
				slices.Sort(got)
				want := slices.Sorted(slices.Values(tt.want))
				if !slices.Equal(got, want) {
					t.Fatalf("after Create #%d rules:\n%s\nwant:\n%s", i+1, strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
				}
			}
			// The forward sits above the network's isolation rules.
			b, _ := exec.Command("iptables", "-w", "-S", network.ChainForward).Output()
			first := strings.Split(string(b), "\n")[1]
			if network.Comment(first) != tt.spec.owner() {
				t.Errorf("first KILN-FORWARD rule is %q, want the port forward's", first)
			}
			if err := d.Delete(ctx, tt.spec); err != nil {
				t.Fatal(err)
			}
			if left := ownerLines(t, tt.spec.owner()); len(left) > 0 {
				t.Errorf("left after Delete:\n%s", strings.Join(left, "\n"))
			}
		})
	}
}

func TestUpdateReplacesRules(t *testing.T) {
	requireTools(t)
	ctx := context.Background()
	makeLAN(t, network.Spec{Stack: "u", Address: "network.lan", CIDR: "10.61.0.0/24"})
	d := &Driver{}
	spec := Spec{Stack: "u", Address: "port_forward.ssh", HostPort: 2222, Target: "10.61.0.10", TargetPort: 22}
	if _, err := d.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Delete(context.Background(), spec) })
	spec.HostPort, spec.Target = 2223, "10.61.0.11"
	st, err := d.Update(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(ownerLines(t, spec.owner()), "\n")
	if st.Rules != 4 || !st.Exact || strings.Contains(got, "2222") || strings.Contains(got, "10.61.0.10") || !strings.Contains(got, "--dport 2223") {
		t.Errorf("after Update: %+v\n%s", st, got)
	}
}

func TestValidate(t *testing.T) {
	ok := Spec{Stack: "s", Address: "port_forward.x", HostPort: 80, Target: "10.0.0.2", TargetPort: 80}
	tests := []struct {
		name   string
		mutate func(*Spec)
		err    string
	}{
		{"valid", func(*Spec) {}, ""},
		{"udp", func(s *Spec) { s.Protocol = "udp" }, ""},
		{"sctp", func(s *Spec) { s.Protocol = "sctp" }, "neither tcp nor udp"},
		{"port 0", func(s *Spec) { s.HostPort = 0 }, "host_port 0"},
		{"port too big", func(s *Spec) { s.TargetPort = 70000 }, "target_port 70000"},
		{"loopback target", func(s *Spec) { s.Target = "127.0.0.1" }, "not an IPv4 guest address"},
		{"name target", func(s *Spec) { s.Target = "web" }, "not an IPv4 guest address"},
		{"no stack", func(s *Spec) { s.Stack = "" }, "required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ok
			tt.mutate(&s)
			err := s.Validate()
			if (tt.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.err)) {
				t.Errorf("Validate() = %v, want error containing %q", err, tt.err)
			}
		})
	}
}
