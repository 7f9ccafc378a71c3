package server

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/daemon/engine"
	"github.com/kiln-dev/kiln/raftstore"
)

// leaderLoop follows the store's leadership notifications: it starts the
// leader's work when this node gains leadership and stops it (and waits
// for it) when it loses it. It is the only reader of LeaderCh, so there is
// never more than one leader's work running on a node.
func (s *Server) leaderLoop() {
	defer close(s.leaderDone)
	var (
		cancel context.CancelFunc
		done   chan struct{}
	)
	stopLeading := func() {
		if cancel != nil {
			cancel()
			<-done
			cancel, done = nil, nil
			s.log.Info("leadership lost: leader work stopped")
		}
	}
	defer stopLeading()
	for {
		select {
		case <-s.stop:
			return
		case isLeader := <-s.store.LeaderCh():
			if !isLeader {
				stopLeading()
				continue
			}
			if cancel != nil {
				continue
			}
			ctx, c := context.WithCancel(context.Background())
			cancel = c
			done = make(chan struct{})
			go func() {
				defer close(done)
				s.lead(ctx)
			}()
		}
	}
}

// lead is the leader's work: a barrier first, then the server records, the
// management token, the operations (resumed and new), the heartbeat
// monitor and the TTL reaper, until ctx is cancelled.
func (s *Server) lead(ctx context.Context) {
	log := s.log.With("role", "leader")
	for {
		bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := s.store.Barrier(bctx)
		cancel()
		if err == nil {
			break
		}
		log.Warn("barrier", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	log.Info("leading")
	if err := s.apply(ctx, &raftstore.SetServer{ID: s.cfg.NodeID, RaftAddr: s.store.Addr(), HTTPAddr: s.Addr()}); err != nil {
		log.Warn("record server address", "err", err)
	}
	if s.mgmtToken != "" {
		if _, ok := s.store.State().TokenBySecret(s.mgmtToken); !ok && len(s.store.State().Tokens("")) == 0 {
			err := s.apply(ctx, &raftstore.CreateToken{
				ID: "management", Role: raftstore.RoleAdmin, SecretHash: raftstore.HashSecret(s.mgmtToken),
				Description: "management token", Time: time.Now().UTC(),
			})
			if err != nil {
				log.Warn("management token", "err", err)
			}
		}
	}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); s.watchOperations(ctx) }()
	go func() { defer wg.Done(); s.heartbeatMonitor(ctx) }()
	go func() { defer wg.Done(); s.ttlReaper(ctx) }()
	wg.Wait()
}

// watchOperations runs every unfinished operation (an earlier leader's are
// resumed) and each new one as it is recorded, and cancels an operation's
// engine when a cancel is requested.
func (s *Server) watchOperations(ctx context.Context) {
	st := s.store.State()
	type running struct {
		cancel context.CancelFunc
	}
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		run = map[string]running{}
	)
	defer wg.Wait()
	for {
		idx := st.Index()
		for _, ref := range st.UnfinishedOperationRefs() {
			mu.Lock()
			r, ok := run[ref.ID]
			mu.Unlock()
			if ok {
				if ref.CancelRequested {
					r.cancel()
				}
				continue
			}
			op, ok := st.Operation(ref.ID)
			if !ok || op.Status.Final() {
				continue
			}
			octx, cancel := context.WithCancel(ctx)
			if op.CancelRequested {
				cancel()
			}
			mu.Lock()
			run[op.ID] = running{cancel: cancel}
			mu.Unlock()
			wg.Add(1)
			go func(op raftstore.Operation) {
				defer wg.Done()
				s.runOperation(ctx, octx, op)
				cancel()
				// Forget it only once it is final in the state: otherwise it
				// would start again while its records are on the way.
				if cur, ok := st.Operation(op.ID); ok && !cur.Status.Final() && ctx.Err() == nil {
					s.log.Warn("operation left unfinished; it will be resumed", "op", op.ID)
					select {
					case <-ctx.Done():
					case <-time.After(time.Second):
					}
				}
				mu.Lock()
				delete(run, op.ID)
				mu.Unlock()
			}(op)
		}
		if _, err := st.Wait(ctx, idx); err != nil {
			return
		}
	}
}

