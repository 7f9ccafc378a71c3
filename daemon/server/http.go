package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/raftstore"
	"github.com/kiln-dev/kiln/spec"
)

// How a route is served.
type routeKind int

const (
	// readRoute: consistent read (VerifyLeader on the leader, forwarded
	// from a follower) unless ?stale=true.
	readRoute routeKind = iota
	// writeRoute: served by the leader; forwarded from a follower.
	writeRoute
	// localRoute: served from this server's state (agent work).
	localRoute
)

// forwardedHeader marks a request a follower forwarded, so that it is never
// forwarded twice.
const forwardedHeader = "X-Kiln-Forwarded"

// MaxWait caps the wait of a blocking query.
const MaxWait = 5 * time.Minute

// caller is the authenticated token of a request.
type caller struct {
	token raftstore.Token
	// project the request acts in: the token's, or for a management token
	// (no project) the ?project= parameter, "default" when absent.
	project string
}

func (c caller) admin() bool  { return c.token.Role == raftstore.RoleAdmin }
func (c caller) member() bool { return c.admin() || c.token.Role == raftstore.RoleMember }

// global: a project-less API token (not an agent credential or join token).
func (c caller) global() bool { return c.token.Project == "" && c.token.Kind == "" }

type ctxKey struct{}

func callerOf(r *http.Request) caller { return r.Context().Value(ctxKey{}).(caller) }

// httpError is an error with its status code and the field at fault.
type httpError struct {
	code  int
	msg   string
	field string
	// retryAfter, when set, is sent as Retry-After (whole seconds).
	retryAfter time.Duration
}

func (e *httpError) Error() string { return e.msg }

func errf(code int, format string, args ...any) *httpError {
	return &httpError{code: code, msg: fmt.Sprintf(format, args...)}
}

// required is the error for a required field left empty.
func required(field string) *httpError {
	return &httpError{code: http.StatusBadRequest, field: field, msg: field + " is required"}
}

type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// withBody is the handler of a request with a JSON body: the body is
// decoded (see decode) and handed to h.
func withBody[T any](h func(w http.ResponseWriter, r *http.Request, body T) error) handlerFunc {
	return decodingBody(false, h)
}

// withOptionalBody is withBody for a body that may be left empty (h gets
// the zero T).
func withOptionalBody[T any](h func(w http.ResponseWriter, r *http.Request, body T) error) handlerFunc {
	return decodingBody(true, h)
}

func decodingBody[T any](empty bool, h func(w http.ResponseWriter, r *http.Request, body T) error) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		var body T
		if err := decode(r, &body, empty); err != nil {
			return err
		}
		return h(w, r, body)
	}
}

