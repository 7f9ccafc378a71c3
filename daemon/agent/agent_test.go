package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/client"
	"github.com/kiln-dev/kiln/executors/server"
	"github.com/kiln-dev/kiln/internal/testwait"
)

// fakeServer hands out a fixed list of work items (again and again until
// each is reported) and records registrations, heartbeats and reports.
type fakeServer struct {
	mu         sync.Mutex
	items      []api.WorkItem
	reports    []api.ActionReport
	registered []api.AgentRegister
	heartbeats int
	lastHB     api.AgentHeartbeat
	reported   chan struct{}
	// maxIndex is the highest index a work query asked with.
	maxIndex uint64
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.Method == "POST" && r.URL.Path == "/v1/agents":
		var reg api.AgentRegister
		_ = json.NewDecoder(r.Body).Decode(&reg)
		f.registered = append(f.registered, reg)
		_ = json.NewEncoder(w).Encode(api.AgentInfo{ID: reg.ID})
	case r.Method == "POST" && r.URL.Path == "/v1/agents/a1/heartbeat":
		f.heartbeats++
		_ = json.NewDecoder(r.Body).Decode(&f.lastHB)
		w.WriteHeader(204)
	case r.Method == "GET" && r.URL.Path == "/v1/agents/a1/work":
		idx, _ := strconv.ParseUint(r.URL.Query().Get("index"), 10, 64)
		f.maxIndex = max(f.maxIndex, idx)
		// Every query answers the open items at once, as a stale follower
		// would before the reports are applied: the agent must not run an
		// item twice.
		open := []api.WorkItem{}
		for _, it := range f.items {
			done := false
			for _, rep := range f.reports {
				if rep.WorkID == it.WorkID {
					done = true
				}
			}
			if !done || idx < 3 {
				open = append(open, it)
			}
		}
		f.mu.Unlock()
		if len(open) == 0 || idx >= 3 {
			time.Sleep(20 * time.Millisecond)
		}
		f.mu.Lock()
		_ = json.NewEncoder(w).Encode(api.WorkResponse{Items: open, Index: idx + 1})
	case r.Method == "POST" && r.URL.Path == "/v1/agents/a1/results":
		var rep api.ActionReport
		_ = json.NewDecoder(r.Body).Decode(&rep)
		f.reports = append(f.reports, rep)
		w.WriteHeader(204)
		select {
		case f.reported <- struct{}{}:
		default:
		}
	default:
		w.WriteHeader(404)
		_ = json.NewEncoder(w).Encode(api.Error{Error: "no route " + r.URL.Path})
	}
}

func item(workID string, op api.Op, addr string, attrs map[string]any) api.WorkItem {
	return api.WorkItem{WorkID: workID, OperationID: "op-1", Stack: "web", Address: addr, Kind: "network", Op: op, Attrs: attrs, Attempt: 1}
}

