package spec

import (
	"fmt"
	"strings"
)

// Invalid cases that differ from one base template only in a value are
// generated here instead of kept as near-identical files: each is loaded as
// NAME.hcl from testdata/invalid (so diagnostics name the same file and line
// a file would) and checked against testdata/invalid/NAME.want like any other
// invalid case.
var invalidVariants = map[string]string{
	"address_broadcast": lanStack(lanServer("web", `"10.0.0.255"`)),
	"address_network":   lanStack(lanServer("web", `"10.0.0.0"`)),
	"address_outside":   lanStack(lanServer("web", `"10.0.1.10"`)),
	"address_gateway":   lanStack(lanServer("web", `cidrhost(network.lan.cidr, 1)`)),
	"address_twice":     lanStack(lanServer("a", `"10.0.0.10"`), lanServer("b", `"10.0.0.10"`)),

	"ready_timeout": readyStack(signalTimeout(`"5 minutes"`), signalTimeout(`300`), signalTimeout(`"500ms"`),
		signalTimeout(`"24h1s"`), signalTimeout(`"1500ms"`), signalTimeout(`"-5m"`)),
	"ready_port": readyStack([]string{"tcp_port = 0"}, []string{"http_port = 65536"},
		[]string{"tcp_port = 22.5"}, []string{`tcp_port = "ssh"`}),
	"ready_http_path": readyStack([]string{"tcp_port  = 22", `http_path = "/healthz"`},
		[]string{"http_port = 80", `http_path = "healthz"`},
		[]string{"http_port = 80", `http_path = "/health check"`},
		[]string{"http_port = 80", `http_path = "/health\ncheck"`}),
	"ready_duplicate": baseStack(serverBlock("web", append(readyLines("tcp_port = 22"), readyLines("signal = true")...)...)),
	"ready_two_checks": baseStack(
		serverBlock("web", readyLines("tcp_port = 22", "http_port = 80")...),
		serverBlock("db", readyLines("signal   = true", `console  = "ready"`, "tcp_port = 5432")...)),
}

// baseStack is the image every variant's servers boot, followed by blocks,
// one blank line between blocks.
func baseStack(blocks ...string) string {
	return strings.Join(append([]string{"image \"base\" {\n  source = \"/var/lib/images/base.qcow2\"\n}\n"}, blocks...), "\n")
}

// lanStack adds network "lan" (10.0.0.0/24) before the servers.
func lanStack(servers ...string) string {
	return baseStack(append([]string{"network \"lan\" {\n  cidr = \"10.0.0.0/24\"\n}\n"}, servers...)...)
}

func lanServer(name, address string) string {
	return serverBlock(name, fmt.Sprintf(`network "lan" { address = %s }`, address))
}

// readyStack has one server per ready body, named a, b, c, ...
func readyStack(bodies ...[]string) string {
	servers := make([]string, len(bodies))
	for i, body := range bodies {
		servers[i] = serverBlock(string(rune('a'+i)), readyLines(body...)...)
	}
	return baseStack(servers...)
}

func signalTimeout(timeout string) []string {
	return []string{"signal  = true", "timeout = " + timeout}
}

func serverBlock(name string, body ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "server %q {\n  image = image.base.id\n", name)
	for _, line := range body {
		b.WriteString("  " + line + "\n")
	}
	b.WriteString("}\n")
	return b.String()
}

func readyLines(lines ...string) []string {
	out := []string{"ready {"}
	for _, l := range lines {
		out = append(out, "  "+l)
	}
	return append(out, "}")
}
