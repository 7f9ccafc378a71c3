package raftstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Config configures a Store.
type Config struct {
	// DataDir holds wal/ (the log and stable store, see logstore.go) and
	// snapshots/.
	DataDir string
	// NodeID names this server in the raft configuration; it must stay the
	// same across restarts.
	NodeID string
	// RaftAddr is the TCP address to bind (host:port).
	RaftAddr string
	// AdvertiseAddr is the address other servers dial; RaftAddr when empty.
	AdvertiseAddr string
	// Bootstrap makes a new cluster with this node as its only voter when
	// there is no state yet. It does nothing if the node has state.
	Bootstrap bool
	Logger    hclog.Logger

	// Raft timeouts; zero keeps hashicorp/raft's defaults (1s heartbeat and
	// election, 500ms lease).
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// SnapshotThreshold and SnapshotInterval; zero keeps raft's defaults.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	// MaxAppendEntries bounds a batch of entries; zero means 256.
	MaxAppendEntries int
	// ApplyTimeout bounds Apply when its context has no deadline; zero means 10s.
	ApplyTimeout time.Duration

	// Transport replaces the TCP transport (tests: raft.NewInmemTransport).
	// Its LocalAddr is the node's address.
	Transport raft.Transport
	// InMemory keeps the log, stable and snapshot stores in memory (tests).
	InMemory bool
	// Recover lets a node whose raft log (wal/) was lost start from its newest
	// snapshot, accepting the loss of the writes made after it (`kiln
	// server -recover`; see damage.go). Without it such a node refuses to
	// start.
	Recover bool
}

// Store is a kiln server's replicated state: raft plus the FSM.
type Store struct {
	cfg       Config
	log       hclog.Logger
	raft      *raft.Raft
	fsm       *FSM
	transport raft.Transport
	closers   []io.Closer

	leaderCh chan bool
	// proposals queues the commands of Apply for the group commit loop.
	proposals chan *proposal
	// entries counts the log entries the group commit proposed (one per
	// command alone, one per batch): see Entries.
	entries atomic.Uint64

	// startIndex is the index of the last entry on disk, when the store
	// opened, that the FSM applies (a command or a configuration); ready
	// becomes true once the FSM has applied it (see Ready).
	startIndex uint64
	ready      atomic.Bool

	shutdownOnce sync.Once
	shutdownErr  error
	done         chan struct{}
	// marking is markWhenStateful, waited for by Shutdown (a marker
	// written after it would race the removal of the data directory).
	marking sync.WaitGroup
}

// Open starts a store. With Bootstrap and no existing state it makes a
// one-voter cluster; otherwise it waits to be added (AddVoter on the leader)
// or resumes from its data directory.
func Open(cfg Config) (*Store, error) {
	if cfg.NodeID == "" {
		return nil, errors.New("raftstore: NodeID is required")
	}
	cfg = cfg.withDefaults()
	s := &Store{
		cfg:       cfg,
		log:       cfg.Logger.Named("raftstore"),
		fsm:       NewFSM(),
		leaderCh:  make(chan bool, 1),
		proposals: make(chan *proposal, groupQueue),
		done:      make(chan struct{}),
	}
	ok := false
	defer func() {
		if !ok {
			s.closeAll()
		}
	}()

	rc := raftConfig(cfg)
	notify := make(chan bool, 8)
	rc.NotifyCh = notify

	var stores raftStores
	if cfg.InMemory {
		mem := raft.NewInmemStore()
		stores = raftStores{logs: mem, stable: mem, snaps: raft.NewInmemSnapshotStore()}
	} else {
		var restored bool
		var err error
		stores, restored, err = s.openDiskStores()
		if err != nil {
			return nil, err
		}
		// The newest snapshot is in the FSM already.
		rc.NoSnapshotRestoreOnStart = restored
	}

	trans, err := s.openTransport()
	if err != nil {
		return nil, err
	}
	s.transport = trans

	if cfg.Bootstrap {
		if err := bootstrapIfNew(rc, stores, trans); err != nil {
			return nil, err
		}
	}

	r, err := raft.NewRaft(rc, s.fsm, stores.logs, stores.stable, stores.snaps, trans)
	if err != nil {
		return nil, fmt.Errorf("raftstore: start raft: %w", err)
	}
	s.raft = r
	s.startIndex = lastFSMEntry(stores.logs)
	go s.forwardLeadership(notify)
	go s.groupCommit()
	if !cfg.InMemory {
		s.marking.Go(s.markWhenStateful)
	}
	ok = true
	return s, nil
}

// raftStores are the three stores raft keeps its state in.
type raftStores struct {
	logs   raft.LogStore
	stable raft.StableStore
	snaps  raft.SnapshotStore
}

