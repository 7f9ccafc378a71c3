// Package agent is the loop of a kiln agent: it registers with the
// servers, heartbeats with the host's capacity and cached images, waits for
// the actions assigned to it with a blocking query that any server answers,
// runs each one through the driver of its kind and reports the result. When
// the leader changes it simply talks to the next server (the client retries
// across the server list).
package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/client"
	"github.com/kiln-dev/kiln/daemon/scheduler"
)

// IDFile holds the agent's id in its data directory, so that it keeps it
// across restarts.
const IDFile = "agent-id"

// CredentialFile holds the agent's credential (mode 0600) in its data
// directory: the token the servers issued it at its first registration. It
// wins over the configured token on every later start.
const CredentialFile = "agent-credential"

// Defaults.
const (
	DefaultHeartbeatInterval = 5 * time.Second
	DefaultWait              = 30 * time.Second
	DefaultParallelism       = 64
)

// Config configures an agent.
type Config struct {
	// ID names the agent; "" reads DataDir/agent-id, or makes one and
	// writes it there.
	ID      string
	DataDir string
	// Servers are the servers' HTTP addresses; Client, when set, is used
	// instead.
	Servers []string
	Client  *client.Client
	// Token registers the agent the first time: a global admin token or a
	// join token. The agent then keeps the credential it is issued in
	// DataDir/agent-credential and uses it instead.
	Token   string
	Drivers Drivers
	// HeartbeatInterval defaults to DefaultHeartbeatInterval.
	HeartbeatInterval time.Duration
	// Wait is how long one blocking work query waits (DefaultWait).
	Wait time.Duration
	// Parallelism bounds the actions run at once (DefaultParallelism); the
	// costly kinds have lower bounds of their own
	// (scheduler.KindParallelism).
	Parallelism int
	// Address is how a human reaches this host (default: the hostname).
	Address string
	// CPURatio and MemoryRatio are the allocation ratios the agent reports
	// with its capacity: how many guest vCPUs one host CPU counts for (0:
	// scheduler.DefaultCPURatio, at most api.MaxCPURatio) and how many
	// bytes of guest memory one byte of host memory counts for (0:
	// scheduler.DefaultMemoryRatio, at most api.MaxMemoryRatio).
	CPURatio    float64
	MemoryRatio float64
	// Accel is the accelerator the agent's guests run with, "kvm" or
	// "tcg" ("" unknown), and AccelReason why, in one sentence; reported
	// with the capacity. "" takes what the drivers say (see Accel).
	Accel       string
	AccelReason string
	Logger      *slog.Logger
}

// Agent is one running agent.
type Agent struct {
	cfg Config
	id  string
	cl  atomic.Pointer[client.Client]
	// credential: the client sends the agent's own credential.
	credential atomic.Bool
	log        *slog.Logger
	sem        chan struct{}
	kindSem    map[string]chan struct{} // the kinds with a bound of their own
	wg         sync.WaitGroup
	reg        chan struct{} // signalled when the agent must register again
	// actions and hosts run each work item and host request once (see
	// memo).
	actions memo[itemKey, api.ActionReport]
	hosts   memo[hostKey, api.HostAnswer]
}

type itemKey struct {
	work, opID, address string
	op                  api.Op
	attempt             int
}

