package server

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Forwarded requests keep their connections to the leader: rounds of
// concurrent requests close none of them and open far fewer than a new set
// per round (http.DefaultTransport would keep two, close the rest and dial
// them again each round: 58 connections here), and each carries the
// forwarded header. A connection goes back to the pool a moment after its
// answer was read, so a request of the next round may dial one more: the
// bound on dials allows that; the kept connections are the real measure.
func TestForwardKeepsConnections(t *testing.T) {
	var conns, closed atomic.Int64
	var unmarked atomic.Int64
	leader := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(forwardedHeader) != "node-f" {
			unmarked.Add(1)
		}
		io.Copy(io.Discard, r.Body)
		w.Write([]byte(`{"ok":true}`))
	}))
	leader.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			conns.Add(1)
		case http.StateClosed:
			closed.Add(1)
		}
	}
	leader.Start()
	defer leader.Close()
	tr := forwardTransport()
	defer tr.CloseIdleConnections()
	addr := leader.Listener.Addr().String()

	const clients, rounds = 16, 4
	for range rounds {
		var wg sync.WaitGroup
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				in := httptest.NewRequest(http.MethodPost, "/v1/tokens", strings.NewReader(`{"role":"reader"}`))
				rec := httptest.NewRecorder()
				newForwardProxy(tr, addr, "node-f").ServeHTTP(rec, in)
				if rec.Code != http.StatusOK {
					t.Errorf("forwarded answer %d: %s", rec.Code, rec.Body)
				}
			}()
		}
		wg.Wait()
	}
	if n := conns.Load(); n > 2*clients {
		t.Errorf("%d requests (%d at a time) opened %d connections to the leader, want at most %d", clients*rounds, clients, n, 2*clients)
	}
	if n := closed.Load(); n != 0 {
		t.Errorf("%d connections to the leader were closed between rounds, want all kept", n)
	}
	if n := unmarked.Load(); n != 0 {
		t.Errorf("%d forwarded requests lacked the %s header", n, forwardedHeader)
	}
}