func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	R := rule{projectAccess, raftstore.RoleReader}
	M := rule{projectAccess, raftstore.RoleMember}
	A := rule{projectAccess, raftstore.RoleAdmin}
	G := rule{access: globalAccess}
	AG := rule{access: agentAccess}
	J := rule{access: registerAccess}
	mux.HandleFunc("GET /v1/health", s.public("GET /v1/health", s.handleHealth))
	mux.Handle("GET /metrics", s.publicHandler("GET /metrics", s.metrics.handler()))

	s.handle(mux, "GET /v1/stacks", readRoute, R, s.handleStacks)
	s.handle(mux, "GET /v1/stacks/{stack}", readRoute, R, s.handleStack)
	s.handle(mux, "DELETE /v1/stacks/{stack}", writeRoute, M, s.handleDeleteStack)
	s.handle(mux, "POST /v1/stacks/{stack}/plan", writeRoute, R, withBody(s.handlePlan))
	s.handle(mux, "POST /v1/stacks/{stack}/apply", writeRoute, M, withBody(s.handleApply))
	s.handle(mux, "POST /v1/stacks/{stack}/destroy", writeRoute, M, withOptionalBody(s.handleDestroy))
	s.handle(mux, "POST /v1/stacks/{stack}/renew", writeRoute, M, s.handleRenew)
	s.handle(mux, "GET /v1/stacks/{stack}/outputs", readRoute, R, s.handleOutputs)
	s.handle(mux, "GET /v1/stacks/{stack}/events", readRoute, R, s.handleEvents)
	s.handle(mux, "GET /v1/stacks/{stack}/resources/{address}/console", readRoute, R, s.leaderOnly(s.handleConsole))
	s.handle(mux, "GET /v1/operations/{id}", readRoute, R, s.handleOperation)
	s.handle(mux, "POST /v1/operations/{id}/cancel", writeRoute, M, s.handleCancel)
	s.handle(mux, "GET /v1/tokens", readRoute, A, s.handleTokens)
	s.handle(mux, "POST /v1/tokens", writeRoute, A, withBody(s.handleCreateToken))
	s.handle(mux, "DELETE /v1/tokens/{id}", writeRoute, A, s.handleRevokeToken)
	s.handle(mux, "GET /v1/agents", readRoute, R, s.handleAgents)
	s.handle(mux, "POST /v1/agents", writeRoute, J, withBody(s.handleRegisterAgent))
	s.handle(mux, "POST /v1/agents/{id}/heartbeat", writeRoute, AG, withOptionalBody(s.handleHeartbeat))
	s.handle(mux, "GET /v1/agents/{id}/work", localRoute, AG, s.handleWork)
	s.handle(mux, "POST /v1/agents/{id}/results", writeRoute, AG, withBody(s.handleResults))
	s.handle(mux, "GET /v1/agents/{id}/hostwork", writeRoute, AG, s.handleHostWork)
	s.handle(mux, "POST /v1/agents/{id}/hostresults", writeRoute, AG, withBody(s.handleHostResults))
	s.handle(mux, "POST /v1/agents/{id}/events", writeRoute, AG, withBody(s.handleAgentEvents))
	s.handle(mux, "POST /v1/agents/{id}/revoke", writeRoute, G, s.handleRevokeAgent)
	s.handle(mux, "GET /v1/images", readRoute, R, s.leaderOnly(s.handleImages))
	s.handle(mux, "POST /v1/images/prune", writeRoute, G, s.handlePruneImages)
	s.handle(mux, "GET /v1/gc", readRoute, G, s.leaderOnly(s.handleGC))
	s.handle(mux, "GET /v1/operator/raft/peers", readRoute, G, s.handlePeers)
	s.handle(mux, "POST /v1/operator/raft/peers", writeRoute, G, withBody(s.handleJoin))
	s.handle(mux, "DELETE /v1/operator/raft/peers/{id}", writeRoute, G, s.handleRemovePeer)
	s.handle(mux, "GET /v1/operator/snapshot", readRoute, G, s.handleSnapshotSave)
	s.handle(mux, "PUT /v1/operator/snapshot", writeRoute, G, s.handleSnapshotRestore)
	s.handle(mux, "GET /debug/pprof/{profile}", localRoute, G, s.handlePprof)
	mux.HandleFunc("/", s.public("unknown", func(w http.ResponseWriter, r *http.Request) error {
		return errf(http.StatusNotFound, "no route %s %s", r.Method, r.URL.Path)
	}))
	return mux
}

// Routes lists every authenticated route pattern (for tests and docs).
func Routes() []string { return routeList }

var routeList []string

func (s *Server) public(route string, h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		if err := h(sw, r); err != nil {
			writeError(sw, err)
		}
		s.metrics.count(route, sw.code)
	}
}

func (s *Server) publicHandler(route string, h http.Handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		s.metrics.count(route, sw.code)
	}
}

func (s *Server) handle(mux *http.ServeMux, pattern string, kind routeKind, ru rule, h handlerFunc) {
	if !contains(routeList, pattern) {
		routeList = append(routeList, pattern)
	}
	mux.HandleFunc(pattern, s.public(pattern, func(w http.ResponseWriter, r *http.Request) error {
		c, err := s.authenticate(r)
		if err == errUnknownToken && r.Header.Get(forwardedHeader) == "" && !s.store.IsLeader() {
			// A token made a moment ago may not have reached this
			// follower yet: the leader decides.
			return s.forward(w, r)
		}
		if err != nil {
			return err
		}
		if err := c.check(ru, r); err != nil {
			return err
		}
		r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, c))
		stale := r.URL.Query().Get("stale") == "true"
		switch {
		case kind == writeRoute || (kind == readRoute && !stale):
			if !s.store.IsLeader() {
				return s.forward(w, r)
			}
			if kind == readRoute {
				if err := s.store.VerifyLeader(); err != nil {
					return s.forward(w, r)
				}
			}
		}
		if !unboundedBody[pattern] {
			r.Body = http.MaxBytesReader(w, r.Body, api.MaxBodyBytes)
		}
		return h(w, r)
	}))
}

