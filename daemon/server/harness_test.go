package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/api"
	kclient "github.com/kiln-dev/kiln/client"
	"github.com/kiln-dev/kiln/daemon/agent"
	"github.com/kiln-dev/kiln/daemon/scheduler"
	"github.com/kiln-dev/kiln/internal/testnet"
	"github.com/kiln-dev/kiln/internal/testwait"
)

func testConfig(t *testing.T, dir string) Config {
	return Config{
		DataDir: dir, HTTPAddr: "127.0.0.1:0", RaftAddr: testnet.FreeAddr(t),
		HeartbeatTimeout: 300 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond,
		LeaderLeaseTimeout: 150 * time.Millisecond, CommitTimeout: 5 * time.Millisecond,
		AgentHeartbeat: scheduler.Heartbeat{Interval: 100 * time.Millisecond, Missed: 100},
		TTLInterval:    50 * time.Millisecond,
	}
}

// single starts a bootstrapped one-node server (change, when not nil, edits
// its config first), waits until it serves, and returns it with a client
// holding the management token.
func single(t *testing.T, change func(*Config)) (*Server, client) {
	t.Helper()
	cfg := testConfig(t, t.TempDir())
	cfg.Bootstrap = true
	if change != nil {
		change(&cfg)
	}
	s := startServer(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return s, client{t: t, addr: s.Addr(), token: s.ManagementToken()}
}

func startServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return s
}

// client is a minimal API client for the tests.
type client struct {
	t     *testing.T
	addr  string
	token string
}

