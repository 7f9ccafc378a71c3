package cli

import (
	"strings"
	"testing"
)

// TestPolicyFlagsChecked: bad host policy flags stop `kiln agent` and
// `kiln server -agent` before anything starts, naming the flag; they are
// refused on a server without -agent.
func TestPolicyFlagsChecked(t *testing.T) {
	eachRefusal(t, []refusal{
		{[]string{"agent", "-host-ports", "60000-10000"}, `kiln agent: -host-ports: port range "60000-10000": want LO-HI`},
		{[]string{"agent", "-host-ports", "0-100"}, `kiln agent: -host-ports: port range "0-100": want LO-HI`},
		{[]string{"agent", "-allow-local-images", "relative/dir"}, `kiln agent: -allow-local-images "relative/dir": want an absolute directory`},
		{[]string{"server", "-agent", "-agent-driver", "memory", "-host-ports", "x"}, `kiln server: -agent: -host-ports: port range "x": want LO-HI`},
		{[]string{"server", "-allow-local-images", "/srv/images"}, "kiln server: -allow-local-images needs -agent (the host policy is the agent's)"},
		{[]string{"server", "-allow-insecure-http", "-allow-local-sources"}, "kiln server: -allow-insecure-http and -allow-local-sources need -agent (the host policy is the agent's)"},
	}, refusedAtStart)
}

func TestParsePolicyFlags(t *testing.T) {
	fs := newFlagSet("agent")
	var p policyFlags
	p.register(fs)
	if err := fs.Parse([]string{"-allow-local-images", "/srv/a,/srv/b", "-allow-local-images", "/srv/c", "-host-ports", "20000-20100", "-allow-local-sources"}); err != nil {
		t.Fatal(err)
	}
	hp, err := p.policy()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(hp.AllowLocalImages, " ") != "/srv/a /srv/b /srv/c" || hp.HostPorts.Lo != 20000 || hp.HostPorts.Hi != 20100 || !hp.AllowLocalSources || hp.AllowInsecureHTTP {
		t.Errorf("policy = %+v", hp)
	}
	var d policyFlags
	d.register(newFlagSet("agent"))
	if hp, err := d.policy(); err != nil || len(hp.AllowLocalImages) != 0 || hp.HostPorts.String() != "10000-60000" || hp.AllowLocalSources || hp.AllowInsecureHTTP {
		t.Errorf("default policy = %+v, %v", hp, err)
	}
}

func TestPortsOf(t *testing.T) {
	got := portsOf("127.0.0.1:4646", "[::1]:5646", "host-without-port", "", "10.0.0.1:0")
	if len(got) != 2 || got[0] != 4646 || got[1] != 5646 {
		t.Errorf("portsOf = %v, want [4646 5646]", got)
	}
}
