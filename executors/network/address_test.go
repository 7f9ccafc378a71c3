package network_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/executors/network"
)

func TestPickAddress(t *testing.T) {
	gw := netip.MustParsePrefix("10.0.0.1/24")
	hosts := []network.Host{
		{MAC: "52:54:00:00:00:01", IP: "10.0.0.10"},
		{MAC: "52:54:00:00:00:02", IP: "10.0.0.12"},
	}
	for _, tc := range []struct {
		mac, want, got, err string
	}{
		{mac: "52:54:00:00:00:03", got: "10.0.0.11"}, // lowest free from .10
		{mac: "52:54:00:00:00:02", got: "10.0.0.12"}, // its own, again
		{mac: "52:54:00:00:00:03", want: "10.0.0.50", got: "10.0.0.50"},
		{mac: "52:54:00:00:00:03", want: "10.0.0.60/24", got: "10.0.0.60"},
		{mac: "52:54:00:00:00:03", want: "10.0.0.10", err: "already given"},
		{mac: "52:54:00:00:00:03", want: "10.0.0.1", err: "not a guest address"},
		{mac: "52:54:00:00:00:03", want: "10.0.1.5", err: "not a guest address"},
		{mac: "52:54:00:00:00:03", want: "web", err: "not an IPv4 address"},
	} {
		ip, err := network.PickAddress(gw, hosts, tc.mac, tc.want)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("pick(%s, %q) error = %v, want %q", tc.mac, tc.want, err, tc.err)
		case tc.err == "" && (err != nil || ip.String() != tc.got):
			t.Errorf("pick(%s, %q) = %v, %v, want %s", tc.mac, tc.want, ip, err, tc.got)
		}
	}
	var full []network.Host
	small := netip.MustParsePrefix("10.0.0.1/28") // hosts .1-.14
	for i := 10; i <= 14; i++ {
		full = append(full, network.Host{MAC: fmt.Sprintf("52:54:00:00:01:%02x", i), IP: fmt.Sprintf("10.0.0.%d", i)})
	}
	if _, err := network.PickAddress(small, full, "52:54:00:00:00:99", ""); err == nil {
		t.Errorf("a full network gave an address")
	}
}