func (c client) do(method, path string, body any) (int, []byte) {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = bytes.NewReader([]byte(b))
	default:
		data, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, "http://"+c.addr+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// must does a request, checks the status and decodes the answer into v.
func (c client) must(method, path string, body any, want int, v any) {
	c.t.Helper()
	code, out := c.do(method, path, body)
	if code != want {
		c.t.Fatalf("%s %s: status %d, want %d: %s", method, path, code, want, out)
	}
	if v != nil {
		if err := json.Unmarshal(out, v); err != nil {
			c.t.Fatalf("%s %s: decode %s: %v", method, path, out, err)
		}
	}
}

// waitOp follows an operation with blocking queries until it is final.
func (c client) waitOp(id string) api.Operation {
	c.t.Helper()
	var index uint64
	for {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/v1/operations/%s?index=%d&wait=10s", c.addr, id, index), nil)
		req.Header.Set("Authorization", "Bearer "+c.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			c.t.Fatal(err)
		}
		var op api.Operation
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if resp.StatusCode != http.StatusOK {
			c.t.Fatalf("operation %s: %d %s", id, resp.StatusCode, out)
		}
		if err := json.Unmarshal(out, &op); err != nil {
			c.t.Fatal(err)
		}
		switch op.Status {
		case "complete", "failed", "cancelled":
			return op
		}
		fmt.Sscan(resp.Header.Get(api.IndexHeader), &index)
	}
}

// startCluster starts three servers on loopback with raft on disk and
// waits until all are voters that know the leader's HTTP address.
func startCluster(t *testing.T) (servers []*Server, mgmt string) {
	t.Helper()
	s1, mc := single(t, nil)
	mgmt = s1.ManagementToken()
	servers = []*Server{s1}
	for range 2 {
		c := testConfig(t, t.TempDir())
		c.Join, c.JoinToken = s1.Addr(), mgmt
		servers = append(servers, startServer(t, c))
	}
	testwait.ForNil(t, 60*time.Second, "the cluster to form", func() error {
		var peers []api.Peer
		mc.must("GET", "/v1/operator/raft/peers", nil, http.StatusOK, &peers)
		ready := len(peers) == 3
		for _, s := range servers {
			ready = ready && s.leaderHTTP() != "" && s.store.Ready()
		}
		if !ready {
			return fmt.Errorf("peers %+v", peers)
		}
		return nil
	})
	return servers, mgmt
}

// addrs returns the HTTP addresses of servers.
func addrs(servers []*Server) []string {
	var out []string
	for _, s := range servers {
		out = append(out, s.Addr())
	}
	return out
}

// mkToken makes a token with c (an admin) and returns it.
func mkToken(t *testing.T, c client, req api.TokenRequest) api.TokenCreated {
	t.Helper()
	var tc api.TokenCreated
	c.must("POST", "/v1/tokens", req, http.StatusCreated, &tc)
	return tc
}

// mkExpired makes a token of req with a TTL of 1ms with c, waits until
// that has passed and returns its secret.
func mkExpired(t *testing.T, c client, req api.TokenRequest) string {
	t.Helper()
	req.TTL = "1ms"
	tc := mkToken(t, c, req)
	testwait.For(t, 5*time.Second, "a 1ms token to expire", func() bool { return time.Now().After(tc.Expires) })
	return tc.Secret
}

// as returns a client of c's server holding a new token of project with
// role, made with c (an admin).
func (c client) as(project, role string) client {
	c.t.Helper()
	return client{t: c.t, addr: c.addr, token: mkToken(c.t, c, api.TokenRequest{Project: project, Role: role}).Secret}
}

// memAgent is a kiln agent (daemon/agent, the code `kiln agent
// -driver=memory` runs) on the in-memory driver set: nothing real is made.
// Faults and counts go through its memory driver (m.D: FailOn, Block,
// Calls).
type memAgent struct {
	*agent.Memory
	t       *testing.T
	cfg     agent.Config
	host    api.Capacity
	cancel  context.CancelFunc
	done    chan struct{}
	err     error
	stopped bool
}

// agentOpt changes how startAgent runs an agent.
type agentOpt func(*memAgent)

// inDir keeps the agent's data (id, credential) in dir.
func inDir(dir string) agentOpt { return func(a *memAgent) { a.cfg.DataDir = dir } }

// onHost makes the agent report the host size and host-port policy of h
// (the memory driver has no host to measure; see hostTransport).
func onHost(h api.Capacity) agentOpt { return func(a *memAgent) { a.host = h } }

// withConfig edits the agent's configuration.
func withConfig(change func(*agent.Config)) agentOpt {
	return func(a *memAgent) { change(&a.cfg) }
}

// bigHost is the host an agent reports by default: room for anything a
// test places.
var bigHost = api.Capacity{CPUs: 64, MemoryBytes: 1 << 40, DiskBytes: 1 << 44}

// startAgent runs an agent named id that registers with token and talks to
// servers, until the test ends or stop is called.
func startAgent(t *testing.T, id, token string, servers []string, opts ...agentOpt) *memAgent {
	t.Helper()
	a := &memAgent{t: t, host: bigHost, cfg: agent.Config{
		ID: id, Servers: servers, Token: token,
		HeartbeatInterval: 100 * time.Millisecond, Wait: 2 * time.Second,
	}}
	for _, o := range opts {
		o(a)
	}
	if a.cfg.DataDir == "" {
		a.cfg.DataDir = t.TempDir()
	}
	if a.Memory == nil {
		a.Memory = agent.NewMemory("", 0)
	}
	a.start()
	t.Cleanup(a.stop)
	return a
}

// agentOn runs an agent named id on s with the management token.
func agentOn(t *testing.T, s *Server, id string, opts ...agentOpt) *memAgent {
	t.Helper()
	return startAgent(t, id, s.ManagementToken(), []string{s.Addr()}, opts...)
}

func (a *memAgent) start() {
	a.t.Helper()
	cfg := a.cfg
	cfg.Drivers = a.Memory.Drivers()
	tr := &hostTransport{host: a.host, registered: make(chan struct{}, 1)}
	c, err := kclient.New(kclient.Config{Servers: cfg.Servers, Token: cfg.Token, Rounds: 3,
		HTTPClient: &http.Client{Transport: tr, CheckRedirect: keepAuth}})
	if err != nil {
		a.t.Fatal(err)
	}
	cfg.Client = c
	ag, err := agent.New(cfg)
	if err != nil {
		a.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel, a.done, a.err, a.stopped = cancel, make(chan struct{}), nil, false
	go func() { defer close(a.done); a.err = ag.Run(ctx) }()
	// Registered (with the capacity it reports), or stopped trying.
	select {
	case <-tr.registered:
	case <-a.done:
	case <-time.After(30 * time.Second):
		a.t.Fatalf("agent %s did not register in 30s", cfg.ID)
	}
}

// stop stops the agent and waits until it returned.
func (a *memAgent) stop() {
	a.cancel()
	<-a.done
	a.stopped = true
}

// restart stops the agent and starts it again with the same id, data
// directory and objects, edited by opts.
func (a *memAgent) restart(opts ...agentOpt) {
	a.t.Helper()
	if !a.stopped {
		a.stop()
	}
	for _, o := range opts {
		o(a)
	}
	a.start()
}

// runErr waits until the agent's Run returned and returns its error.
func (a *memAgent) runErr() error {
	<-a.done
	return a.err
}

// keepAuth follows redirects (to the leader) with the token.
func keepAuth(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return fmt.Errorf("stopped after %d redirects", len(via))
	}
	req.Header.Set("Authorization", via[0].Header.Get("Authorization"))
	return nil
}

// hostTransport carries an agent's requests and puts the test's host into
// the capacity it reports at registration and in heartbeats: its CPUs,
// memory and disk, and its host-port policy when host has one. The
// agent's own ratios and accelerator pass unchanged. A registration that
// succeeds is signalled on registered.
type hostTransport struct {
	host       api.Capacity
	registered chan struct{}
}

func (h *hostTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodPost || (req.URL.Path != "/v1/agents" && !strings.HasSuffix(req.URL.Path, "/heartbeat")) || req.Body == nil {
		return http.DefaultTransport.RoundTrip(req)
	}
	req, err := h.withHost(req)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil && req.URL.Path == "/v1/agents" && resp.StatusCode < 300 {
		select {
		case h.registered <- struct{}{}:
		default:
		}
	}
	return resp, err
}

// withHost returns req with h.host in the capacity of its body.
func (h *hostTransport) withHost(req *http.Request) (*http.Request, error) {
	data, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	var body map[string]json.RawMessage
	var capa api.Capacity
	if err := json.Unmarshal(data, &body); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(body["capacity"], &capa); err != nil {
		return nil, err
	}
	capa.CPUs, capa.MemoryBytes, capa.DiskBytes = h.host.CPUs, h.host.MemoryBytes, h.host.DiskBytes
	if h.host.HostPortsHi != 0 {
		capa.HostPortsLo, capa.HostPortsHi, capa.ReservedPorts = h.host.HostPortsLo, h.host.HostPortsHi, h.host.ReservedPorts
	}
	if body["capacity"], err = json.Marshal(capa); err != nil {
		return nil, err
	}
	if data, err = json.Marshal(body); err != nil {
		return nil, err
	}
	req = req.Clone(req.Context())
	req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(data)), int64(len(data))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
	return req, nil
}

