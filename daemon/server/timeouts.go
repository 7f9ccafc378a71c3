package server

import (
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Connection and request time limits of the HTTP API. A request's body must
// arrive within HTTPBodyTimeout (a client dripping it is cut off); its
// answer must be taken within HTTPWriteTimeout plus the wait of a blocking
// query (?index=, ?wait=), so long polls still work; an idle keep-alive
// connection is closed after HTTPIdleTimeout; at most MaxConnections are
// served at once (the next ones wait in the listen queue until one closes).
const (
	defaultHeaderTimeout = 10 * time.Second
	defaultBodyTimeout   = time.Minute
	// the longest host operation (hostWaitChange) and a margin
	defaultWriteTimeout   = hostWaitChange + time.Minute
	defaultIdleTimeout    = 2 * time.Minute
	defaultMaxConnections = 1024
	// minBodyRate: every byte of a body that arrives earns its request this
	// much more time, so a large upload (a snapshot restore) at a sane rate
	// finishes while a client dripping bytes is still cut off.
	minBodyRate = 256 << 10 // bytes per second
)

func (c *Config) timeoutDefaults() {
	orDefault(&c.HTTPHeaderTimeout, defaultHeaderTimeout)
	orDefault(&c.HTTPBodyTimeout, defaultBodyTimeout)
	orDefault(&c.HTTPWriteTimeout, defaultWriteTimeout)
	orDefault(&c.HTTPIdleTimeout, defaultIdleTimeout)
	orDefault(&c.MaxConnections, defaultMaxConnections)
}

// httpServer makes the API's http.Server with its time limits.
func (s *Server) httpServer() *http.Server {
	return &http.Server{
		Handler:           s.withDeadlines(s.mux),
		ReadHeaderTimeout: s.cfg.HTTPHeaderTimeout,
		IdleTimeout:       s.cfg.HTTPIdleTimeout,
	}
}

// withDeadlines sets the deadlines of one request: its body must be read
// within HTTPBodyTimeout, its answer written within HTTPWriteTimeout plus the
// wait it asked for. (A server-wide ReadTimeout would instead cancel the
// context of every request that runs longer, long polls included.)
func (s *Server) withDeadlines(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		now := time.Now()
		wait := time.Duration(0)
		if _, wt, err := waitParams(r); err == nil {
			wait = wt
		}
		_ = rc.SetWriteDeadline(now.Add(s.cfg.HTTPWriteTimeout + wait))
		if r.Body != nil && r.Body != http.NoBody {
			// Once the body is read to its end, the connection's read
			// deadline is lifted again: the server's background read of a
			// running request must not see it expire.
			deadline := now.Add(s.cfg.HTTPBodyTimeout)
			_ = rc.SetReadDeadline(deadline)
			r.Body = &deadlineBody{ReadCloser: r.Body,
				done: func() { _ = rc.SetReadDeadline(time.Time{}) },
				got: func(n int) {
					deadline = deadline.Add(time.Duration(n) * time.Second / minBodyRate)
					_ = rc.SetReadDeadline(deadline)
				}}
		}
		h.ServeHTTP(w, r)
	})
}

// deadlineBody calls done once the body has been read to its end. After a
// failed read (the deadline passed) the deadline stays: the server's discard
// of the rest of the body fails too and the connection is closed.
type deadlineBody struct {
	io.ReadCloser
	once sync.Once
	done func()
	got  func(n int) // n more bytes arrived
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.once.Do(b.done)
	} else if n > 0 {
		b.got(n)
	}
	return n, err
}

// limitListener accepts at most n connections at once: Accept waits for one
// to close before it takes the next from the listen queue.
type limitListener struct {
	net.Listener
	sem  chan struct{}
	done chan struct{}
	once sync.Once
}

func newLimitListener(l net.Listener, n int) *limitListener {
	return &limitListener{Listener: l, sem: make(chan struct{}, n), done: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// orDefault sets a setting left zero (or negative) to its default.
func orDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}
