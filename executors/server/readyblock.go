package server

import (
	"fmt"
	"time"

	"github.com/kiln-dev/kiln/executors/kinds"
)

// ReadyNIC is what a server's readiness check needs of one of its NICs.
type ReadyNIC struct {
	IP, MAC string
	// LeaseFile is the lease file of the network's dnsmasq, "" without
	// DHCP.
	LeaseFile string
}

// ReadyOf is the check of the server at resource address whose ready block
// is m (nil without one) and whose NICs are nics. Without a block it is
// the guest's DHCP lease on its first DHCP network, or the domain running
// for a few seconds; TCP and HTTP checks go to the first NIC's address.
// signalled says when the guest called its ready URL (Signals); it is nil
// when the server cannot reach one.
func ReadyOf(address string, m *kinds.ReadyBlock, nics []ReadyNIC, signalled func() time.Time) (Ready, error) {
	if m == nil {
		for _, n := range nics {
			if n.LeaseFile != "" {
				return Ready{Kind: CheckLease, LeaseFile: n.LeaseFile, MAC: n.MAC}, nil
			}
		}
		return Ready{Kind: CheckRunning}, nil
	}
	var r Ready
	if m.Timeout > 0 {
		r.Timeout = time.Duration(m.Timeout) * time.Second
	}
	first := ""
	if len(nics) > 0 {
		first = nics[0].IP
	}
	switch {
	case m.TCPPort != nil:
		r.Kind, r.Port, r.Address = CheckTCP, int(*m.TCPPort), first
	case m.HTTPPort != nil:
		r.Kind, r.Port, r.Address = CheckHTTP, int(*m.HTTPPort), first
		r.Path = m.HTTPPath
	case m.Console != nil:
		r.Kind = CheckConsole
		r.Console = *m.Console
	case m.Signal:
		if len(nics) == 0 || signalled == nil {
			return r, fmt.Errorf("%s: ready signal: the server needs a network to reach its ready URL", address)
		}
		r.Kind = CheckSignal
		r.Signalled = signalled
	default:
		return r, fmt.Errorf("%s: the ready block has no check (tcp_port, http_port, console or signal)", address)
	}
	return r, nil
}