// inCall returns a condition that holds while a goroutine of the test
// binary is in fn, a function or method expression such as
// (*Server).planSlot (no other test of this package runs at the same
// time). The name comes from fn itself, so a rename breaks the build here
// rather than making a wait time out.
func inCall(fn any) func() bool {
	frame := []byte(runtime.FuncForPC(reflect.ValueOf(fn).Pointer()).Name() + "(")
	return func() bool {
		buf := make([]byte, 1<<16)
		for {
			n := runtime.Stack(buf, true)
			if n < len(buf) {
				return bytes.Contains(buf[:n], frame)
			}
			buf = make([]byte, 2*len(buf))
		}
	}
}

// mainHCL is a template upload of one file, main.hcl, holding src.
func mainHCL(src string) *api.Template { return bundle(map[string]string{"main.hcl": src}) }

// run posts req to the route ("apply" or "destroy") of stack, wants 202,
// and follows the operation until it is final.
func (c client) run(route, stack string, req any) api.Operation {
	c.t.Helper()
	var ref api.OperationRef
	c.must("POST", "/v1/stacks/"+stack+"/"+route, req, http.StatusAccepted, &ref)
	return c.waitOp(ref.OperationID)
}

// complete is run that fails the test unless the operation completed.
func (c client) complete(route, stack string, req any) api.Operation {
	c.t.Helper()
	op := c.run(route, stack, req)
	if op.Status != "complete" {
		c.t.Fatalf("%s %s: %s %s %+v", route, stack, op.Status, op.Error, op.Actions)
	}
	return op
}

// bundle makes a template upload from file contents.
func bundle(files map[string]string) *api.Template {
	b := api.Bundle{}
	for k, v := range files {
		b[k] = []byte(v)
	}
	return &api.Template{Bundle: b}
}

const smallTemplate = `
network "lan" {
  cidr = "10.40.0.0/24"
}

volume "data" {
  count = 2
  size  = "1GiB"
}

output "gateway" {
  value = network.lan.gateway
}

output "volume_ids" {
  value = volume.data[*].id
}
`

func itoa(n uint64) string { return fmt.Sprint(n) }

func filepathInfo(path string) (os.FileMode, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Mode().Perm(), nil
}
