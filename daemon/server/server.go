// Package server is kiln's server process: a raft voter (raftstore) that
// serves the HTTP API of api and, while it is the leader, drives
// operations (the engine), places work on agents (the scheduler), marks
// silent agents down and destroys stacks whose TTL is over.
//
// Writes sent to a follower are forwarded to the leader's HTTP address
// (recorded in the store by raft id); reads are consistent unless
// ?stale=true. The leader loop (leader.go) follows raft's leadership
// notifications: there is never more than one, and it starts with a
// barrier.
package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/daemon/engine"
	"github.com/kiln-dev/kiln/daemon/scheduler"
	"github.com/kiln-dev/kiln/raftstore"
	"github.com/kiln-dev/kiln/spec"
)

// Version is reported by /v1/health.
var Version = "dev"

// Files in the data directory.
const (
	NodeIDFile          = "node-id"
	ManagementTokenFile = "management.token"
)

// Config configures a Server.
type Config struct {
	// DataDir holds the raft data, node-id and management.token.
	DataDir string
	// HTTPAddr is the API listen address (host:port; port 0 picks one).
	HTTPAddr string
	// RaftAddr is the raft TCP address (host:port, a real port).
	RaftAddr string
	// NodeID defaults to the one persisted in DataDir/node-id (made at the
	// first start).
	NodeID string
	// Bootstrap makes a one-node cluster at the first start and writes the
	// management token to DataDir/management.token (mode 0600).
	Bootstrap bool
	// Join is the HTTP address of any member; the node asks it (forwarded to
	// the leader) to be added. JoinToken (KILN_TOKEN) is an admin token.
	Join      string
	JoinToken string
	// Parallelism bounds the actions an operation runs at once (default
	// engine.DefaultParallelism); the costly kinds have lower bounds of
	// their own (engine.DefaultKindParallelism).
	Parallelism int
	// LeaveOnShutdown removes this node from the raft configuration on a
	// graceful Shutdown (not when it is the last voter).
	LeaveOnShutdown bool
	Logger          *slog.Logger
	// RaftLogger receives raft's own logs (default: none).
	RaftLogger hclog.Logger

	// Raft timeouts; zero keeps raft's defaults (tests shorten them).
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration

	// AgentHeartbeat is the policy that marks agents down (default
	// scheduler.DefaultHeartbeat).
	AgentHeartbeat scheduler.Heartbeat
	// TTLInterval is how often the leader looks for expired stacks
	// (default 10s).
	TTLInterval time.Duration
	// Recover starts a node whose raft log was lost from its newest
	// snapshot, accepting the loss of the writes after it (`kiln server
	// -recover`; see "Damaged data" in docs/operations.md).
	Recover bool
	// PlanTTL is how long a stored plan stays appliable by id (default
	// raftstore.DefaultPlanTTL); the leader then collects it and the blobs
	// nothing refers to, at every TTLInterval.
	PlanTTL time.Duration

	// EvalTimeout bounds the evaluation of one template (default 10s);
	// EvalLimits bound the values and string bytes it may make (zero
	// fields: spec's defaults).
	EvalTimeout time.Duration
	EvalLimits  spec.Limits
	// MaxConcurrentPlans bounds the templates this server evaluates at once
	// (default 4); a plan that finds no slot within PlanQueueWait (default
	// 2s) answers 429 with Retry-After.
	MaxConcurrentPlans int
	PlanQueueWait      time.Duration

	// HTTP time limits and connection cap (timeouts.go): headers within
	// HTTPHeaderTimeout (default 10s), a body within HTTPBodyTimeout
	// (default 1m), an answer taken within HTTPWriteTimeout (default 6m)
	// plus the wait of a blocking query, idle keep-alive connections
	// closed after HTTPIdleTimeout (default 2m), at most MaxConnections
	// (default 1024) served at once.
	HTTPHeaderTimeout time.Duration
	HTTPBodyTimeout   time.Duration
	HTTPWriteTimeout  time.Duration
	HTTPIdleTimeout   time.Duration
	MaxConnections    int
}

// Server is one kiln server.
type Server struct {
	cfg     Config
	log     *slog.Logger
	store   *raftstore.Store
	ln      net.Listener
	http    *http.Server
	metrics *metrics
	mux     *http.ServeMux

	mgmtToken string
	host      hostBroker  // host questions to the agents (hostops.go)
	reports   reportInbox // agents' reports handed to the dispatchers (op_reports.go)

	// fwd carries the requests a follower forwards to the leader: one pool
	// of kept-alive connections (http.go forward).
	fwd *http.Transport

	// planSlots bounds the templates evaluated at once (limits.go).
	planSlots chan struct{}

	leaderDone chan struct{}
	stop       chan struct{}
	wg         sync.WaitGroup
	shutOnce   sync.Once
}