// unboundedBody lists the routes whose body is not capped by
// api.MaxBodyBytes: a snapshot restore streams its body to disk, and must
// take every snapshot that GET /v1/operator/snapshot wrote.
var unboundedBody = map[string]bool{
	"PUT /v1/operator/snapshot": true,
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func allowed(have, need raftstore.Role) bool {
	rank := map[raftstore.Role]int{raftstore.RoleReader: 1, raftstore.RoleMember: 2, raftstore.RoleAdmin: 3}
	return rank[have] >= rank[need]
}

var errUnknownToken = errf(http.StatusUnauthorized, "unknown or revoked token")

func (s *Server) authenticate(r *http.Request) (caller, error) {
	h := r.Header.Get("Authorization")
	secret, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || strings.TrimSpace(secret) == "" {
		return caller{}, errf(http.StatusUnauthorized, "missing token: send Authorization: Bearer <token> (KILN_TOKEN)")
	}
	if !s.store.Ready() {
		// Right after a restart the state is replayed only once a leader
		// confirms the log; until then a valid token would look unknown.
		return caller{}, errf(http.StatusServiceUnavailable, "starting: this server is still catching up with the raft log; retry shortly")
	}
	tok, ok := s.store.State().TokenBySecret(strings.TrimSpace(secret))
	if !ok {
		return caller{}, errUnknownToken
	}
	if tok.Expired(time.Now()) {
		return caller{}, errf(http.StatusUnauthorized, "token expired (at %s)", tok.Expires.UTC().Format(time.RFC3339))
	}
	c := caller{token: tok, project: tok.Project}
	if c.global() {
		c.project = r.URL.Query().Get("project")
		if c.project == "" {
			c.project = "default"
		}
		if err := checkProject(c.project); err != nil {
			return caller{}, &httpError{code: http.StatusBadRequest, field: "project", msg: err.Error()}
		}
	}
	return c, nil
}

// MaxProjectName bounds a project name: it goes into owner tags and host
// object names (see executors.Scope), which have length limits.
const MaxProjectName = 40

// checkProject refuses a project name that host object names cannot carry.
func checkProject(name string) error {
	if !spec.ValidName(name) || len(name) > MaxProjectName {
		return fmt.Errorf("project %q is not a valid name: lower-case letters, digits, '_' and '-', starting with a letter, at most %d bytes", name, MaxProjectName)
	}
	return nil
}

// forward sends the request to the leader's API, Authorization included.
func (s *Server) forward(w http.ResponseWriter, r *http.Request) error {
	if r.Header.Get(forwardedHeader) != "" {
		return errf(http.StatusServiceUnavailable, "no leader: this server was sent a forwarded request but is not the leader (an election is under way; retry)")
	}
	leader := s.leaderHTTP()
	if leader == "" || leader == s.Addr() {
		return errf(http.StatusServiceUnavailable, "no leader: the cluster has no leader right now (an election is under way or a quorum is lost); retry")
	}
	newForwardProxy(s.fwd, leader, s.cfg.NodeID).ServeHTTP(w, r)
	return nil
}

// newForwardProxy makes the proxy of one forwarded request: a cheap value
// over the shared transport, which holds the connections.
func newForwardProxy(tr http.RoundTripper, leader, nodeID string) *httputil.ReverseProxy {
	target := &url.URL{Scheme: "http", Host: leader}
	return &httputil.ReverseProxy{
		Transport: tr,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = leader
			pr.Out.Header.Set(forwardedHeader, nodeID)
		},
		FlushInterval: -1,
		BufferPool:    proxyBuffers,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			writeError(w, errf(http.StatusServiceUnavailable, "no leader: forward to the leader at %s: %v", leader, err))
		},
	}
}

// proxyBuffers are the buffers the forward proxies copy answers through.
// Without a pool every forwarded request allocated a 32 KiB buffer of its
// own, and under concurrent writes a follower spent more CPU collecting
// them than forwarding.
var proxyBuffers = &bufferPool{pool: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}

// bufferPool is an httputil.BufferPool over a sync.Pool.
type bufferPool struct{ pool sync.Pool }

func (p *bufferPool) Get() []byte  { return *p.pool.Get().(*[]byte) }
func (p *bufferPool) Put(b []byte) { p.pool.Put(&b) }

