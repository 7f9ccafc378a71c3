package server_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/executors/kinds"
	"github.com/kiln-dev/kiln/executors/server"
)

// TestReadyOf: a ready block turns into one check, the first NIC's
// address the target of TCP and HTTP checks; without a block, the lease on
// the first DHCP network, else the domain running.
func TestReadyOf(t *testing.T) {
	port, console := int64(22), "login:"
	nics := []server.ReadyNIC{{IP: "10.0.0.10", MAC: "52:54:00:00:00:01"}, {IP: "10.1.0.10", MAC: "52:54:00:00:00:02", LeaseFile: "/l"}}
	signalled := func() time.Time { return time.Time{} }
	for _, c := range []struct {
		m    *kinds.ReadyBlock
		nics []server.ReadyNIC
		sig  func() time.Time
		want server.Ready
		err  string
	}{
		{nil, nics, nil, server.Ready{Kind: server.CheckLease, LeaseFile: "/l", MAC: "52:54:00:00:00:02"}, ""},
		{nil, nics[:1], nil, server.Ready{Kind: server.CheckRunning}, ""},
		{&kinds.ReadyBlock{TCPPort: &port, Timeout: 30}, nics, nil, server.Ready{Kind: server.CheckTCP, Port: 22, Address: "10.0.0.10", Timeout: 30 * time.Second}, ""},
		{&kinds.ReadyBlock{HTTPPort: &port, HTTPPath: "/up"}, nics, nil, server.Ready{Kind: server.CheckHTTP, Port: 22, Address: "10.0.0.10", Path: "/up"}, ""},
		{&kinds.ReadyBlock{Console: &console}, nil, nil, server.Ready{Kind: server.CheckConsole, Console: "login:"}, ""},
		{&kinds.ReadyBlock{Signal: true}, nil, signalled, server.Ready{}, "server.web: ready signal: the server needs a network"},
		{&kinds.ReadyBlock{Signal: true}, nics, nil, server.Ready{}, "server.web: ready signal: the server needs a network"},
		{&kinds.ReadyBlock{}, nics, nil, server.Ready{}, "server.web: the ready block has no check"},
	} {
		got, err := server.ReadyOf("server.web", c.m, c.nics, c.sig)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%+v: err = %v, want %q", c.m, err, c.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%+v: got %+v, %v; want %+v", c.m, got, err, c.want)
		}
	}
	got, err := server.ReadyOf("server.web", &kinds.ReadyBlock{Signal: true}, nics, signalled)
	if err != nil || got.Kind != server.CheckSignal || got.Signalled == nil {
		t.Errorf("signal: %+v, %v", got, err)
	}
}