// New checks the configuration and prepares the data directory.
func New(cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("server: DataDir is required")
	}
	if cfg.RaftAddr == "" {
		return nil, errors.New("server: RaftAddr is required")
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:4646"
	}
	if cfg.Parallelism <= 0 {
		cfg.Parallelism = engine.DefaultParallelism
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RaftLogger == nil {
		cfg.RaftLogger = hclog.NewNullLogger()
	}
	if cfg.AgentHeartbeat.Interval == 0 {
		cfg.AgentHeartbeat = scheduler.DefaultHeartbeat
	}
	if cfg.TTLInterval <= 0 {
		cfg.TTLInterval = 10 * time.Second
	}
	if cfg.PlanTTL <= 0 {
		cfg.PlanTTL = raftstore.DefaultPlanTTL
	}
	if cfg.EvalTimeout <= 0 {
		cfg.EvalTimeout = 10 * time.Second
	}
	if cfg.MaxConcurrentPlans <= 0 {
		cfg.MaxConcurrentPlans = 4
	}
	if cfg.PlanQueueWait <= 0 {
		cfg.PlanQueueWait = 2 * time.Second
	}
	cfg.timeoutDefaults()
	if err := os.MkdirAll(cfg.DataDir, raftstore.DirMode); err != nil {
		return nil, fmt.Errorf("server: data dir: %w", err)
	}
	// A data dir made by an older kiln may be 0755 with 0644 files: it
	// holds the management token, bundles and token hashes.
	if err := raftstore.TightenIn(cfg.DataDir, NodeIDFile, ManagementTokenFile); err != nil {
		return nil, fmt.Errorf("server: data dir permissions: %w", err)
	}
	if cfg.NodeID == "" {
		id, err := loadOrMake(filepath.Join(cfg.DataDir, NodeIDFile), func() string { return "node-" + randomHex(6) })
		if err != nil {
			return nil, fmt.Errorf("server: node id: %w", err)
		}
		cfg.NodeID = id
	}
	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger.With("node", cfg.NodeID),
		stop:       make(chan struct{}),
		leaderDone: make(chan struct{}),
		fwd:        forwardTransport(),
	}
	s.planSlots = make(chan struct{}, cfg.MaxConcurrentPlans)
	s.metrics = newMetrics(s)
	s.mux = s.routes()
	return s, nil
}

// loadOrMake reads a one-line file, or writes it with make() at first use.
func loadOrMake(path string, mk func() string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if v := strings.TrimSpace(string(b)); v != "" {
			return v, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	v := mk()
	if err := os.WriteFile(path, []byte(v+"\n"), 0o600); err != nil {
		return "", err
	}
	return v, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// Start opens the store, serves the API and starts the leader loop. With
// Join it asks the cluster to add this node (retrying in the background
// until it is added or the server stops).
func (s *Server) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("server: listen %s: %w", s.cfg.HTTPAddr, err)
	}
	s.ln = newLimitListener(ln, s.cfg.MaxConnections)
	if s.cfg.Bootstrap {
		path := filepath.Join(s.cfg.DataDir, ManagementTokenFile)
		tok, err := loadOrMake(path, func() string { return "kiln_" + randomHex(24) })
		if err != nil {
			ln.Close()
			return fmt.Errorf("server: management token: %w", err)
		}
		s.mgmtToken = tok
	} else if b, err := os.ReadFile(filepath.Join(s.cfg.DataDir, ManagementTokenFile)); err == nil {
		s.mgmtToken = strings.TrimSpace(string(b))
	}
	st, err := raftstore.Open(raftstore.Config{
		DataDir:            s.cfg.DataDir,
		NodeID:             s.cfg.NodeID,
		RaftAddr:           s.cfg.RaftAddr,
		Bootstrap:          s.cfg.Bootstrap,
		Logger:             s.cfg.RaftLogger,
		HeartbeatTimeout:   s.cfg.HeartbeatTimeout,
		ElectionTimeout:    s.cfg.ElectionTimeout,
		LeaderLeaseTimeout: s.cfg.LeaderLeaseTimeout,
		CommitTimeout:      s.cfg.CommitTimeout,
		Recover:            s.cfg.Recover,
	})
	if err != nil {
		ln.Close()
		return fmt.Errorf("server: %w", err)
	}
	s.store = st
	s.http = s.httpServer()
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		if err := s.http.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http serve", "err", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		s.leaderLoop()
	}()
	if s.cfg.Join != "" {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.joinLoop()
		}()
	}
	s.log.Info("server started", "http", s.Addr(), "raft", s.cfg.RaftAddr)
	return nil
}