// withDefaults fills the fields of cfg that are zero and have a default.
func (cfg Config) withDefaults() Config {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.ApplyTimeout == 0 {
		cfg.ApplyTimeout = 10 * time.Second
	}
	if cfg.MaxAppendEntries == 0 {
		cfg.MaxAppendEntries = 256
	}
	return cfg
}

// raftConfig is hashicorp/raft's configuration for cfg: raft's defaults,
// overridden by the timeouts and thresholds that cfg sets.
func raftConfig(cfg Config) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = cfg.Logger.Named("raft")
	rc.MaxAppendEntries = cfg.MaxAppendEntries
	rc.BatchApplyCh = true
	override(&rc.HeartbeatTimeout, cfg.HeartbeatTimeout)
	override(&rc.ElectionTimeout, cfg.ElectionTimeout)
	override(&rc.LeaderLeaseTimeout, cfg.LeaderLeaseTimeout)
	override(&rc.CommitTimeout, cfg.CommitTimeout)
	override(&rc.SnapshotThreshold, cfg.SnapshotThreshold)
	override(&rc.SnapshotInterval, cfg.SnapshotInterval)
	return rc
}

// override sets *setting to v when v is set (above zero), and otherwise
// keeps raft's default.
func override[T time.Duration | uint64](setting *T, v T) {
	if v > 0 {
		*setting = v
	}
}

// openDiskStores opens the log, stable and snapshot stores in the data
// directory and checks them (see checkState), restoring the newest snapshot
// into the FSM; restored says whether it did. The log store is added to
// s.closers.
func (s *Store) openDiskStores() (stores raftStores, restored bool, err error) {
	cfg := s.cfg
	if err := prepareDataDir(cfg.DataDir); err != nil {
		return raftStores{}, false, err
	}
	logs, err := openLogStore(cfg.DataDir, cfg.Logger)
	if err != nil {
		return raftStores{}, false, err
	}
	s.closers = append(s.closers, logs)
	cache, err := raft.NewLogCache(512, logs)
	if err != nil {
		return raftStores{}, false, fmt.Errorf("raftstore: log cache: %w", err)
	}
	snaps, err := openSnapshots(cfg.DataDir, cfg.Logger)
	if err != nil {
		return raftStores{}, false, err
	}
	restored, err = checkState(cfg, logs, logs, snaps, s.fsm)
	if err != nil {
		return raftStores{}, false, fmt.Errorf("raftstore: %w", err)
	}
	return raftStores{logs: cache, stable: logs, snaps: snaps}, restored, nil
}

// prepareDataDir makes the data directory, tightens the permissions of what
// it holds and removes the spool files of interrupted restores.
func prepareDataDir(dir string) error {
	if dir == "" {
		return errors.New("raftstore: DataDir is required")
	}
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return fmt.Errorf("raftstore: data dir: %w", err)
	}
	if err := TightenIn(dir, walDir, boltFile, boltMigrated, MarkerFile, "snapshots"); err != nil {
		return fmt.Errorf("raftstore: data dir permissions: %w", err)
	}
	// A restore interrupted by a crash leaves its spooled file behind.
	if old, _ := filepath.Glob(filepath.Join(dir, "restore-*.tmp")); len(old) > 0 {
		for _, f := range old {
			os.Remove(f)
		}
	}
	return nil
}

// openSnapshots opens the snapshot store in dir/snapshots, keeping two
// snapshots, with permissions tightened.
func openSnapshots(dir string, logger hclog.Logger) (*privateSnapshots, error) {
	fs, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, logger.Named("snapshot"))
	if err != nil {
		return nil, fmt.Errorf("raftstore: snapshot store: %w", err)
	}
	snapDir := filepath.Join(dir, "snapshots")
	if err := Tighten(snapDir); err != nil {
		return nil, fmt.Errorf("raftstore: snapshots permissions: %w", err)
	}
	return &privateSnapshots{FileSnapshotStore: fs, dir: snapDir}, nil
}

// openTransport returns cfg.Transport, or else a TCP transport bound to
// RaftAddr and advertising AdvertiseAddr (added to s.closers).
func (s *Store) openTransport() (raft.Transport, error) {
	cfg := s.cfg
	if cfg.Transport != nil {
		return cfg.Transport, nil
	}
	if cfg.RaftAddr == "" {
		return nil, errors.New("raftstore: RaftAddr is required")
	}
	adv := cfg.AdvertiseAddr
	if adv == "" {
		adv = cfg.RaftAddr
	}
	advAddr, err := net.ResolveTCPAddr("tcp", adv)
	if err != nil {
		return nil, fmt.Errorf("raftstore: advertise address %s: %w", adv, err)
	}
	tcp, err := raft.NewTCPTransportWithLogger(cfg.RaftAddr, advAddr, 5, 10*time.Second, cfg.Logger.Named("transport"))
	if err != nil {
		return nil, fmt.Errorf("raftstore: transport: %w", err)
	}
	s.closers = append(s.closers, tcp)
	return tcp, nil
}