// forwardTransport is the pool of connections from a follower to the
// leader. http.DefaultTransport keeps only two idle connections per host, so
// under concurrent writes most forwarded requests would dial (and leave in
// TIME_WAIT) a connection of their own; and it would send them through an
// HTTP_PROXY of the environment, which servers talking to each other must
// not use.
func forwardTransport() *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
	}
}

// decode reads a JSON body into v, refusing unknown fields and naming the
// field at fault. An empty body is accepted when empty is true.
func decode(r *http.Request, v any, empty bool) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if dec.More() {
			return errf(http.StatusBadRequest, "bad JSON: the body holds more than one value")
		}
		var extra json.RawMessage
		if e := dec.Decode(&extra); e != io.EOF {
			return errf(http.StatusBadRequest, "bad JSON: the body holds more than one value")
		}
		return nil
	}
	var maxErr *http.MaxBytesError
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &maxErr):
		return errf(http.StatusRequestEntityTooLarge, "body too large: at most %d bytes", maxErr.Limit)
	case errors.Is(err, io.EOF):
		if empty {
			return nil
		}
		return errf(http.StatusBadRequest, "empty body: a JSON object is required")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errf(http.StatusBadRequest, "bad JSON: the body ends too soon")
	case errors.As(err, &syn):
		return errf(http.StatusBadRequest, "bad JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		f := typ.Field
		if f == "" {
			f = "(body)"
		}
		return &httpError{code: http.StatusBadRequest, field: f,
			msg: fmt.Sprintf("wrong type for field %q: got JSON %s, want %s", f, typ.Value, typ.Type)}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f, _ := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
		return &httpError{code: http.StatusBadRequest, field: f, msg: fmt.Sprintf("unknown field %q", f)}
	}
	return errf(http.StatusBadRequest, "bad JSON: %v", err)
}

func writeJSON(w http.ResponseWriter, code int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeError answers an error: httpError as it is; store errors mapped to
// their status; anything else 500.
func writeError(w http.ResponseWriter, err error) {
	var de *diagError
	if errors.As(err, &de) {
		writeJSON(w, http.StatusBadRequest, api.Error{Error: de.text, Diagnostics: de.diags})
		return
	}
	var he *httpError
	if !errors.As(err, &he) {
		he = storeError(err)
	}
	if he.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((he.retryAfter+time.Second-1)/time.Second)))
	}
	writeJSON(w, he.code, api.Error{Error: he.msg, Field: he.field})
}

func storeError(err error) *httpError {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, raftstore.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, raftstore.ErrConflict), errors.Is(err, raftstore.ErrStaleSerial):
		code = http.StatusConflict
	case errors.Is(err, raftstore.ErrInvalid):
		code = http.StatusBadRequest
	case errors.Is(err, raftstore.ErrTooLarge):
		code = http.StatusRequestEntityTooLarge
	case errors.Is(err, raftstore.ErrNotLeader), errors.Is(err, raftstore.ErrShutdown):
		code = http.StatusServiceUnavailable
		return &httpError{code: code, msg: "no leader: " + err.Error() + " (retry)"}
	case errors.Is(err, context.DeadlineExceeded):
		code = http.StatusServiceUnavailable
	}
	return &httpError{code: code, msg: err.Error()}
}

// waitParams reads ?index=N&wait=D of a blocking query (wait capped at
// MaxWait, default 5 minutes when index is given).
func waitParams(r *http.Request) (index uint64, wait time.Duration, err error) {
	q := r.URL.Query()
	if v := q.Get("index"); v != "" {
		index, err = strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, &httpError{code: http.StatusBadRequest, field: "index", msg: fmt.Sprintf("index %q is not a number", v)}
		}
		wait = MaxWait
	}
	if v := q.Get("wait"); v != "" {
		wait, err = time.ParseDuration(v)
		if err != nil || wait < 0 {
			return 0, 0, &httpError{code: http.StatusBadRequest, field: "wait", msg: fmt.Sprintf("wait %q is not a duration like 30s", v)}
		}
	}
	if wait > MaxWait {
		wait = MaxWait
	}
	return index, wait, nil
}

// block waits, while cond() is false, for the state to move, at most wait.
func (s *Server) block(ctx context.Context, wait time.Duration, cond func() bool) {
	if cond() || wait <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	st := s.store.State()
	for !cond() {
		idx := st.Index()
		if _, err := st.Wait(ctx, idx); err != nil {
			return
		}
	}
}
