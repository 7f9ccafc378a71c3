package portforward

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/internal/netnstest"
)

// serveIn serves "name saw REMOTE" on addr inside ns (nil: the test's
// namespace).
func serveIn(t *testing.T, ns *netnstest.NS, addr, name string) {
	t.Helper()
	ln := netnstest.Listen(t, ns, addr)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s saw %s", name, r.RemoteAddr)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// TestOutputRuleScoped: the DNAT in KILN-OUTPUT takes only the host's
// traffic to its own addresses (loopback included). Its connections to the
// same port of another machine go to that machine, untouched.
func TestOutputRuleScoped(t *testing.T) {
	requireTools(t)
	ctx := context.Background()
	remote := natHost(t, "scope", 52, "guest")
	serveIn(t, remote, "192.0.2.2:18080", "remote")

	d := &Driver{}
	spec := Spec{Stack: "scope", Address: "port_forward.http", HostPort: 18080, Target: "10.52.0.10", TargetPort: 80}
	if _, err := d.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Delete(context.Background(), spec) })
	for _, tt := range []struct{ url, want string }{
		{"http://192.0.2.2:18080/", "remote saw 192.0.2.1:"}, // another machine: not captured
		{"http://127.0.0.1:18080/", "guest saw "},            // loopback: forwarded
		{"http://192.0.2.1:18080/", "guest saw "},            // the host's own address: forwarded
	} {
		got, err := httpGet(nil, tt.url)
		if err != nil || !strings.HasPrefix(got, tt.want) {
			t.Errorf("GET %s from the host = %q, %v; want prefix %q", tt.url, got, err, tt.want)
		}
	}
	// And from the remote machine, its own port is its own.
	if got, err := httpGet(remote, "http://192.0.2.2:18080/"); err != nil || !strings.HasPrefix(got, "remote saw ") {
		t.Errorf("GET from the remote machine to itself = %q, %v", got, err)
	}

	// Holders names the owner of the port, per protocol.
	h, err := d.Holders("tcp", 18080)
	if err != nil || !slices.Equal(h, []string{spec.Owner()}) {
		t.Errorf("Holders(tcp, 18080) = %v, %v; want [%s]", h, err, spec.Owner())
	}
	for _, q := range []struct {
		proto string
		port  int
	}{{"udp", 18080}, {"tcp", 18081}, {"", 80}} {
		if h, err := d.Holders(q.proto, q.port); err != nil || len(h) != 0 {
			t.Errorf("Holders(%s, %d) = %v, %v; want none", q.proto, q.port, h, err)
		}
	}
}
