package realprocess

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/daemon/api"
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
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if err := write(int64(i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
}

// BenchmarkWritesConcurrent: 64 clients writing at once (the leader's
// store proposes what arrives together as one log entry).
func BenchmarkWritesConcurrent(b *testing.B) {
	c := newCluster(b)
	leader := c.leader()
	benchConcurrent(b, benchWrite(b, c, otherThan(leader)...))
}

// BenchmarkWritesForwardedConcurrent: the same 64 clients, but they know
// only the two followers, which forward every write to the leader.
func BenchmarkWritesForwardedConcurrent(b *testing.B) {
	c := newCluster(b)
	benchConcurrent(b, benchWrite(b, c, c.leader()))
}

func benchConcurrent(b *testing.B, write func(int64) error) {
	var n atomic.Int64
	b.SetParallelism(32) // 32 x GOMAXPROCS(2) = 64 goroutines
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := write(n.Add(1)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
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
		for write(int64(i)) != nil {
			if time.Since(killed) > time.Minute {
				b.Fatal("no leader accepted a write within a minute")
			}
		}
		d := time.Since(killed)
		total += d
		b.StopTimer()
		c.startNode(leader)
		waitFor(b, 60*time.Second, "the killed server back", func() bool {
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
