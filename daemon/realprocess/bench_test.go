package realprocess

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/internal/testwait"
)

// The benchmarks run against three kiln server processes on loopback. A
// committed write is a token creation (one raft command, acknowledged once
// a quorum has it on disk). Run them with a fixed count, for example:
//
//	go test -run ^$ -bench . -benchtime 2000x ./daemon/realprocess
//	go test -run ^$ -bench Failover -benchtime 5x ./daemon/realprocess

func benchWrite(b *testing.B, c *cluster, skip ...int) func(i int64) error {
	cl := c.client(skip...)
	return func(i int64) error {
		_, err := cl.CreateToken(context.Background(), api.TokenRequest{Project: "bench", Role: "reader", Name: fmt.Sprint(i)})
		return err
	}
}

// BenchmarkWritesSerial: one client, one write at a time, sent to a
// follower half of the time (forwarded) — here always to the leader.
func BenchmarkWritesSerial(b *testing.B) {
	c := newCluster(b)
	leader := c.leader()
	// A client that knows only the leader: no forwarding hop.
	write := benchWrite(b, c, otherThan(leader)...)
	b.ResetTimer()
	m := c.startMeasure()
	for i := 0; i < b.N; i++ {
		if err := write(int64(i)); err != nil {
			b.Fatal(err)
		}
	}
	c.report(b, m)
}

// BenchmarkWritesConcurrent: 64 clients writing at once (the leader's
// store proposes what arrives together as one log entry).
func BenchmarkWritesConcurrent(b *testing.B) {
	c := newCluster(b)
	leader := c.leader()
	benchConcurrent(b, c, benchWrite(b, c, otherThan(leader)...))
}

// BenchmarkWritesForwardedConcurrent: the same 64 clients, but they know
// only the two followers, which forward every write to the leader.
func BenchmarkWritesForwardedConcurrent(b *testing.B) {
	c := newCluster(b)
	benchConcurrent(b, c, benchWrite(b, c, c.leader()))
}

func benchConcurrent(b *testing.B, c *cluster, write func(int64) error) {
	var n atomic.Int64
	b.SetParallelism(32) // 32 x GOMAXPROCS(2) = 64 goroutines
	b.ResetTimer()
	m := c.startMeasure()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := write(n.Add(1)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	c.report(b, m)
}

// measure is what report compares with: when the timed writes started,
// the CPU time the servers and this process had used, and the leader's
// raft index.
type measure struct {
	start       time.Time
	server, own time.Duration
	index       uint64
}

func (c *cluster) startMeasure() measure {
	return measure{start: time.Now(), server: c.serverCPU(), own: ownCPU(), index: c.leaderIndex()}
}

// report gives the writes per second; the CPU time the three server
// processes spent per write (on a machine whose cores are shared, it says
// what a change cost or saved when the rate is noisy); the CPU time of the
// benchmark's own clients per write (they share the cores with the
// servers); and the writes per raft log entry (group commit at work).
func (c *cluster) report(b *testing.B, m measure) {
	b.ReportMetric(float64(b.N)/time.Since(m.start).Seconds(), "writes/s")
	if used := c.serverCPU() - m.server; used > 0 {
		b.ReportMetric(float64(used.Microseconds())/float64(b.N), "server-cpu-us/write")
	}
	if used := ownCPU() - m.own; used > 0 {
		b.ReportMetric(float64(used.Microseconds())/float64(b.N), "client-cpu-us/write")
	}
	if idx := c.leaderIndex(); idx > m.index {
		b.ReportMetric(float64(b.N)/float64(idx-m.index), "writes/entry")
	}
}

// leaderIndex is the raft index the leader has applied, 0 when unknown.
func (c *cluster) leaderIndex() uint64 {
	i := c.leader()
	if i < 0 {
		return 0
	}
	h, err := c.client().HealthOf(context.Background(), c.nodes[i].http)
	if err != nil {
		return 0
	}
	return h.Index
}

// ownCPU is the user and system CPU time of this process.
func ownCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// serverCPU sums the user and system CPU time of the running servers
// (/proc/PID/stat, in clock ticks of 10ms); 0 when it cannot be read.
func (c *cluster) serverCPU() time.Duration {
	var total time.Duration
	for _, n := range c.nodes {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n.p.cmd.Process.Pid))
		if err != nil {
			return 0
		}
		// The fields after the command name, which is in parentheses.
		f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
		if len(f) < 13 {
			return 0
		}
		utime, _ := strconv.ParseInt(f[11], 10, 64)
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(utime+stime) * 10 * time.Millisecond
	}
	return total
}

// BenchmarkFailover: SIGKILL the leader, time until a write through the
// two others is committed (default raft timeouts); the killed server is
// restarted (untimed) before the next round.
func BenchmarkFailover(b *testing.B) {
	c := newCluster(b)
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		leader := c.leader()
		for leader < 0 {
			time.Sleep(50 * time.Millisecond)
			leader = c.leader()
		}
		write := benchWrite(b, c, leader)
		killed := time.Now()
		c.nodes[leader].p.kill()
		if !testwait.Until(time.Minute, 0, func() bool { return write(int64(i)) == nil }) {
			b.Fatal("no leader accepted a write within a minute")
		}
		d := time.Since(killed)
		total += d
		b.StopTimer()
		c.startNode(leader)
		testwait.For(b, 60*time.Second, "the killed server back", func() bool {
			h, err := c.client().HealthOf(context.Background(), c.nodes[leader].http)
			return err == nil && h.NodeID != ""
		})
		time.Sleep(time.Second) // let it catch up
		b.StartTimer()
	}
	b.ReportMetric(total.Seconds()*1000/float64(b.N), "ms/failover")
}

func otherThan(i int) []int {
	var out []int
	for k := 0; k < 3; k++ {
		if k != i {
			out = append(out, k)
		}
	}
	return out
}
