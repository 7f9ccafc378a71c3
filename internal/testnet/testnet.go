// Package testnet gives kiln's tests loopback addresses. Tests import it;
// nothing else does.
package testnet

import (
	"net"
	"testing"
)

// FreeAddr returns a loopback address ("127.0.0.1:port") that nothing
// listened on a moment ago: the port the kernel gave a listener that is
// closed again before FreeAddr returns. It fails the test when no port can
// be had.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
