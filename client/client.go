// Package client is the Go client of kiln's HTTP API (api): what the
// CLI and the agents use to talk to the servers.
//
// A client may be given several servers. A request goes to the server that
// last answered; on a connection failure or a 503 (no leader yet, shutting
// down) it tries the next one, going round the list a bounded number of times
// with a short pause between rounds. A 307/308 redirect (a follower pointing
// at its leader) is followed by net/http itself, with the Authorization header
// kept since the redirect stays on a kiln server.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/api"
)

// Config configures a Client.
type Config struct {
	// Addr is one server ("host:port" or "http://host:port"), or several
	// separated by commas.
	Addr string
	// Servers adds servers to those in Addr.
	Servers []string
	// Token is sent as "Authorization: Bearer <token>".
	Token string
	// HTTPClient defaults to a client without a global timeout (blocking
	// queries last up to their wait) whose redirects keep the token.
	HTTPClient *http.Client
	// Rounds is how many times a request goes round the server list before
	// giving up on connection failures and 503s (default 10).
	Rounds int
	// RetryPause is the pause between two rounds (default 250ms).
	RetryPause time.Duration
}

// Client talks to kiln servers. It is safe for concurrent use.
type Client struct {
	servers []string
	token   string
	hc      *http.Client
	rounds  int
	pause   time.Duration

	mu      sync.Mutex
	current int // index of the server that answered last
}

// Error is an error answer of the API.
type Error struct {
	StatusCode int
	// API is the error body: the message and the field at fault.
	API api.Error
	// Body is the raw answer (at most 1 MiB), for routes whose error
	// answers carry more than api.Error (a plan's diagnostics).
	Body []byte
}

func (e *Error) Error() string {
	msg := e.API.Error
	if msg == "" {
		msg = http.StatusText(e.StatusCode)
	}
	if e.API.Field != "" {
		return fmt.Sprintf("%s (field %s, HTTP %d)", msg, e.API.Field, e.StatusCode)
	}
	return fmt.Sprintf("%s (HTTP %d)", msg, e.StatusCode)
}

// StatusCode returns the HTTP status of err when it is an *Error, or 0.
func StatusCode(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.StatusCode
	}
	return 0
}

// IsNotFound reports whether err is a 404 answer.
func IsNotFound(err error) bool { return StatusCode(err) == http.StatusNotFound }

// ErrNoServer is returned (wrapped) when no server could be reached.
var ErrNoServer = errors.New("no kiln server reachable")

// New returns a client for the servers in cfg.
func New(cfg Config) (*Client, error) {
	var servers []string
	for _, s := range append(strings.Split(cfg.Addr, ","), cfg.Servers...) {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !strings.Contains(s, "://") {
			s = "http://" + s
		}
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("server address %q: want HOST:PORT", s)
		}
		servers = append(servers, strings.TrimRight(u.Scheme+"://"+u.Host, "/"))
	}
	if len(servers) == 0 {
		return nil, errors.New("no server address given")
	}
	c := &Client{servers: servers, token: cfg.Token, hc: cfg.HTTPClient, rounds: cfg.Rounds, pause: cfg.RetryPause}
	if c.hc == nil {
		c.hc = &http.Client{Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
		}}
		c.hc.CheckRedirect = keepToken
	}
	if c.rounds <= 0 {
		c.rounds = 10
	}
	if c.pause <= 0 {
		c.pause = 250 * time.Millisecond
	}
	return c, nil
}

// Servers returns the server base URLs the client knows.
func (c *Client) Servers() []string { return append([]string(nil), c.servers...) }

// Token returns the token the client sends.
func (c *Client) Token() string { return c.token }

// WithToken returns a client of the same servers and HTTP client that sends
// another token.
func (c *Client) WithToken(token string) *Client {
	c.mu.Lock()
	cur := c.current
	c.mu.Unlock()
	return &Client{servers: c.servers, token: token, hc: c.hc, rounds: c.rounds, pause: c.pause, current: cur}
}

// request is one call.
type request struct {
	method string
	path   string // with query
	body   any    // JSON-encoded unless []byte or io.Reader
	ctype  string
	// out receives the decoded JSON answer (or the raw body when *[]byte,
	// or is copied to when io.Writer).
	out any
}

