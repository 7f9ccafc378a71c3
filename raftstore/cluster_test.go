package raftstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/kiln-dev/kiln/internal/testnet"
	"github.com/kiln-dev/kiln/internal/testwait"
)

// testCluster is n stores on raft's in-memory transport with short timeouts.
type testCluster struct {
	t      *testing.T
	stores []*Store
	trans  []*raft.InmemTransport
}

func fastConfig(id string) Config {
	return Config{
		NodeID:             id,
		HeartbeatTimeout:   50 * time.Millisecond,
		ElectionTimeout:    50 * time.Millisecond,
		LeaderLeaseTimeout: 50 * time.Millisecond,
		CommitTimeout:      5 * time.Millisecond,
		ApplyTimeout:       5 * time.Second,
		Logger:             hclog.New(&hclog.LoggerOptions{Level: hclog.Error, Name: id}),
	}
}

func newTestCluster(t *testing.T, n int) *testCluster {
	t.Helper()
	c := &testCluster{t: t}
	for i := range n {
		_, tr := raft.NewInmemTransport(raft.ServerAddress(fmt.Sprintf("node%d", i)))
		c.trans = append(c.trans, tr)
	}
	for i := range c.trans {
		for j := range c.trans {
			if i != j {
				c.trans[i].Connect(c.trans[j].LocalAddr(), c.trans[j])
			}
		}
	}
	for i, tr := range c.trans {
		cfg := fastConfig(fmt.Sprintf("node%d", i))
		cfg.Transport, cfg.InMemory, cfg.Bootstrap = tr, true, i == 0
		s, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.stores = append(c.stores, s)
	}
	t.Cleanup(func() {
		for _, s := range c.stores {
			s.Shutdown()
		}
	})
	leader := c.leader(nil)
	for i, s := range c.stores {
		if s != leader {
			if err := leader.AddVoter(ctx(t), s.NodeID(), string(c.trans[i].LocalAddr())); err != nil {
				t.Fatalf("add voter %s: %v", s.NodeID(), err)
			}
		}
	}
	return c
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// leader waits for exactly one leader among the stores not in skip.
func (c *testCluster) leader(skip map[*Store]bool) *Store {
	c.t.Helper()
	var leader *Store
	testwait.For(c.t, 10*time.Second, "a leader", func() bool {
		leader = nil
		n := 0
		for _, s := range c.stores {
			if !skip[s] && s.IsLeader() {
				leader, n = s, n+1
			}
		}
		return n == 1
	})
	return leader
}

func (c *testCluster) index(s *Store) int {
	for i, o := range c.stores {
		if o == s {
			return i
		}
	}
	return -1
}

// converged waits until every store in the list has the same state as want.
func converged(t *testing.T, want *Store, others ...*Store) {
	t.Helper()
	if err := want.Barrier(ctx(t)); err != nil {
		t.Fatal(err)
	}
	w := snapshotJSON(t, want.State())
	for _, o := range others {
		testwait.For(t, 10*time.Second, o.NodeID()+" to catch up", func() bool {
			return o.State().Index() >= want.State().Index() && bytes.Equal(snapshotJSON(t, o.State()), w)
		})
	}
}

func writeProjects(t *testing.T, s *Store, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if _, err := s.Apply(ctx(t), &UpsertProject{Name: fmt.Sprintf("p%04d", i), Time: t0}); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
}

func hasProjects(s *Store, from, to int) error {
	for i := from; i < to; i++ {
		if _, ok := s.State().Project(fmt.Sprintf("p%04d", i)); !ok {
			return fmt.Errorf("%s lacks project p%04d", s.NodeID(), i)
		}
	}
	return nil
}

func TestClusterReplicates(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.leader(nil)

	writeProjects(t, leader, 0, 50)
	followers := c.followers(leader)
	converged(t, leader, followers...)

	// A write on a follower is refused with the leader's name.
	_, err := followers[0].Apply(ctx(t), &UpsertProject{Name: "x"})
	if !errors.Is(err, ErrNotLeader) {
		t.Errorf("follower apply: %v", err)
	}
	// A business refusal comes back to the proposer as an error.
	if _, err := leader.Apply(ctx(t), &RevokeToken{ID: "nope"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("refused command: %v", err)
	}

	peers, err := followers[1].Peers()
	if err != nil {
		t.Fatal(err)
	}
	leaders := 0
	for _, p := range peers {
		if p.Leader {
			leaders++
			if p.ID != leader.NodeID() {
				t.Errorf("peers name %s as leader, want %s", p.ID, leader.NodeID())
			}
		}
	}
	if len(peers) != 3 || leaders != 1 {
		t.Errorf("peers = %+v", peers)
	}
	if addr, id := followers[0].Leader(); id != leader.NodeID() || addr != leader.Addr() {
		t.Errorf("follower sees leader %s at %s", id, addr)
	}
}

func TestClusterLeaderLoss(t *testing.T) {
	c := newTestCluster(t, 3)
	old := c.leader(nil)
	writeProjects(t, old, 0, 100)
	i := c.index(old)
	// Cut it off and stop it: its acknowledged writes must survive.
	for j := range c.trans {
		if j != i {
			c.trans[j].Disconnect(c.trans[i].LocalAddr())
		}
	}
	c.trans[i].DisconnectAll()
	if err := old.Shutdown(); err != nil {
		t.Fatal(err)
	}

	leader := c.leader(map[*Store]bool{old: true})
	if err := leader.Barrier(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := hasProjects(leader, 0, 100); err != nil {
		t.Fatalf("acknowledged write lost: %v", err)
	}
	writeProjects(t, leader, 100, 120)
	for _, s := range c.stores {
		if s != old && s != leader {
			converged(t, leader, s)
		}
	}
}

func TestClusterPartitionedNodeCatchesUp(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.leader(nil)
	writeProjects(t, leader, 0, 10)

	var lone *Store
	for _, s := range c.stores {
		if s != leader {
			lone = s
			break
		}
	}
	i := c.index(lone)
	for j := range c.trans {
		if j != i {
			c.trans[j].Disconnect(c.trans[i].LocalAddr())
		}
	}
	c.trans[i].DisconnectAll()

	// The two others still make a quorum.
	writeProjects(t, leader, 10, 60)
	if err := hasProjects(lone, 10, 11); err == nil {
		t.Fatal("a partitioned node received a write")
	}
	if _, err := lone.Apply(ctx(t), &UpsertProject{Name: "lonely"}); err == nil {
		t.Fatal("a partitioned node accepted a write")
	}

	// Heal: it catches up (its election attempts may move leadership).
	for j := range c.trans {
		if j != i {
			c.trans[j].Connect(c.trans[i].LocalAddr(), c.trans[i])
			c.trans[i].Connect(c.trans[j].LocalAddr(), c.trans[j])
		}
	}
	leader = c.leader(nil)
	writeProjects(t, leader, 60, 61)
	converged(t, leader, c.followers(leader)...)
	if err := hasProjects(lone, 0, 61); err != nil {
		t.Fatal(err)
	}
}

func TestClusterSnapshotSaveRestore(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.leader(nil)
	for _, cmd := range []Command{
		&PutBlob{Hash: bundleHash, Data: bundle}, putStack(), agent("agent-1"), startOp("op1", 0),
	} {
		if _, err := leader.Apply(ctx(t), cmd); err != nil {
			t.Fatal(err)
		}
	}
	var backup bytes.Buffer
	if err := leader.SaveSnapshot(&backup); err != nil {
		t.Fatal(err)
	}
	saved := snapshotJSON(t, leader.State())

	// Changes after the backup are undone by the restore, on every node.
	writeProjects(t, leader, 0, 5)
	if err := leader.RestoreSnapshot(ctx(t), bytes.NewReader(backup.Bytes())); err != nil {
		t.Fatal(err)
	}
	if got := snapshotJSON(t, leader.State()); !bytes.Equal(got, saved) {
		t.Errorf("restored state differs:\ngot  %s\nwant %s", got, saved)
	}
	// A bad backup is refused before it reaches raft.
	if err := leader.RestoreSnapshot(ctx(t), bytes.NewReader([]byte("junk"))); err == nil {
		t.Error("junk restored")
	}
	// The indexes of the nodes agree again from the next write on.
	if _, err := leader.Apply(ctx(t), &UpsertProject{Name: "after"}); err != nil {
		t.Fatalf("write after restore: %v", err)
	}
	for _, s := range c.stores {
		if s != leader {
			converged(t, leader, s)
		}
		if err := hasProjects(s, 0, 1); err == nil {
			t.Errorf("%s kept a write made after the backup", s.NodeID())
		}
	}
}

func TestClusterLeaderLeaves(t *testing.T) {
	c := newTestCluster(t, 3)
	old := c.leader(nil)
	var follower *Store
	for _, s := range c.stores {
		if s != old {
			follower = s
		}
	}
	if err := follower.Leave(ctx(t)); !errors.Is(err, ErrNotLeader) {
		t.Errorf("follower leave: %v", err)
	}
	if err := old.Leave(ctx(t)); err != nil {
		t.Fatal(err)
	}
	old.Shutdown()
	leader := c.leader(map[*Store]bool{old: true})
	peers, err := leader.Peers()
	if err != nil {
		t.Fatal(err)
	}
	if len(peers) != 2 {
		t.Errorf("peers after leave = %+v", peers)
	}
	for _, p := range peers {
		if p.ID == old.NodeID() {
			t.Errorf("%s still a peer", p.ID)
		}
	}
	writeProjects(t, leader, 0, 1)
}

func TestLeaderCh(t *testing.T) {
	c := newTestCluster(t, 1)
	select {
	case v := <-c.stores[0].LeaderCh():
		if !v {
			t.Error("first notification is not leadership")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no leadership notification")
	}
}

// soloConfig is a one-node cluster that bootstraps itself, on disk in a
// fresh temporary folder.
func soloConfig(t testing.TB) Config {
	cfg := fastConfig("solo")
	cfg.DataDir, cfg.RaftAddr, cfg.Bootstrap = t.TempDir(), testnet.FreeAddr(t), true
	return cfg
}

// openLeader opens a store, shut down when the test ends (Shutdown may
// come earlier), and waits until it leads.
func openLeader(t testing.TB, cfg Config) *Store {
	t.Helper()
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown() })
	testwait.For(t, 10*time.Second, "leadership", s.IsLeader)
	return s
}

// followers are the stores of the cluster other than leader.
func (c *testCluster) followers(leader *Store) []*Store {
	var out []*Store
	for _, s := range c.stores {
		if s != leader {
			out = append(out, s)
		}
	}
	return out
}

func TestSingleNodeOnDiskRestart(t *testing.T) {
	cfg := soloConfig(t)
	cfg.SnapshotThreshold = 20 // take a snapshot on the way, so restart reads both

	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.WaitLeader(ctx(t)); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "leadership", s.IsLeader)
	for _, cmd := range []Command{&PutBlob{Hash: bundleHash, Data: bundle}, putStack(), agent("agent-1"), startOp("op1", 0)} {
		if _, err := s.Apply(ctx(t), cmd); err != nil {
			t.Fatal(err)
		}
	}
	writeProjects(t, s, 0, 50)
	var backup bytes.Buffer
	if err := s.SaveSnapshot(&backup); err != nil {
		t.Fatal(err)
	}
	writeProjects(t, s, 50, 60) // in the log after the snapshot
	want := snapshotJSON(t, s.State())
	if err := s.Shutdown(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(cfg) // Bootstrap again is harmless: the node has state
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	// Ready never says yes before the state holds what was on disk: the
	// entries after the snapshot are applied only once committed again.
	testwait.For(t, 10*time.Second, "ready after restart", func() bool {
		if !s.Ready() {
			return false
		}
		if got := snapshotJSON(t, s.State()); !bytes.Equal(got, want) {
			t.Fatalf("ready, but the state is not replayed yet:\ngot  %s\nwant %s", got, want)
		}
		return true
	})
	testwait.For(t, 10*time.Second, "leadership after restart", s.IsLeader)
	if err := s.Barrier(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if got := snapshotJSON(t, s.State()); !bytes.Equal(got, want) {
		t.Errorf("state after restart differs:\ngot  %s\nwant %s", got, want)
	}
	if _, err := s.Apply(ctx(t), &UpsertProject{Name: "after"}); err != nil {
		t.Fatal(err)
	}
}

func TestSecondOpenOfDataDirIsRefused(t *testing.T) {
	cfg := soloConfig(t)
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	cfg2 := cfg
	cfg2.RaftAddr = testnet.FreeAddr(t)
	if s2, err := Open(cfg2); !errors.Is(err, ErrDataDirLocked) {
		if err == nil {
			s2.Shutdown()
		}
		t.Fatalf("second open: %v", err)
	}
}

func TestConcurrentApply(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.leader(nil)
	const workers, each = 16, 25
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := range each {
				if _, err := leader.Apply(context.Background(), &UpsertProject{Name: fmt.Sprintf("p%04d", w*each+i)}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if err := hasProjects(leader, 0, workers*each); err != nil {
		t.Fatal(err)
	}
	for _, s := range c.stores {
		if s != leader {
			converged(t, leader, s)
		}
	}
}