// bootstrapIfNew makes a cluster with this node as its only voter, unless
// the stores hold raft state already.
func bootstrapIfNew(rc *raft.Config, stores raftStores, trans raft.Transport) error {
	has, err := raft.HasExistingState(stores.logs, stores.stable, stores.snaps)
	if err != nil {
		return fmt.Errorf("raftstore: read state: %w", err)
	}
	if has {
		return nil
	}
	conf := raft.Configuration{Servers: []raft.Server{{
		Suffrage: raft.Voter, ID: rc.LocalID, Address: trans.LocalAddr(),
	}}}
	if err := raft.BootstrapCluster(rc, stores.logs, stores.stable, stores.snaps, trans, conf); err != nil {
		return fmt.Errorf("raftstore: bootstrap: %w", err)
	}
	return nil
}

// Ready reports whether the state has caught up with what this node had on
// disk when it opened. hashicorp/raft applies the log only once entries are
// known committed, so right after a restart the state is empty until a
// leader is elected; answering from it then would refuse valid tokens. The
// FSM's own index is the measure (raft's AppliedIndex moves when entries are
// handed to the FSM, before they are applied). If the last entry on disk was
// an uncommitted one that the new leader drops, the node is ready after the
// next committed write. Once ready, it stays ready.
//
// The daemon answers 503 instead of serving from a state that is not ready.
func (s *Store) Ready() bool {
	if s.ready.Load() {
		return true
	}
	// A node with nothing on disk (a new one, not yet joined) is not ready
	// until it has applied something either.
	if s.fsm.State().Index() < max(s.startIndex, 1) {
		return false
	}
	s.ready.Store(true)
	return true
}

// lastFSMEntry returns the index of the newest entry in the log that the
// FSM applies (commands and configurations; no-ops never reach it), looking
// back at most 4096 entries; 0 when there is none (a fresh node, or one
// whose state comes whole from its snapshot).
func lastFSMEntry(logs raft.LogStore) uint64 {
	first, err1 := logs.FirstIndex()
	last, err2 := logs.LastIndex()
	if err1 != nil || err2 != nil || last == 0 {
		return 0
	}
	for i := last; i >= first && i > 0 && last-i < 4096; i-- {
		var l raft.Log
		if logs.GetLog(i, &l) != nil {
			continue
		}
		if l.Type == raft.LogCommand || l.Type == raft.LogConfiguration {
			return i
		}
	}
	return 0
}

// markWhenStateful writes MarkerFile once this node holds raft state (at
// once for a bootstrapped or restarted node, after the first entry or
// snapshot for a node that joins).
func (s *Store) markWhenStateful() {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		if s.raft.LastIndex() > 0 {
			if err := writeMarker(s.cfg.DataDir, s.cfg.NodeID); err != nil {
				s.log.Warn("write marker", "error", err)
			}
			return
		}
		select {
		case <-s.done:
			return
		case <-t.C:
		}
	}
}

// forwardLeadership keeps the latest leadership change in leaderCh, so raft
// is never blocked by a slow reader and the reader always sees the newest.
func (s *Store) forwardLeadership(notify <-chan bool) {
	for {
		select {
		case v := <-notify:
			select {
			case <-s.leaderCh:
			default:
			}
			s.leaderCh <- v
		case <-s.done:
			return
		}
	}
}

func (s *Store) closeAll() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i].Close()
	}
	s.closers = nil
}

// State returns the replicated state (read it through its methods). Reads
// on a follower may lag; call Barrier first for a consistent read.
func (s *Store) State() *State { return s.fsm.State() }

// NodeID returns this node's id.
func (s *Store) NodeID() string { return s.cfg.NodeID }

// Addr returns this node's raft address.
func (s *Store) Addr() string { return string(s.transport.LocalAddr()) }

// Raft returns the underlying raft (for stats and tools).
func (s *Store) Raft() *raft.Raft { return s.raft }