// response is what do returns besides the decoded body.
type response struct {
	status int
	index  uint64
}

func (c *Client) do(ctx context.Context, r request) (response, error) {
	var body []byte
	switch b := r.body.(type) {
	case nil:
	case []byte:
		body = b
	case io.Reader:
		data, err := io.ReadAll(b)
		if err != nil {
			return response{}, err
		}
		body = data
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return response{}, fmt.Errorf("encode request: %w", err)
		}
		body = data
		if r.ctype == "" {
			r.ctype = "application/json"
		}
	}
	n := len(c.servers)
	var lastErr error
	c.mu.Lock()
	start := c.current
	c.mu.Unlock()
	for round := 0; round < c.rounds; round++ {
		if round > 0 {
			t := time.NewTimer(c.pause)
			select {
			case <-ctx.Done():
				t.Stop()
				return response{}, ctx.Err()
			case <-t.C:
			}
		}
		for k := 0; k < n; k++ {
			i := (start + k) % n
			resp, err := c.once(ctx, c.servers[i], r, body)
			if err == nil {
				c.mu.Lock()
				c.current = i
				c.mu.Unlock()
				return resp, nil
			}
			if ctx.Err() != nil {
				return response{}, ctx.Err()
			}
			if !retryable(err) {
				return resp, err
			}
			lastErr = err
		}
	}
	if StatusCode(lastErr) != 0 {
		return response{}, lastErr
	}
	return response{}, fmt.Errorf("%w (tried %s): %v", ErrNoServer, strings.Join(c.servers, ", "), lastErr)
}

// retryable: the server could not be reached or cannot serve now.
func retryable(err error) bool {
	switch StatusCode(err) {
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		return true
	case 0:
		var ne net.Error
		var oe *net.OpError
		var ue *url.Error
		return errors.As(err, &oe) || errors.As(err, &ne) || errors.As(err, &ue) ||
			errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
	}
	return false
}

func (c *Client) once(ctx context.Context, base string, r request, body []byte) (response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, base+r.path, rd)
	if err != nil {
		return response{}, err
	}
	if body != nil {
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		req.Header.Set("Content-Type", r.ctype)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	out := response{status: resp.StatusCode}
	if h := resp.Header.Get(api.IndexHeader); h != "" {
		out.index, _ = strconv.ParseUint(h, 10, 64)
	}
	if resp.StatusCode >= 300 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		e := &Error{StatusCode: resp.StatusCode, Body: data}
		if json.Unmarshal(data, &e.API) != nil || e.API.Error == "" {
			e.API.Error = strings.TrimSpace(string(data))
		}
		return out, e
	}
	switch o := r.out.(type) {
	case nil:
		_, err = io.Copy(io.Discard, resp.Body)
	case *[]byte:
		*o, err = io.ReadAll(resp.Body)
	case io.Writer:
		_, err = io.Copy(o, resp.Body)
	default:
		if resp.StatusCode == http.StatusNoContent {
			return out, nil
		}
		err = json.NewDecoder(resp.Body).Decode(o)
		if err != nil {
			err = fmt.Errorf("decode %s %s answer: %w", r.method, r.path, err)
		}
	}
	return out, err
}

// keepToken follows up to 5 redirects and keeps the Authorization header
// on them: a kiln server redirects only to another kiln server (its leader).
func keepToken(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("stopped after 5 redirects")
	}
	if h := via[0].Header.Get("Authorization"); h != "" {
		req.Header.Set("Authorization", h)
	}
	return nil
}

func esc(s string) string { return url.PathEscape(s) }

// blockingQuery returns the query string of a blocking query.
func blockingQuery(index uint64, wait time.Duration) string {
	v := url.Values{}
	if index > 0 {
		v.Set("index", strconv.FormatUint(index, 10))
	}
	if wait > 0 {
		v.Set("wait", wait.String())
	}
	if len(v) == 0 {
		return ""
	}
	return "?" + v.Encode()
}

// blockCtx bounds a blocking query a little past its wait, so that a server
// that died mid-query does not hold the caller.
func blockCtx(ctx context.Context, wait time.Duration) (context.Context, context.CancelFunc) {
	if wait <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, wait+wait/2+5*time.Second)
}
