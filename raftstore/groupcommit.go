package raftstore

import (
	"context"
	"errors"

	"github.com/hashicorp/raft"
)

// Group commit: Store.Apply hands its encoded command to one loop, which
// proposes what has queued up as one log entry (a Batch when there is more
// than one) whenever fewer than groupInFlight of its entries await commit.
// A lone command is proposed at once, as the entry it has always been; under
// load, commands gather while the previous entries are written and
// replicated, and the next entry carries them all. Order is kept: the loop
// proposes in the order the commands arrived.
const (
	// groupInFlight bounds the entries of the loop not yet committed. One:
	// while an entry is written and replicated, the next batch gathers. (Two,
	// which overlaps the leader's write of one entry with the followers' of
	// the previous, made smaller batches and was slower over HTTP with 64
	// clients: more fsyncs and wake-ups per write. Four was slower still.
	// Lingering after a batch of many, up to 1-2ms for more commands, did
	// not help either: 64 HTTP clients settle into two halves that take
	// turns, each half's entry committing while the other's answers and new
	// requests are served, and the linger only added its wait.)
	groupInFlight = 1
	// groupMaxCommands and groupMaxBytes bound one batch. A command bigger
	// than groupMaxBytes goes alone.
	groupMaxCommands = 512
	groupMaxBytes    = 1 << 20
	// groupQueue is the depth of the queue of commands to propose.
	groupQueue = 1024
)

// proposal is one or more commands waiting to be proposed: the commands of
// one proposal always go in the same log entry (see ApplyAll).
type proposal struct {
	ctx     context.Context
	entries [][]byte
	size    int
	done    chan []proposalResult // buffered: the loop never blocks on it
}

type proposalResult struct {
	v   any
	err error
}

// propose queues encoded commands and waits for their own results, one per
// command. Commands whose context ends before they are proposed are
// dropped, never proposed.
func (s *Store) propose(ctx context.Context, entries ...[]byte) ([]proposalResult, error) {
	p := &proposal{ctx: ctx, entries: entries, done: make(chan []proposalResult, 1)}
	for _, e := range entries {
		p.size += len(e)
	}
	select {
	case s.proposals <- p:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.done:
		return nil, ErrShutdown
	}
	select {
	case r := <-p.done:
		return r, nil
	case <-ctx.Done():
		// The entry may still commit; the caller only stops waiting.
		return nil, ctx.Err()
	case <-s.done:
		return nil, ErrShutdown
	}
}

// answer gives every command of p the same result.
func (p *proposal) answer(r proposalResult) {
	rs := make([]proposalResult, len(p.entries))
	for i := range rs {
		rs[i] = r
	}
	p.done <- rs
}

// groupCommit is the loop that proposes the queued commands.
func (s *Store) groupCommit() {
	slots := make(chan struct{}, groupInFlight)
	var next *proposal // taken from the queue but left for the next batch
	for {
		if next == nil {
			select {
			case next = <-s.proposals:
			case <-s.done:
				return
			}
		}
		// Wait for a free slot: meanwhile more commands queue up.
		select {
		case slots <- struct{}{}:
		case <-s.done:
			next.answer(proposalResult{err: ErrShutdown})
			return
		}
		var batch []*proposal
		batch, next = s.gather(next)
		if len(batch) == 0 {
			<-slots
			continue
		}
		var entries [][]byte
		for _, p := range batch {
			entries = append(entries, p.entries...)
		}
		data := entries[0]
		if len(entries) > 1 {
			data = encodeBatch(entries)
		}
		s.entries.Add(1)
		f := s.raft.Apply(data, s.cfg.ApplyTimeout)
		go func() {
			s.deliver(f, batch)
			<-slots
		}()
	}
}

// gather takes first and what else is queued now, within the bounds of a
// batch; it returns the batch and the command that did not fit (or nil).
// Commands whose context has ended are answered and left out.
func (s *Store) gather(first *proposal) (batch []*proposal, next *proposal) {
	size, count := 0, 0
	add := func(p *proposal) bool {
		if err := p.ctx.Err(); err != nil {
			p.answer(proposalResult{err: err})
			return true
		}
		if len(batch) > 0 && (count+len(p.entries) > groupMaxCommands || size+p.size > groupMaxBytes) {
			return false
		}
		batch = append(batch, p)
		size += p.size
		count += len(p.entries)
		return true
	}
	add(first)
	for {
		select {
		case p := <-s.proposals:
			if !add(p) {
				return batch, p
			}
		default:
			return batch, nil
		}
	}
}

// deliver waits for an entry and gives each proposer its own commands'
// results.
func (s *Store) deliver(f raft.ApplyFuture, batch []*proposal) {
	if err := f.Error(); err != nil {
		err = s.raftErr(err)
		for _, p := range batch {
			p.answer(proposalResult{err: err})
		}
		return
	}
	resp := f.Response()
	if len(batch) == 1 && len(batch[0].entries) == 1 {
		batch[0].done <- []proposalResult{resultOf(resp)}
		return
	}
	n := 0
	for _, p := range batch {
		n += len(p.entries)
	}
	rs, ok := resp.(batchResult)
	if !ok || len(rs) != n {
		err, _ := resp.(error)
		if err == nil {
			err = errors.New("raftstore: a batch entry did not answer per command")
		}
		for _, p := range batch {
			p.answer(proposalResult{err: err})
		}
		return
	}
	for _, p := range batch {
		out := make([]proposalResult, len(p.entries))
		for i := range out {
			out[i] = resultOf(rs[0])
			rs = rs[1:]
		}
		p.done <- out
	}
}

// resultOf turns an FSM response into a proposer's result: an error is the
// command's refusal.
func resultOf(resp any) proposalResult {
	if err, ok := resp.(error); ok {
		return proposalResult{err: err}
	}
	return proposalResult{v: resp}
}

// Entries returns how many log entries this store's group commit has
// proposed since it opened: with the count of commands applied, it says how
// well commands are grouped (each entry is one append and one fsync on every
// node).
func (s *Store) Entries() uint64 { return s.entries.Load() }
