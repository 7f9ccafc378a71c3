package netnstest

import (
	"io"
	"net"
	"net/http"
	"testing"
)

// In runs fn inside ns, or in the calling thread's namespace when ns is
// nil (a test's own namespace, its "host").
func In(ns *NS, fn func() error) error {
	if ns == nil {
		return fn()
	}
	return ns.Do(fn)
}

// Listen listens on the TCP address addr inside ns (nil: the calling
// thread's namespace) until the test ends; a failure fails t.
func Listen(t testing.TB, ns *NS, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	err := In(ns, func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		where := "the test's namespace"
		if ns != nil {
			where = ns.Name
		}
		t.Fatalf("listen on %s in %s: %v", addr, where, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// Get makes one GET of url with client from inside ns (nil: the calling
// thread's namespace) and returns the answer's status code and body.
func Get(ns *NS, client *http.Client, url string) (status int, body string, err error) {
	err = In(ns, func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		status, body = resp.StatusCode, string(b)
		return err
	})
	return status, body, err
}