// runAgentUntil runs an agent with cfg (its client, heartbeat interval and
// wait set here) against f until cond holds (checked under f.mu), then
// stops it and fails t when Run returned an error.
func runAgentUntil(t *testing.T, f *fakeServer, cfg Config, what string, cond func() bool) {
	t.Helper()
	srv := httptest.NewServer(f)
	defer srv.Close()
	cfg.Client, _ = client.New(client.Config{Addr: srv.URL})
	cfg.HeartbeatInterval, cfg.Wait = 10*time.Millisecond, time.Second
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	testwait.For(t, 30*time.Second, what, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return cond()
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestAgentRunsEachItemOnceAndReports(t *testing.T) {
	f := &fakeServer{reported: make(chan struct{}, 16), items: []api.WorkItem{
		item("w1", "create", "network.lan", map[string]any{"cidr": "10.0.0.0/24", "mtu": int64(1500)}),
		item("w2", "create", "network.dmz", map[string]any{"cidr": "10.1.0.0/24"}),
	}}
	dir := t.TempDir()
	mem := NewMemory(dir, 0)
	// Both reports, and queries past the stale answers (which hand out the
	// items again up to index 3).
	runAgentUntil(t, f, Config{ID: "a1", DataDir: dir, Drivers: mem.Drivers()}, "two reports and work queries past index 5",
		func() bool { return len(f.reports) >= 2 && f.maxIndex >= 5 })
	for _, addr := range []string{"network.lan", "network.dmz"} {
		if n := mem.D.Calls("network", addr, "create"); n != 1 {
			t.Errorf("%s created %d times, want 1", addr, n)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.registered) == 0 || f.registered[0].Capacity.CPUs == 0 || f.registered[0].Capacity.MemoryBytes == 0 {
		t.Errorf("registration without capacity: %+v", f.registered)
	}
	var lan *api.ActionReport
	for i := range f.reports {
		if !f.reports[i].OK {
			t.Errorf("report not ok: %+v", f.reports[i])
		}
		if f.reports[i].WorkID == "w1" {
			lan = &f.reports[i]
		}
	}
	attrs := lan.Attrs
	if attrs["mtu"] != int64(1500) || attrs["gateway"] != "10.0.0.1" || lan.PhysicalName == "" {
		t.Errorf("report attributes %v (physical %q)", attrs, lan.PhysicalName)
	}
	calls, err := ReadMemoryCalls(dir)
	if err != nil || len(calls) != 2 {
		t.Errorf("calls file: %v, %v", calls, err)
	}
}

// TestAgentReportsRatiosAndAccel: the configured ratios and accelerator
// go with the measured capacity in the registration and every heartbeat;
// ratios not set are reported as the scheduler's defaults.
func TestAgentReportsRatiosAndAccel(t *testing.T) {
	tests := []struct {
		name     string
		cpu, mem float64
		want     [2]float64
	}{
		{"set", 32, 1.5, [2]float64{32, 1.5}},
		{"not set", 0, 0, [2]float64{16, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeServer{}
			dir := t.TempDir()
			runAgentUntil(t, f, Config{ID: "a1", DataDir: dir, Drivers: NewMemory(dir, 0).Drivers(),
				CPURatio: tt.cpu, MemoryRatio: tt.mem, Accel: AccelTCG, AccelReason: "/dev/kvm does not exist."},
				"two heartbeats", func() bool { return f.heartbeats >= 2 })
			f.mu.Lock()
			defer f.mu.Unlock()
			for what, capa := range map[string]api.Capacity{"registration": f.registered[0].Capacity, "heartbeat": f.lastHB.Capacity} {
				if capa.CPUs == 0 || capa.MemoryBytes == 0 || capa.CPURatio != tt.want[0] || capa.MemoryRatio != tt.want[1] ||
					capa.Accel != AccelTCG || capa.AccelReason != "/dev/kvm does not exist." {
					t.Errorf("%s capacity = %+v, want ratios %v and tcg", what, capa, tt.want)
				}
				// The memory drivers forward nothing on the host: no
				// host-port policy, so no plan-time range check.
				if capa.HostPortsKnown() || capa.ReservedPorts != nil {
					t.Errorf("%s capacity of memory drivers = %+v, want no host ports", what, capa)
				}
			}
		})
	}
}

// TestCapacityReportsHostPorts: the capacity an agent registers and
// heartbeats with carries the real drivers' host-port policy (the range,
// the reserved ports inside it, sorted and once each); drivers that are not
// the real ones report none.
func TestCapacityReportsHostPorts(t *testing.T) {
	dir := t.TempDir()
	set := &Real{srv: &server.Driver{}}
	if err := set.SetPolicy(HostPolicy{HostPorts: PortRange{Lo: 4000, Hi: 9000}, ReservedPorts: []int{8775}}); err != nil {
		t.Fatal(err)
	}
	// 30000 is outside the range: refused anyway, not reported.
	ReserveHostPorts(set.Drivers(), 7400, 30000, 4646, 8775)
	tests := []struct {
		name     string
		d        Drivers
		lo, hi   int
		reserved []int
	}{
		{"policy set", set.Drivers(), 4000, 9000, []int{4646, 7400, 8775}},
		{"remote default", (&Real{srv: &server.Driver{}}).Drivers(), 10000, 60000, nil},
		{"memory drivers", NewMemory("", 0).Drivers(), 0, 0, nil},
	}
	for _, tt := range tests {
		c := Capacity(Config{DataDir: dir, Drivers: tt.d})
		if c.HostPortsLo != tt.lo || c.HostPortsHi != tt.hi || fmt.Sprint(c.ReservedPorts) != fmt.Sprint(tt.reserved) {
			t.Errorf("%s: host ports %d-%d reserved %v, want %d-%d reserved %v", tt.name, c.HostPortsLo, c.HostPortsHi, c.ReservedPorts, tt.lo, tt.hi, tt.reserved)
		}
		if err := c.CheckHostPorts("capacity"); err != nil {
			t.Errorf("%s: the servers would refuse the capacity: %v", tt.name, err)
		}
	}
}

func TestAccelOfDrivers(t *testing.T) {
	tests := []struct {
		name      string
		d         Drivers
		want, why string
	}{
		{"kvm domains", realWithAccel("kvm", "the probe guest ran under KVM"), AccelKVM, "the probe guest ran"},
		{"qemu domains", realWithAccel("qemu", "KVM cannot run a guest here"), AccelTCG, "KVM cannot"},
		{"memory driver", NewMemory("", 0).Drivers(), "", ""},
	}
	for _, tt := range tests {
		accel, why := Accel(tt.d)
		if accel != tt.want || !strings.HasPrefix(why, tt.why) {
			t.Errorf("%s: accel %q (%q), want %q (%q...)", tt.name, accel, why, tt.want, tt.why)
		}
	}
}

func TestAgentConfigChecked(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"cpu ratio over 1000", func(c *Config) { c.CPURatio = 1001 }, "agent: cpu ratio 1001: want a number above 0 and at most 1000"},
		{"negative cpu ratio", func(c *Config) { c.CPURatio = -2 }, "agent: cpu ratio -2: want a number above 0 and at most 1000"},
		{"memory ratio over 100", func(c *Config) { c.MemoryRatio = 150 }, "agent: memory ratio 150: want a number above 0 and at most 100"},
		{"unknown accelerator", func(c *Config) { c.Accel = "hvf" }, `agent: accelerator "hvf": want kvm or tcg`},
		{"at the bounds", func(c *Config) { c.CPURatio, c.MemoryRatio, c.Accel = 1000, 100, AccelKVM }, ""},
	}
	for _, tt := range tests {
		cfg := Config{ID: "a1", DataDir: t.TempDir(), Servers: []string{"127.0.0.1:1"}, Drivers: NewMemory("", 0).Drivers()}
		tt.edit(&cfg)
		_, err := New(cfg)
		if got := fmt.Sprint(err); (tt.want == "" && err != nil) || (tt.want != "" && got != tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestAgentKeepsItsID(t *testing.T) {
	dir := t.TempDir()
	mem := NewMemory("", 0)
	a, err := New(Config{DataDir: dir, Servers: []string{"127.0.0.1:1"}, Drivers: mem.Drivers()})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{DataDir: dir, Servers: []string{"127.0.0.1:1"}, Drivers: mem.Drivers()})
	if err != nil {
		t.Fatal(err)
	}
	if a.ID() == "" || a.ID() != b.ID() {
		t.Fatalf("ids %q and %q, want the same persisted id", a.ID(), b.ID())
	}
}

func realWithAccel(domainType, why string) Drivers {
	d := &server.Driver{}
	d.SetAccel(domainType, why)
	return (&Real{srv: d}).Drivers()
}
