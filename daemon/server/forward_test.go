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
// concurrent requests open no more connections than the first round did
// (http.DefaultTransport would keep two and dial the rest again each
// round), and each carries the forwarded header.
func TestForwardKeepsConnections(t *testing.T) {
	var conns atomic.Int64
	var unmarked atomic.Int64
	leader := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(forwardedHeader) != "node-f" {
			unmarked.Add(1)
		}
		io.Copy(io.Discard, r.Body)
		w.Write([]byte(`{"ok":true}`))
	}))
	leader.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
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
	// Without keep-alive every request dials (64 connections). With it,
	// most requests reuse one: a connection goes back to the idle pool
	// just after its answer is read, so on a loaded machine the next round
	// may dial a few more than clients before it is back; half the requests
	// is the bound that still tells the two apart.
	if n, most := conns.Load(), int64(clients*rounds/2); n > most {
		t.Errorf("%d requests (%d at a time) opened %d connections to the leader, want at most %d", clients*rounds, clients, n, most)
	}
	if n := unmarked.Load(); n != 0 {
		t.Errorf("%d forwarded requests lacked the %s header", n, forwardedHeader)
	}
}