// Apply proposes a command and waits until it is committed and applied on
// this node. A refused command returns the FSM's error (wrapping
// ErrNotFound, ErrConflict, ErrStaleSerial or ErrInvalid); on a follower it
// returns an error wrapping ErrNotLeader, and ErrLeadershipLost when the
// outcome is unknown. It is safe for concurrent use: concurrent commands
// are proposed together as one log entry (groupcommit.go), each getting its
// own result or error.
func (s *Store) Apply(ctx context.Context, c Command) (any, error) {
	data, err := s.encodeOne(ctx, c)
	if err != nil {
		return nil, err
	}
	rs, err := s.propose(ctx, data)
	if err != nil {
		return nil, err
	}
	return rs[0].v, rs[0].err
}

// ApplyAll proposes several commands in one log entry, in order: one
// append, one fsync and one replication round for all of them, and either
// all of them are committed or none. Each is applied on its own, as by
// Apply (a refused one leaves no trace and does not refuse the others): the
// result is one error per command, nil for those applied. What must not
// happen unless an earlier command did is for the FSM to check (a work item
// is put only for an action recorded running, see PutWork).
func (s *Store) ApplyAll(ctx context.Context, cs ...Command) []error {
	errs := make([]error, len(cs))
	fail := func(err error) []error {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	entries := make([][]byte, len(cs))
	size := 0
	for i, c := range cs {
		data, err := s.encodeOne(ctx, c)
		if err != nil {
			return fail(err)
		}
		entries[i] = data
		size += len(data)
	}
	if size > MaxCommandSize {
		return fail(errorf(ErrTooLarge, "%d commands of %d bytes are over the limit of %d bytes for one log entry", len(cs), size, MaxCommandSize))
	}
	rs, err := s.propose(ctx, entries...)
	if err != nil {
		return fail(err)
	}
	for i, r := range rs {
		errs[i] = r.err
	}
	return errs
}

// encodeOne checks and encodes one command for a proposal.
func (s *Store) encodeOne(ctx context.Context, c Command) ([]byte, error) {
	if err := checkSize(c); err != nil {
		return nil, err
	}
	if _, ok := c.(*Batch); ok {
		// Batches are the group commit's own: one inside another would
		// not decode.
		return nil, invalid("a batch is not proposed by hand: apply its commands")
	}
	data, err := Encode(c)
	if err != nil {
		return nil, err
	}
	if len(data) > MaxCommandSize {
		return nil, errorf(ErrTooLarge, "%T of %d bytes is over the limit of %d bytes for one log entry", c, len(data), MaxCommandSize)
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= 0 {
		return nil, context.DeadlineExceeded
	}
	return data, nil
}

func (s *Store) raftErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrLeadershipLost):
		return fmt.Errorf("%w: %v", ErrLeadershipLost, err)
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		addr, id := s.Leader()
		if addr == "" {
			return fmt.Errorf("%w (no leader known): %v", ErrNotLeader, err)
		}
		return fmt.Errorf("%w (leader %s at %s): %v", ErrNotLeader, id, addr, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrShutdown
	}
	return err
}

// IsLeader reports whether this node is the leader.
func (s *Store) IsLeader() bool { return s.raft.State() == raft.Leader }

// Leader returns the leader's raft address and id ("" when unknown).
func (s *Store) Leader() (addr, id string) {
	a, i := s.raft.LeaderWithID()
	return string(a), string(i)
}

// LeaderCh delivers true when this node becomes leader and false when it
// stops being one. Only the newest change is kept; there must be a single
// reader (the leader loop).
func (s *Store) LeaderCh() <-chan bool { return s.leaderCh }

// WaitLeader waits until some leader is known.
func (s *Store) WaitLeader(ctx context.Context) (addr, id string, err error) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if addr, id = s.Leader(); addr != "" {
			return addr, id, nil
		}
		select {
		case <-ctx.Done():
			return "", "", ctx.Err()
		case <-t.C:
		}
	}
}

// Barrier waits until every entry committed before it is applied on this
// node (the leader): reads after it are consistent.
func (s *Store) Barrier(ctx context.Context) error {
	if err := s.raft.Barrier(s.timeout(ctx)).Error(); err != nil {
		return s.raftErr(err)
	}
	return nil
}

// VerifyLeader confirms with a quorum that this node is still the leader.
func (s *Store) VerifyLeader() error {
	if err := s.raft.VerifyLeader().Error(); err != nil {
		return s.raftErr(err)
	}
	return nil
}

func (s *Store) timeout(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d > 0 {
			return d
		}
		return time.Millisecond
	}
	return s.cfg.ApplyTimeout
}

// AddVoter adds a server to the cluster (on the leader). Adding a server
// that is already a voter at the same address does nothing.
func (s *Store) AddVoter(ctx context.Context, id, addr string) error {
	if err := s.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, s.timeout(ctx)).Error(); err != nil {
		return s.raftErr(err)
	}
	return nil
}