// New checks cfg and returns an agent; Run starts it.
func New(cfg Config) (*Agent, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("agent: no data directory")
	}
	if len(cfg.Drivers) == 0 {
		return nil, errors.New("agent: no drivers")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("agent: data directory: %w", err)
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.Wait <= 0 {
		cfg.Wait = DefaultWait
	}
	if cfg.Parallelism <= 0 {
		cfg.Parallelism = DefaultParallelism
	}
	if cfg.Address == "" {
		cfg.Address, _ = os.Hostname()
	}
	if cfg.Accel == "" {
		cfg.Accel, cfg.AccelReason = Accel(cfg.Drivers)
	}
	if err := cfg.checkCapacity(); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if cfg.CPURatio == 0 {
		cfg.CPURatio = scheduler.DefaultCPURatio
	}
	if cfg.MemoryRatio == 0 {
		cfg.MemoryRatio = scheduler.DefaultMemoryRatio
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	id, err := loadID(cfg.DataDir, cfg.ID)
	if err != nil {
		return nil, err
	}
	c := cfg.Client
	if c == nil {
		c, err = client.New(client.Config{Servers: cfg.Servers, Token: cfg.Token, Rounds: 3})
		if err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
	}
	a := &Agent{
		cfg:     cfg,
		id:      id,
		log:     cfg.Logger.With("agent", id),
		sem:     make(chan struct{}, cfg.Parallelism),
		kindSem: map[string]chan struct{}{},
		reg:     make(chan struct{}, 1),
	}
	for kind, n := range scheduler.KindParallelism {
		a.kindSem[kind] = make(chan struct{}, min(n, cfg.Parallelism))
	}
	cred, err := os.ReadFile(filepath.Join(cfg.DataDir, CredentialFile))
	switch {
	case err == nil && strings.TrimSpace(string(cred)) != "":
		c = c.WithToken(strings.TrimSpace(string(cred)))
		a.credential.Store(true)
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("agent: read credential: %w", err)
	}
	a.cl.Store(c)
	return a, nil
}

// c returns the client the agent talks to the servers with.
func (a *Agent) c() *client.Client { return a.cl.Load() }

// keepCredential stores the credential the servers issued and talks with it
// from now on.
func (a *Agent) keepCredential(cred string) error {
	p := filepath.Join(a.cfg.DataDir, CredentialFile)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(cred+"\n"), 0o600); err != nil {
		return fmt.Errorf("agent: write credential: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("agent: write credential: %w", err)
	}
	a.cl.Store(a.c().WithToken(cred))
	a.credential.Store(true)
	return nil
}

// ID returns the agent's id.
func (a *Agent) ID() string { return a.id }

// loadID returns the id given, or the one persisted, or a new one that it
// persists.
func loadID(dir, given string) (string, error) {
	p := filepath.Join(dir, IDFile)
	if given != "" {
		if err := os.WriteFile(p, []byte(given+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("agent: write id: %w", err)
		}
		return given, nil
	}
	if data, err := os.ReadFile(p); err == nil {
		if id := strings.TrimSpace(string(data)); id != "" {
			return id, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("agent: read id: %w", err)
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	host, _ := os.Hostname()
	id := "agent-" + hex.EncodeToString(b[:])
	if host != "" {
		id = sanitizeID(host) + "-" + hex.EncodeToString(b[:3])
	}
	if err := os.WriteFile(p, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("agent: write id: %w", err)
	}
	return id, nil
}

func sanitizeID(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	return strings.Trim(b.String(), "-")
}

// Run registers the agent and serves work until ctx ends. It returns nil
// when ctx was cancelled, after the actions in progress returned.
func (a *Agent) Run(ctx context.Context) error {
	if err := a.register(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		a.heartbeats(ctx, stop)
	}()
	hostDone := make(chan struct{})
	go func() {
		defer close(hostDone)
		a.hostWork(ctx)
	}()
	a.work(ctx)
	a.wg.Wait()
	<-hbDone
	<-hostDone
	if err := context.Cause(ctx); errors.Is(err, errCredentialRefused) {
		return err
	}
	return nil
}

// errCredentialRefused stops an agent whose credential the servers refuse
// (it was revoked): it can neither fetch nor report work any more.
var errCredentialRefused = errors.New("agent: the servers refuse this agent's credential (revoked?)")

// register registers until it succeeds or ctx ends; an error that retrying
// cannot fix (401, 403, 400) is returned at once.
func (a *Agent) register(ctx context.Context) error {
	for {
		req := api.AgentRegister{ID: a.id, Address: a.cfg.Address, Capacity: Capacity(a.cfg), Images: a.images(ctx)}
		info, err := a.c().RegisterAgent(ctx, req)
		if err == nil {
			if info.Credential != "" {
				if err := a.keepCredential(info.Credential); err != nil {
					return err
				}
			}
			a.log.Info("registered", "servers", strings.Join(a.c().Servers(), ","), "credential", a.credential.Load())
			return nil
		}
		switch client.StatusCode(err) {
		case http.StatusUnauthorized, http.StatusForbidden, http.StatusBadRequest, http.StatusConflict:
			if a.credential.Load() && client.StatusCode(err) == http.StatusUnauthorized {
				return fmt.Errorf("agent: register: the agent's credential in %s was refused (revoked?): %w; to register it again, a global admin removes that file and starts the agent with a global admin token", filepath.Join(a.cfg.DataDir, CredentialFile), err)
			}
			return fmt.Errorf("agent: register: %w", err)
		}
		a.log.Warn("register failed; retrying", "err", err)
		if !sleep(ctx, time.Second) {
			return ctx.Err()
		}
	}
}

func (a *Agent) images(ctx context.Context) []string {
	seen := map[string]bool{}
	var out []string
	for _, d := range a.cfg.Drivers {
		l, ok := d.(ImageLister)
		if !ok {
			continue
		}
		imgs, err := l.CachedImages(ctx)
		if err != nil {
			continue
		}
		for _, i := range imgs {
			if !seen[i] {
				seen[i] = true
				out = append(out, i)
			}
		}
	}
	return out
}

func (a *Agent) heartbeats(ctx context.Context, stop context.CancelCauseFunc) {
	t := time.NewTicker(a.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.reg:
			if err := a.register(ctx); err != nil && ctx.Err() == nil {
				a.log.Error("register again", "err", err)
			}
			continue
		}
		hb := api.AgentHeartbeat{Capacity: Capacity(a.cfg), Images: a.images(ctx)}
		err := a.c().Heartbeat(ctx, a.id, hb)
		if client.IsNotFound(err) {
			// The servers forgot this agent (a restored snapshot): register again.
			a.reregister()
		} else if client.StatusCode(err) == http.StatusUnauthorized && a.credential.Load() {
			err = fmt.Errorf("%w: %v; to register it again, a global admin removes %s and starts the agent with a global admin token", errCredentialRefused, err, filepath.Join(a.cfg.DataDir, CredentialFile))
			a.log.Error("stopping", "err", err)
			stop(err)
			return
		} else if err != nil && ctx.Err() == nil {
			a.log.Warn("heartbeat failed", "err", err)
		}
	}
}

func (a *Agent) reregister() {
	select {
	case a.reg <- struct{}{}:
	default:
	}
}

// work loops on the blocking work query.
func (a *Agent) work(ctx context.Context) {
	poll(ctx, 500*time.Millisecond, func(index uint64) ([]api.WorkItem, uint64, error) {
		resp, err := a.c().Work(ctx, a.id, index, a.cfg.Wait)
		return resp.Items, resp.Index, err
	}, func(err error) {
		if client.IsNotFound(err) {
			a.reregister()
		}
		a.log.Warn("work query failed", "err", err)
	}, func(it api.WorkItem, index uint64) { a.take(ctx, it, index) })
}

// poll loops on a blocking query until ctx is done: query returns the items
// of the answer after index and the answer's index, and take is called with
// each item and that index. A failed query is told to failed (unless ctx
// ended) and tried again from index 0 after retry. An index that goes
// backwards (a restored snapshot, another leader with its own sequence)
// starts over from 0.
func poll[T any](ctx context.Context, retry time.Duration, query func(index uint64) ([]T, uint64, error), failed func(error), take func(item T, index uint64)) {
	var index uint64
	for ctx.Err() == nil {
		items, at, err := query(index)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failed(err)
			index = 0
			if !sleep(ctx, retry) {
				return
			}
			continue
		}
		if at < index {
			index = 0
		} else {
			index = at
		}
		for _, it := range items {
			take(it, at)
		}
	}
}

// take starts an item unless it is running already; an item already done
// is answered with its report again, unless the answer it came in (of state
// index index) predates the servers taking that report.
func (a *Agent) take(ctx context.Context, it api.WorkItem, index uint64) {
	k := itemKey{it.WorkID, it.OperationID, it.Address, it.Op, it.Attempt}
	a.actions.once(&a.wg, k, index, func() (api.ActionReport, bool) {
		release, ok := a.acquire(ctx, it.Kind)
		if !ok {
			return api.ActionReport{}, false
		}
		rep := a.run(ctx, it)
		release()
		// Interrupted: nothing is reported, the next leader reads it back.
		return rep, ctx.Err() == nil || rep.OK
	}, func(rep api.ActionReport) { a.actions.taken(k, a.report(ctx, rep)) })
}

// acquire takes a slot for an action of kind: one of the kind's own when
// it has a bound, then one of the agent's. It reports false when ctx ended
// first.
func (a *Agent) acquire(ctx context.Context, kind string) (release func(), ok bool) {
	ks := a.kindSem[kind]
	if ks != nil {
		select {
		case ks <- struct{}{}:
		case <-ctx.Done():
			return nil, false
		}
	}
	select {
	case a.sem <- struct{}{}:
	case <-ctx.Done():
		if ks != nil {
			<-ks
		}
		return nil, false
	}
	return func() {
		<-a.sem
		if ks != nil {
			<-ks
		}
	}, true
}

// run runs one item through its driver.
func (a *Agent) run(ctx context.Context, it api.WorkItem) api.ActionReport {
	rep := api.ActionReport{OperationID: it.OperationID, Address: it.Address, Op: it.Op, WorkID: it.WorkID}
	d := a.cfg.Drivers[it.Kind]
	if d == nil {
		rep.Refused = true
		rep.Error = fmt.Sprintf("agent %s has no driver for %q", a.id, it.Kind)
		return rep
	}
	act, err := actionOf(it)
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	act.Node = a.id
	ctx, flushEvents := a.withEvents(ctx, it)
	defer flushEvents()
	log := a.log.With("op", it.OperationID, "address", it.Address, "action", it.Op)
	var obj Object
	switch it.Op {
	case api.OpCreate:
		obj, err = d.Create(ctx, act)
	case api.OpUpdate:
		obj, err = d.Update(ctx, act)
	case api.OpDelete:
		err = d.Delete(ctx, act)
	case "read":
		var exists bool
		obj, exists, err = d.Read(ctx, act)
		rep.Exists = exists
	default:
		err = fmt.Errorf("unknown op %q", it.Op)
	}
	if err != nil {
		log.Warn("action failed", "err", err)
		rep.Error = err.Error()
		return rep
	}
	rep.OK = true
	rep.PhysicalName = obj.PhysicalName
	rep.ReadySeconds = obj.ReadyAfter.Seconds()
	rep.Attrs = obj.Attrs
	log.Info("action done")
	return rep
}

// report sends a report, retrying (through every server) until it is taken
// or refused for good, or ctx ends. It returns the state index at which the
// servers took it (0: not taken, or not said).
func (a *Agent) report(ctx context.Context, rep api.ActionReport) uint64 {
	for i := 0; i < 60 && ctx.Err() == nil; i++ {
		index, err := a.c().Report(ctx, a.id, rep)
		if err == nil {
			return index
		}
		var enc *json.MarshalerError
		if errors.As(err, &enc) && rep.Attrs != nil {
			// Attributes without a JSON form (a driver's bug, a NaN):
			// the action fails, as the leader could not record them.
			rep.OK, rep.Attrs, rep.Error = false, nil, fmt.Sprintf("encode attributes: %v", enc.Err)
			continue
		}
		code := client.StatusCode(err)
		if code >= 400 && code < 500 && code != http.StatusTooManyRequests {
			// The item is no longer assigned (another leader resumed the
			// operation, or it was cancelled): nothing to do.
			a.log.Warn("report refused", "op", rep.OperationID, "address", rep.Address, "err", err)
			return 0
		}
		a.log.Warn("report failed; retrying", "op", rep.OperationID, "address", rep.Address, "err", err)
		if !sleep(ctx, 500*time.Millisecond) {
			return 0
		}
	}
	return 0
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
