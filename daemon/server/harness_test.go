package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/daemon/scheduler"
	"github.com/kiln-dev/kiln/executors/memdriver"
)

// freePort returns a loopback address with a port nobody listens on.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func testConfig(t *testing.T, dir string) Config {
	return Config{
		DataDir: dir, HTTPAddr: "127.0.0.1:0", RaftAddr: freePort(t),
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

// testAgent is a minimal agent loop: it registers, heartbeats, fetches work
// with blocking queries from any of the servers and runs it on memdriver.
type testAgent struct {
	t       *testing.T
	id      string
	token   string
	driver  *memdriver.Driver
	mu      sync.Mutex
	servers []string
	seen    map[string]bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func startAgent(t *testing.T, id, token string, d *memdriver.Driver, servers ...string) *testAgent {
	return startAgentWith(t, id, token, d, api.Capacity{}, servers...)
}

// startAgentWith starts an agent that registers with capa's host-port
// policy (and a large host).
func startAgentWith(t *testing.T, id, token string, d *memdriver.Driver, capa api.Capacity, servers ...string) *testAgent {
	ctx, cancel := context.WithCancel(context.Background())
	a := &testAgent{t: t, id: id, token: token, driver: d, servers: servers, seen: map[string]bool{}, cancel: cancel}
	capa.CPUs, capa.MemoryBytes, capa.DiskBytes = 64, 1<<40, 1<<44
	a.post(ctx, "/v1/agents", api.AgentRegister{ID: id, Address: "test", Capacity: capa})
	a.wg.Add(3)
	go func() { defer a.wg.Done(); a.heartbeat(ctx) }()
	go func() { defer a.wg.Done(); a.loop(ctx) }()
	go func() { defer a.wg.Done(); a.hostLoop(ctx) }()
	t.Cleanup(a.stop)
	return a
}

func (a *testAgent) stop() {
	a.cancel()
	a.wg.Wait()
}

// post sends to the servers in turn until one accepts (2xx or a 4xx that
// retrying cannot fix).
func (a *testAgent) post(ctx context.Context, path string, body any) {
	data, _ := json.Marshal(body)
	for i := 0; ctx.Err() == nil; i++ {
		srv := a.servers[i%len(a.servers)]
		req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+srv+path, bytes.NewReader(data))
		req.Header.Set("Authorization", "Bearer "+a.token)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (a *testAgent) heartbeat(ctx context.Context) {
	for ctx.Err() == nil {
		a.post(ctx, "/v1/agents/"+a.id+"/heartbeat", api.AgentHeartbeat{})
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (a *testAgent) loop(ctx context.Context) {
	a.poll(ctx, "work", func(it api.WorkItem) {
		a.mu.Lock()
		seen := a.seen[it.WorkID]
		a.seen[it.WorkID] = true
		a.mu.Unlock()
		if seen {
			return
		}
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			rep := a.run(ctx, it)
			a.post(context.WithoutCancel(ctx), "/v1/agents/"+a.id+"/results", rep)
		}()
	})
}

// hostLoop answers the leader's refresh questions (the only host work a
// plan asks) from memdriver.
func (a *testAgent) hostLoop(ctx context.Context) {
	pollRoute(ctx, a, "hostwork", func(it api.HostRequest) {
		if it.Op == api.HostRefresh && it.Refresh != nil {
			a.post(ctx, "/v1/agents/"+a.id+"/hostresults", a.refresh(ctx, it))
		}
	})
}

// poll follows one of the agent's blocking work routes ("work" or
// "hostwork") on the servers in turn, staying on one that answers, and
// hands every item to handle.
func (a *testAgent) poll(ctx context.Context, route string, handle func(api.WorkItem)) {
	pollRoute(ctx, a, route, handle)
}

// pollRoute is poll for the items of either route (api.WorkItem or
// api.HostRequest).
func pollRoute[T any](ctx context.Context, a *testAgent, route string, handle func(T)) {
	var index uint64
	for i := 0; ctx.Err() == nil; i++ {
		srv := a.servers[i%len(a.servers)]
		req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://%s/v1/agents/%s/%s?index=%d&wait=1s", srv, a.id, route, index), nil)
		req.Header.Set("Authorization", "Bearer "+a.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		var wr struct {
			Items []T    `json:"items"`
			Index uint64 `json:"index"`
		}
		err = json.NewDecoder(resp.Body).Decode(&wr)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		i-- // stay on a server that answers
		index = wr.Index
		for _, it := range wr.Items {
			handle(it)
		}
	}
}

func (a *testAgent) refresh(ctx context.Context, it api.HostRequest) api.HostAnswer {
	rep := api.HostAnswer{Op: it.Op, WorkID: it.WorkID}
	out := &api.RefreshAnswer{}
	for _, res := range it.Refresh.Resources {
		var obj memdriver.Object
		var exists bool
		var err error
		if res.ID != "" {
			obj, exists, err = a.driver.ReadID(ctx, res.Kind, res.Address, res.ID)
		} else {
			obj, exists, err = a.driver.Read(ctx, res.Kind, res.Address)
		}
		if err != nil {
			rep.Error = err.Error()
			return rep
		}
		r := api.ResourceRead{Address: res.Address, Exists: exists}
		if exists {
			r.Attrs = obj.Values()
		}
		out.Resources = append(out.Resources, r)
	}
	rep.Refresh, rep.OK = out, true
	return rep
}

func (a *testAgent) run(ctx context.Context, it api.WorkItem) api.ActionReport {
	rep := api.ActionReport{OperationID: it.OperationID, Address: it.Address, Op: it.Op, WorkID: it.WorkID}
	attrs := it.Attrs
	var err error
	var obj memdriver.Object
	exists := true
	switch it.Op {
	case "create":
		obj, err = a.driver.Create(ctx, it.Kind, it.Address, it.Generation, attrs)
	case "update":
		obj, err = a.driver.Update(ctx, it.Kind, it.Address, attrs)
	case "delete":
		err = a.driver.Delete(ctx, it.Kind, it.Address, it.ID)
		exists = false
	case "read":
		if it.ID != "" {
			obj, exists, err = a.driver.ReadID(ctx, it.Kind, it.Address, it.ID)
		} else {
			obj, exists, err = a.driver.Read(ctx, it.Kind, it.Address)
		}
	}
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	rep.OK, rep.Exists = true, exists
	if exists {
		rep.Attrs = obj.Values()
		rep.PhysicalName = obj.ID
	}
	return rep
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