// runOperation runs (or resumes) one operation with the engine.
func (s *Server) runOperation(lead, octx context.Context, op raftstore.Operation) {
	out, err := s.opEngine(lead, op).Run(octx, s.engineOp(op))
	if err != nil {
		s.log.Warn("operation stopped", "op", op.ID, "err", err)
		return
	}
	s.log.Info("operation finished", "op", op.ID, "stack", op.Stack, "status", out.Status, "err", out.Err)
	if op.Forget && out.Status == engine.OperationComplete {
		if err := s.apply(lead, &raftstore.DeleteStack{Project: op.Project, Name: op.Stack}); err != nil {
			s.log.Warn("forget stack", "stack", op.Stack, "err", err)
		}
	}
}

// heartbeatMonitor marks agents down when their heartbeats stop. A new
// leader gives every agent a full window before judging it.
func (s *Server) heartbeatMonitor(ctx context.Context) {
	hb := s.cfg.AgentHeartbeat
	started := time.Now()
	window := hb.Interval * time.Duration(hb.Missed)
	every(ctx, max(hb.Interval/2, 10*time.Millisecond), func() {
		now := time.Now()
		if now.Sub(started) < window {
			return
		}
		for _, a := range s.store.State().Agents() {
			if a.Status != raftstore.AgentUp || !hb.Down(a.LastHeartbeat, now) {
				continue
			}
			reason := fmt.Sprintf("no heartbeat since %s", a.LastHeartbeat.Format(time.RFC3339))
			s.log.Warn("agent down", "agent", a.ID, "reason", reason)
			if err := s.apply(ctx, &raftstore.MarkAgentDown{ID: a.ID, Reason: reason, Time: now.UTC()}); err != nil {
				s.log.Warn("mark agent down", "agent", a.ID, "err", err)
			}
		}
	})
}

// ttlReaper destroys the stacks whose TTL is over.
func (s *Server) ttlReaper(ctx context.Context) {
	every(ctx, s.cfg.TTLInterval, func() {
		for _, st := range s.store.State().ExpiredStacks(time.Now()) {
			if err := s.reap(ctx, st); err != nil {
				s.log.Warn("ttl", "stack", st.Name, "err", err)
			}
		}
		s.collectGarbage(ctx)
	})
}

// every calls tick each interval until ctx is done: the leader's periodic
// duties.
func every(ctx context.Context, interval time.Duration, tick func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		tick()
	}
}

// collectGarbage expires the stored plans whose TTL is over and deletes the
// blobs nothing refers to (raftstore.ExpirePlans, stamped with this
// leader's clock so every node decides alike).
func (s *Server) collectGarbage(ctx context.Context) {
	now := time.Now().UTC()
	if !s.store.State().GarbageDue(now) {
		return
	}
	if err := s.apply(ctx, &raftstore.ExpirePlans{Now: now}); err != nil {
		s.log.Warn("expire plans", "err", err)
	}
}

func (s *Server) reap(ctx context.Context, st raftstore.Stack) error {
	// Look again just before: a renew may have landed since the scan.
	cur, ok := s.store.State().Stack(st.Project, st.Name)
	if !ok || cur.Expires.IsZero() || cur.Expires.After(time.Now()) || cur.ActiveOperation != "" {
		return nil
	}
	p, err := s.makePlan(ctx, st.Project, st.Name, nil, true)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	return s.apply(ctx, &raftstore.StartOperation{
		ID: "op-" + randomHex(8), Project: st.Project, Stack: st.Name, Kind: raftstore.OpDestroy,
		Plan: *p.result, Serial: p.stored.Serial, Time: now,
		Events: []raftstore.Event{{Time: now, Node: s.cfg.NodeID, Message: "TTL expired at " + cur.Expires.Format(time.RFC3339) + ": destroy started"}},
	})
}
