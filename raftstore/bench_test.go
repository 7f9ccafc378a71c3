package raftstore

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kiln-dev/kiln/internal/testnet"
	"github.com/kiln-dev/kiln/internal/testwait"
)

// Benchmarks on what users run: three servers on loopback TCP with on-disk
// (fsynced) raft-wal stores.
//
//	go test ./raftstore -run '^$' -bench . -benchtime 3s
//	go test ./raftstore -run '^$' -bench Failover -benchtime 5x

// tcpCluster starts n on-disk stores on loopback TCP, node 0 bootstrapped and
// the others added as voters.
func tcpCluster(b *testing.B, n int, tune func(*Config)) []*Store {
	b.Helper()
	dir := b.TempDir()
	var stores []*Store
	for i := range n {
		cfg := Config{
			NodeID:   fmt.Sprintf("node%d", i),
			DataDir:  filepath.Join(dir, fmt.Sprintf("node%d", i)),
			RaftAddr: testnet.FreeAddr(b),
			Logger:   hclog.New(&hclog.LoggerOptions{Level: hclog.Off}),
		}
		cfg.Bootstrap = i == 0
		if tune != nil {
			tune(&cfg)
		}
		s, err := Open(cfg)
		if err != nil {
			b.Fatal(err)
		}
		stores = append(stores, s)
	}
	b.Cleanup(func() {
		for _, s := range stores {
			s.Shutdown()
		}
	})
	testwait.For(b, 10*time.Second, "node0 to lead", stores[0].IsLeader)
	for _, s := range stores[1:] {
		if err := stores[0].AddVoter(ctx(b), s.NodeID(), s.Addr()); err != nil {
			b.Fatal(err)
		}
	}
	return stores
}

// benchSetup makes a stack whose events the benchmarks append to: a small,
// realistic command (an engine reporting progress).
func benchSetup(b *testing.B, leader *Store) {
	for _, c := range []Command{&PutBlob{Hash: bundleHash, Data: bundle}, putStack()} {
		if _, err := leader.Apply(ctx(b), c); err != nil {
			b.Fatal(err)
		}
	}
}

func eventCmd(i int64) *AppendEvents {
	return &AppendEvents{Project: "p", Stack: "web", Events: []Event{{
		Time: t0, Node: "node0", Level: LevelInfo, Message: fmt.Sprintf("server.web[%d]: created", i),
	}}}
}

func BenchmarkApplySerial(b *testing.B) { benchSerial(b, 3) }

// BenchmarkApplySerialSingle is the embedded default: one node, no replication.
func BenchmarkApplySerialSingle(b *testing.B) { benchSerial(b, 1) }

func benchSerial(b *testing.B, nodes int) {
	stores := tcpCluster(b, nodes, nil)
	benchSetup(b, stores[0])
	c := context.Background()
	var i int64
	for b.Loop() {
		i++
		if _, err := stores[0].Apply(c, eventCmd(i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cmds/s")
}

func BenchmarkApplyConcurrent64(b *testing.B) { benchConcurrent(b, 64) }

func BenchmarkApplyConcurrent256(b *testing.B) { benchConcurrent(b, 256) }

func benchConcurrent(b *testing.B, clients int) {
	stores := tcpCluster(b, 3, nil)
	benchSetup(b, stores[0])
	c := context.Background()
	var n atomic.Int64
	// RunParallel starts parallelism*GOMAXPROCS goroutines.
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism(max(1, (clients+procs-1)/procs))
	first := stores[0].raft.LastIndex()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := stores[0].Apply(c, eventCmd(n.Add(1))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cmds/s")
	// How well group commit grouped: commands per log entry.
	if entries := stores[0].raft.LastIndex() - first; entries > 0 {
		b.ReportMetric(float64(b.N)/float64(entries), "cmds/entry")
	}
}

// BenchmarkFailover measures, per iteration, the time from the leader's
// shutdown to the first write a new leader acknowledges, with raft's
// default timeouts (1s heartbeat and election).
func BenchmarkFailover(b *testing.B) {
	benchFailover(b, nil)
}

// BenchmarkFailoverFast is the same with 500ms timeouts.
func BenchmarkFailoverFast(b *testing.B) {
	benchFailover(b, func(c *Config) {
		c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = 500*time.Millisecond, 500*time.Millisecond, 250*time.Millisecond
	})
}

func benchFailover(b *testing.B, tune func(*Config)) {
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		stores := tcpCluster(b, 3, tune)
		benchSetup(b, stores[0])
		// Let the followers settle into steady heartbeats.
		time.Sleep(200 * time.Millisecond)
		b.StartTimer()

		start := time.Now()
		stores[0].Shutdown()
		ok := false
		for attempt := 0; attempt < 2000 && !ok; attempt++ {
			for _, s := range stores[1:] {
				if !s.IsLeader() {
					continue
				}
				c, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
				_, err := s.Apply(c, eventCmd(int64(attempt)))
				cancel()
				if err == nil {
					ok = true
					break
				}
			}
			if !ok {
				time.Sleep(5 * time.Millisecond)
			}
		}
		if !ok {
			b.Fatal("no new leader accepted a write")
		}
		total += time.Since(start)
		b.StopTimer()
		for _, s := range stores[1:] {
			s.Shutdown()
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/failover")
}
