package scheduler

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/planner"
)

const gib = 1 << 30

func agent(id string, cpus, memGiB, usedCPUs, usedMemGiB int64, images ...string) Agent {
	return Agent{
		ID:       id,
		Capacity: Resources{CPUs: cpus, Memory: memGiB * gib, Disk: 100 * gib},
		Used:     Resources{CPUs: usedCPUs, Memory: usedMemGiB * gib},
		Images:   images,
	}
}

// ratios sets an agent's allocation ratios.
func ratios(a Agent, cpu, mem float64) Agent {
	a.CPURatio, a.MemoryRatio = cpu, mem
	return a
}

func ids(cs []Candidate) string {
	var s []string
	for _, c := range cs {
		s = append(s, c.Agent)
	}
	return strings.Join(s, ",")
}

func TestPlace(t *testing.T) {
	small := Request{Stack: "web", Resources: Resources{CPUs: 2, Memory: 2 * gib, Disk: 10 * gib}}
	withImage := small
	withImage.Images = []string{"sha-debian"}
	down := agent("a0", 8, 16, 0, 0)
	down.Down = true
	tests := []struct {
		name    string
		req     Request
		agents  []Agent
		want    string // candidate ids in order
		wantErr []string
	}{
		{
			name:   "least loaded first",
			req:    small,
			agents: []Agent{agent("a1", 8, 16, 6, 4), agent("a2", 8, 16, 0, 0), agent("a3", 8, 16, 2, 2)},
			want:   "a2,a3,a1",
		},
		{
			name:   "load is the fullest dimension",
			req:    small,
			agents: []Agent{agent("a1", 8, 16, 0, 12), agent("a2", 8, 16, 4, 4)},
			want:   "a2,a1",
		},
		{
			name: "filters agents without room",
			req:  small,
			// a1's 2 CPUs are full at DefaultCPURatio (32 vCPUs used).
			agents: []Agent{agent("a1", 2, 16, 2*DefaultCPURatio-1, 0), agent("a2", 8, 3, 0, 2), agent("a3", 8, 16, 0, 0)},
			want:   "a3",
		},
		{
			name:   "down agents excluded",
			req:    small,
			agents: []Agent{down, agent("a1", 8, 16, 4, 8)},
			want:   "a1",
		},
		{
			name:   "image affinity beats a small load difference",
			req:    withImage,
			agents: []Agent{agent("a1", 8, 16, 0, 0), agent("a2", 8, 16, 2, 4, "sha-debian")},
			want:   "a2,a1",
		},
		{
			name:   "a much busier host loses despite the image",
			req:    withImage,
			agents: []Agent{agent("a1", 8, 16, 0, 0), agent("a2", 8, 16, 6, 12, "sha-debian")},
			want:   "a1,a2",
		},
		{
			name:   "load counts cpus against the ratio",
			req:    Request{Stack: "ci", Resources: Resources{CPUs: 20}},
			agents: []Agent{agent("a1", 2, 16, 0, 0), ratios(agent("a2", 2, 16, 0, 0), 32, 0)},
			want:   "a2,a1",
		},
		{
			name:   "a 2-core agent with cpu ratio 32 takes 50 one-vCPU guests",
			req:    Request{Stack: "ci", Resources: Resources{CPUs: 50, Memory: 50 * 64 << 20}},
			agents: []Agent{ratios(agent("a1", 2, 16, 0, 0), 32, 0)},
			want:   "a1",
		},
		{
			name:    "a 2-core agent at the default cpu ratio refuses 50 one-vCPU guests",
			req:     Request{Stack: "ci", Resources: Resources{CPUs: 50, Memory: 50 * 64 << 20}},
			agents:  []Agent{agent("a1", 2, 16, 0, 0)},
			wantErr: []string{"agent a1: cpus: 50 wanted, 32 free of 2 host CPUs × ratio 16"},
		},
		{
			name:    "40 vCPUs on a 2-core agent at the default ratio",
			req:     Request{Stack: "ci", Resources: Resources{CPUs: 40}},
			agents:  []Agent{agent("a1", 2, 16, 0, 0)},
			wantErr: []string{"agent a1: cpus: 40 wanted, 32 free of 2 host CPUs × ratio 16"},
		},
		{
			name:   "memory ratio 1.5 admits 1.5 times the memory",
			req:    Request{Stack: "big", Resources: Resources{CPUs: 1, Memory: 24 * gib}},
			agents: []Agent{ratios(agent("a1", 8, 16, 0, 0), 0, 1.5)},
			want:   "a1",
		},
		{
			name:    "memory ratio 1.5 and no more",
			req:     Request{Stack: "big", Resources: Resources{CPUs: 1, Memory: 25 * gib}},
			agents:  []Agent{ratios(agent("a1", 8, 16, 0, 0), 0, 1.5)},
			wantErr: []string{"agent a1: memory: 25 GiB wanted, 24 GiB free of 16 GiB host memory × ratio 1.5"},
		},
		{
			name:    "memory is not overcommitted by default",
			req:     Request{Stack: "big", Resources: Resources{CPUs: 1, Memory: 24 * gib}},
			agents:  []Agent{agent("a1", 8, 16, 0, 4)},
			wantErr: []string{"agent a1: memory: 24 GiB wanted, 12 GiB free of 16 GiB host memory × ratio 1"},
		},
		{
			name:    "disk is never overcommitted",
			req:     Request{Stack: "big", Resources: Resources{Disk: 101 * gib}},
			agents:  []Agent{ratios(agent("a1", 8, 16, 0, 0), 1000, 100)},
			wantErr: []string{"agent a1: disk: 101 GiB wanted, 100 GiB free of 100 GiB host disk"},
		},
		{
			name:   "ties broken by id",
			req:    small,
			agents: []Agent{agent("c", 8, 16, 0, 0), agent("a", 8, 16, 0, 0), agent("b", 8, 16, 0, 0)},
			want:   "a,b,c",
		},
		{
			name:   "pinned stack stays on its agent",
			req:    Request{Stack: "web", Pinned: "b"},
			agents: []Agent{agent("a", 8, 16, 0, 0), agent("b", 8, 16, 6, 12)},
			want:   "b",
		},
		{
			name:   "no valid host lists every reason",
			req:    small,
			agents: []Agent{down, agent("a1", 1, 16, DefaultCPURatio-1, 0), agent("a2", 8, 16, 8*DefaultCPURatio, 15)},
			wantErr: []string{
				`no valid host was found for stack "web"`,
				"agent a0: down",
				"agent a1: cpus: 2 wanted, 1 free of 1 host CPU × ratio 16;",
				"agent a2: cpus: 2 wanted, 0 free of 8 host CPUs × ratio 16, memory: 2 GiB wanted, 1 GiB free of 16 GiB host memory × ratio 1",
			},
		},
		{
			name:    "no agents",
			req:     small,
			wantErr: []string{"there are no agents"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Place(tt.req, tt.agents)
			if tt.wantErr != nil {
				var nv *NoValidHostError
				if !errors.As(err, &nv) {
					t.Fatalf("err = %v, want NoValidHostError", err)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ids(got) != tt.want {
				t.Errorf("order = %s, want %s (%+v)", ids(got), tt.want, got)
			}
		})
	}
}

func TestOffer(t *testing.T) {
	tests := []struct {
		name string
		a    Agent
		want Resources
	}{
		{"defaults", agent("a", 2, 16, 0, 0), Resources{CPUs: 32, Memory: 16 * gib, Disk: 100 * gib}},
		{"own ratios", ratios(agent("a", 2, 16, 0, 0), 32, 1.5), Resources{CPUs: 64, Memory: 24 * gib, Disk: 100 * gib}},
		{"rounded down", ratios(agent("a", 3, 16, 0, 0), 1.5, 0), Resources{CPUs: 4, Memory: 16 * gib, Disk: 100 * gib}},
		{"capped", ratios(Agent{Capacity: Resources{Memory: math.MaxInt64 / 2}}, 0, 100), Resources{CPUs: 0, Memory: math.MaxInt64}},
	}
	for _, tt := range tests {
		if got := tt.a.Offer(); got != tt.want {
			t.Errorf("%s: offer = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestPlaceIsDeterministic(t *testing.T) {
	agents := []Agent{agent("b", 8, 16, 1, 1), agent("a", 8, 16, 1, 1), agent("c", 4, 8, 0, 0)}
	first, _ := Place(Request{Stack: "s", Resources: Resources{CPUs: 1}}, agents)
	for i := 0; i < 20; i++ {
		rev := []Agent{agents[2], agents[0], agents[1]}
		got, _ := Place(Request{Stack: "s", Resources: Resources{CPUs: 1}}, rev)
		if ids(got) != ids(first) {
			t.Fatalf("order %s then %s", ids(first), ids(got))
		}
	}
}

func TestTry(t *testing.T) {
	cands := []Candidate{{Agent: "a"}, {Agent: "b"}, {Agent: "c"}, {Agent: "d"}}
	tests := []struct {
		name    string
		fail    map[string]bool
		want    string
		tried   string
		wantErr []string
	}{
		{name: "first takes it", want: "a", tried: "a"},
		{name: "refused then taken", fail: map[string]bool{"a": true}, want: "b", tried: "a,b"},
		{
			name:  "exhausted after three attempts",
			fail:  map[string]bool{"a": true, "b": true, "c": true, "d": true},
			tried: "a,b,c",
			wantErr: []string{
				`no valid host was found for stack "web"`,
				"agent a: create refused by a",
				"agent b: create refused by b",
				"agent c: create refused by c",
				"agent d: not tried: gave up after 3 attempts",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tried []string
			got, err := Try(context.Background(), "web", cands, func(_ context.Context, c Candidate) error {
				tried = append(tried, c.Agent)
				if tt.fail[c.Agent] {
					return fmt.Errorf("create refused by %s", c.Agent)
				}
				return nil
			})
			if strings.Join(tried, ",") != tt.tried {
				t.Errorf("tried %v, want %s", tried, tt.tried)
			}
			if tt.wantErr == nil {
				if err != nil || got.Agent != tt.want {
					t.Errorf("got %s, %v; want %s", got.Agent, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatal("want error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestScheduleListsFilteredAndFailed(t *testing.T) {
	down := agent("a0", 8, 16, 0, 0)
	down.Down = true
	agents := []Agent{down, agent("a1", 8, 16, 0, 0), agent("a2", 8, 16, 1, 1)}
	_, err := DefaultWeights.Schedule(context.Background(), Request{Stack: "web", Resources: Resources{CPUs: 1}}, agents,
		func(_ context.Context, c Candidate) error { return errors.New("libvirt: connection refused") })
	want := `no valid host was found for stack "web": agent a0: down; agent a1: libvirt: connection refused; agent a2: libvirt: connection refused`
	if err == nil || err.Error() != want {
		t.Errorf("err =\n  %v\nwant\n  %s", err, want)
	}
}

func TestHeartbeat(t *testing.T) {
	h := Heartbeat{Interval: 5 * time.Second, Missed: 3}
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		last time.Time
		down bool
	}{
		{"just now", now, false},
		{"exactly three intervals", now.Add(-15 * time.Second), false},
		{"past three intervals", now.Add(-16 * time.Second), true},
		{"never heard from", time.Time{}, true},
	}
	for _, tt := range tests {
		if got := h.Down(tt.last, now); got != tt.down {
			t.Errorf("%s: down = %v, want %v", tt.name, got, tt.down)
		}
	}
	agents := []Agent{agent("a", 8, 16, 0, 0), agent("b", 8, 16, 0, 0)}
	marked := h.Mark(agents, map[string]time.Time{"a": now, "b": now.Add(-time.Minute)}, now)
	if marked[0].Down || !marked[1].Down {
		t.Errorf("marked %+v", marked)
	}
	if agents[1].Down {
		t.Error("Mark changed its input")
	}
	cands, err := Place(Request{Stack: "s", Resources: Resources{CPUs: 1}}, marked)
	if err != nil || ids(cands) != "a" {
		t.Errorf("placed on %s (%v), want a only", ids(cands), err)
	}
}

func TestOrphaned(t *testing.T) {
	agents := []Agent{agent("up", 8, 16, 0, 0), {ID: "down", Down: true}}
	work := []Work{
		{ID: "w3", Agent: "down"},
		{ID: "w1", Agent: "down", Started: true},
		{ID: "w2", Agent: "up"},
		{ID: "w4", Agent: "gone"},
		{ID: "w0", Agent: "down"},
	}
	var got []string
	for _, w := range Orphaned(work, agents) {
		got = append(got, w.ID)
	}
	if strings.Join(got, ",") != "w0,w3,w4" {
		t.Errorf("orphaned = %v, want w0,w3,w4", got)
	}
}

func TestStackRequest(t *testing.T) {
	p := &planner.Result{Stack: "web", Changes: []planner.Change{
		{Address: "image.base", Kind: "image", Action: planner.Create, After: map[string]any{"source": "https://x/d.qcow2", "sha256": "abc"}},
		{Address: "image.alt", Kind: "image", Action: planner.Create, After: map[string]any{"source": "/srv/alt.qcow2"}},
		{Address: "server.web[0]", Kind: "server", Action: planner.Create, After: map[string]any{"cpus": int64(2), "memory": int64(gib), "disk": int64(4 * gib)}},
		{Address: "server.web[1]", Kind: "server", Action: planner.Replace, After: map[string]any{"cpus": int64(1), "memory": int64(gib)}},
		{Address: "server.old", Kind: "server", Action: planner.Delete, Before: map[string]any{"cpus": int64(8)}},
		{Address: "server.same", Kind: "server", Action: planner.NoOp, After: map[string]any{"cpus": int64(8)}},
		{Address: "volume.data", Kind: "volume", Action: planner.Create, After: map[string]any{"size": int64(2 * gib)}},
		{Address: "port_forward.https", Kind: "port_forward", Action: planner.Create, After: map[string]any{"host_port": int64(18443)}},
		{Address: "port_forward.http", Kind: "port_forward", Action: planner.Replace, After: map[string]any{"host_port": int64(18080)}},
		{Address: "port_forward.udp", Kind: "port_forward", Action: planner.Create, After: map[string]any{"host_port": int64(18080), "protocol": "udp"}},
		{Address: "port_forward.later", Kind: "port_forward", Action: planner.Create, After: map[string]any{"host_port": "(known after apply)"}},
		{Address: "port_forward.kept", Kind: "port_forward", Action: planner.NoOp, After: map[string]any{"host_port": int64(2222)}},
	}}
	got := StackRequest(p)
	want := Request{Stack: "web", Resources: Resources{CPUs: 3, Memory: 2 * gib, Disk: 6 * gib}, Images: []string{"/srv/alt.qcow2", "abc"},
		HostPorts: []int{18080, 18443}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

// TestPlaceHostPorts: an agent whose reported host-port policy does not
// allow a host port of the request is filtered out, saying which ports;
// an agent that reports no policy takes any.
func TestPlaceHostPorts(t *testing.T) {
	ranged := func(a Agent, lo, hi int, reserved ...int) Agent {
		a.HostPortsLo, a.HostPortsHi, a.ReservedPorts = lo, hi, reserved
		return a
	}
	agents := []Agent{
		ranged(agent("a1", 8, 16, 0, 0), 10000, 60000, 18775),
		ranged(agent("a2", 8, 16, 0, 0), 1024, 9999),
	}
	req := Request{Stack: "web", Resources: Resources{CPUs: 1}, HostPorts: []int{2222}}
	if c, err := Place(req, agents); err != nil || ids(c) != "a2" {
		t.Errorf("port 2222: %s %v, want a2", ids(c), err)
	}
	req.HostPorts = []int{22, 18775}
	_, err := Place(req, agents)
	want := `no valid host was found for stack "web": agent a1: host port 22 is outside its range 10000-60000, host port 18775 is kiln's own there; agent a2: host ports 22,18775 are outside its range 1024-9999`
	var nv *NoValidHostError
	if !errors.As(err, &nv) || err.Error() != want {
		t.Errorf("ports 22, 18775: %v\nwant %s", err, want)
	}
	// An agent without a policy (an older one) takes them.
	if c, err := Place(req, append(agents, agent("a3", 8, 16, 0, 0))); err != nil || ids(c) != "a3" {
		t.Errorf("with an agent without a policy: %s %v, want a3", ids(c), err)
	}
}

func BenchmarkPlace(b *testing.B) {
	var agents []Agent
	for i := 0; i < 500; i++ {
		agents = append(agents, agent(fmt.Sprintf("a%03d", i), 32, 128, int64(i%32), int64(i%100), "sha-debian"))
	}
	req := Request{Stack: "s", Resources: Resources{CPUs: 2, Memory: 4 * gib}, Images: []string{"sha-debian"}}
	for b.Loop() {
		if _, err := Place(req, agents); err != nil {
			b.Fatal(err)
		}
	}
}