// RemoveServer removes a server from the cluster (on the leader).
func (s *Store) RemoveServer(ctx context.Context, id string) error {
	if err := s.raft.RemoveServer(raft.ServerID(id), 0, s.timeout(ctx)).Error(); err != nil {
		return s.raftErr(err)
	}
	return nil
}

// Peer is one server of the cluster.
type Peer struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	Voter   bool   `json:"voter"`
	Leader  bool   `json:"leader"`
}

// Peers returns the servers of the latest configuration.
func (s *Store) Peers() ([]Peer, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, s.raftErr(err)
	}
	_, leaderID := s.Leader()
	var out []Peer
	for _, srv := range f.Configuration().Servers {
		out = append(out, Peer{
			ID: string(srv.ID), Address: string(srv.Address),
			Voter: srv.Suffrage == raft.Voter, Leader: string(srv.ID) == leaderID,
		})
	}
	return out, nil
}

// SaveSnapshot takes a snapshot now and writes it to w, for a backup
// (`kiln operator snapshot save`). The bytes are the FSM's JSON snapshot.
func (s *Store) SaveSnapshot(w io.Writer) error {
	f := s.raft.Snapshot()
	if err := f.Error(); err != nil {
		if !errors.Is(err, raft.ErrNothingNewToSnapshot) {
			return fmt.Errorf("snapshot: %w", s.raftErr(err))
		}
		// Nothing applied since the last snapshot: back up the live state.
		s.fsm.state.mu.RLock()
		snap := &fsmSnapshot{data: s.fsm.state.t.export()}
		s.fsm.state.mu.RUnlock()
		return writeSnapshotTo(w, snap)
	}
	_, rc, err := f.Open()
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	defer rc.Close()
	if _, err := io.Copy(w, rc); err != nil {
		return fmt.Errorf("snapshot: write: %w", err)
	}
	return nil
}

// RestoreSnapshot replaces the whole cluster's state with a backup written
// by SaveSnapshot (on the leader; the followers follow). The backup is
// streamed to a file in the data directory (mode 0600) and checked there,
// so its size is bounded by the disk, not by memory: any snapshot that
// SaveSnapshot wrote is accepted. A backup that does not parse, or whose
// tables refer to records that are not there (see checkReferences), is
// refused with an error wrapping ErrInvalid and the state is left as it is.
func (s *Store) RestoreSnapshot(ctx context.Context, r io.Reader) error {
	dir := s.cfg.DataDir
	if s.cfg.InMemory {
		dir = ""
	}
	f, err := os.CreateTemp(dir, "restore-*.tmp")
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	n, err := io.Copy(f, r)
	if err != nil {
		return fmt.Errorf("restore: read: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	// Check it before raft consumes it: a bad file must not reach the FSM.
	t, err := readSnapshot(f)
	if err != nil {
		return &invalidSnapshot{err}
	}
	if err := checkReferences(t); err != nil {
		return &invalidSnapshot{err}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Size: n}
	if err := s.raft.Restore(meta, bufio.NewReaderSize(f, 1<<16), s.timeout(ctx)); err != nil {
		return fmt.Errorf("restore: %w", s.raftErr(err))
	}
	return nil
}

// Leave removes this node from the cluster when it is the leader (the
// leader steps down once the removal commits). A follower cannot remove
// itself: it gets ErrNotLeader and asks the leader (RemoveServer there).
func (s *Store) Leave(ctx context.Context) error {
	if !s.IsLeader() {
		addr, id := s.Leader()
		return fmt.Errorf("%w (leader %s at %s): ask it to remove %s", ErrNotLeader, id, addr, s.cfg.NodeID)
	}
	return s.RemoveServer(ctx, s.cfg.NodeID)
}

// Shutdown stops raft and closes the transport and the stores.
func (s *Store) Shutdown() error {
	s.shutdownOnce.Do(func() {
		s.shutdownErr = s.raft.Shutdown().Error()
		close(s.done)
		s.marking.Wait()
		s.closeAll()
	})
	return s.shutdownErr
}

// writeSnapshotTo writes a captured snapshot to w.
func writeSnapshotTo(w io.Writer, snap *fsmSnapshot) error {
	sink := &writerSink{w: w}
	return snap.Persist(sink)
}

// writerSink adapts an io.Writer to raft.SnapshotSink.
type writerSink struct{ w io.Writer }

func (s *writerSink) Write(p []byte) (int, error) { return s.w.Write(p) }
func (s *writerSink) Close() error                { return nil }
func (s *writerSink) ID() string                  { return "backup" }
func (s *writerSink) Cancel() error               { return nil }