// Addr returns the HTTP address the API listens on.
func (s *Server) Addr() string {
	if s.ln == nil {
		return s.cfg.HTTPAddr
	}
	return s.ln.Addr().String()
}

// NodeID returns this server's raft id.
func (s *Server) NodeID() string { return s.cfg.NodeID }

// Store returns the raft store (tests and tools).
func (s *Server) Store() *raftstore.Store { return s.store }

// ManagementToken returns the management token secret of a bootstrapped
// node ("" on others).
func (s *Server) ManagementToken() string { return s.mgmtToken }

// IsLeader reports whether this server is the raft leader.
func (s *Server) IsLeader() bool { return s.store != nil && s.store.IsLeader() }

// WaitReady waits until a leader is known and, on a bootstrapped node, the
// management token is usable.
func (s *Server) WaitReady(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		addr, _ := s.store.Leader()
		ok := addr != ""
		if ok && s.mgmtToken != "" {
			_, ok = s.store.State().TokenBySecret(s.mgmtToken)
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("server: not ready: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// joinLoop asks the cluster to add this node until it is a member.
func (s *Server) joinLoop() {
	body, _ := json.Marshal(api.JoinRequest{ID: s.cfg.NodeID, RaftAddr: s.store.Addr(), HTTPAddr: s.Addr()})
	tok := s.cfg.JoinToken
	if tok == "" {
		tok = os.Getenv("KILN_TOKEN")
	}
	delay := 100 * time.Millisecond
	for {
		err := s.joinOnce(body, tok)
		if err == nil {
			s.log.Info("joined", "via", s.cfg.Join)
			return
		}
		s.log.Warn("join", "via", s.cfg.Join, "err", err)
		select {
		case <-s.stop:
			return
		case <-time.After(delay):
		}
		if delay < 5*time.Second {
			delay *= 2
		}
	}
}

func (s *Server) joinOnce(body []byte, tok string) error {
	req, err := http.NewRequest(http.MethodPost, "http://"+s.cfg.Join+"/v1/operator/raft/peers", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e api.Error
		json.NewDecoder(resp.Body).Decode(&e)
		return fmt.Errorf("%s: %s", resp.Status, e.Error)
	}
	return nil
}

// Shutdown stops the server: with LeaveOnShutdown it first leaves the
// cluster (unless it is the last voter), then stops the leader loop, the
// API and raft.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	s.shutOnce.Do(func() {
		if s.store == nil {
			return
		}
		if s.cfg.LeaveOnShutdown {
			if lerr := s.leave(ctx); lerr != nil {
				s.log.Warn("leave", "err", lerr)
			}
		}
		close(s.stop)
		<-s.leaderDone
		if herr := s.http.Shutdown(ctx); herr != nil {
			s.http.Close()
		}
		err = s.store.Shutdown()
		s.wg.Wait()
		if s.fwd != nil {
			s.fwd.CloseIdleConnections()
		}
	})
	return err
}

// leave removes this node from the configuration when others remain.
func (s *Server) leave(ctx context.Context) error {
	peers, err := s.store.Peers()
	if err != nil {
		return err
	}
	voters := 0
	for _, p := range peers {
		if p.Voter {
			voters++
		}
	}
	if voters <= 1 {
		return nil
	}
	if s.store.IsLeader() {
		if err := s.store.Leave(ctx); err != nil {
			return err
		}
		return nil
	}
	// A follower asks the leader.
	leader := s.leaderHTTP()
	if leader == "" {
		return errors.New("no leader to ask")
	}
	tok := s.cfg.JoinToken
	if tok == "" {
		tok = os.Getenv("KILN_TOKEN")
	}
	if tok == "" {
		tok = s.mgmtToken
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, "http://"+leader+"/v1/operator/raft/peers/"+s.cfg.NodeID, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("leader answered %s", resp.Status)
	}
	return nil
}

// leaderHTTP returns the leader's HTTP address, "" when unknown.
func (s *Server) leaderHTTP() string {
	_, id := s.store.Leader()
	if id == "" {
		return ""
	}
	if id == s.cfg.NodeID {
		return s.Addr()
	}
	sv, ok := s.store.State().Server(id)
	if !ok {
		return ""
	}
	return sv.HTTPAddr
}

// apply proposes a command and counts it.
func (s *Server) apply(ctx context.Context, c raftstore.Command) error {
	_, err := s.store.Apply(ctx, c)
	s.metrics.applies.WithLabelValues(resultLabel(err)).Inc()
	return err
}

func resultLabel(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}
