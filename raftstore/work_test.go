package raftstore

import (
	"bytes"
	"io"
	"testing"
)

func work(id string) *PutWork {
	return &PutWork{Work: Work{ID: id, Agent: "agent-1", Operation: "op1", Address: "network.lan",
		Op: "create", Payload: []byte(`{"op":"create"}`), Created: t0}}
}

// TestWorkCommands covers the commands that carry work between the leader
// and agents, and the server address table, through the FSM alone.
func TestWorkCommands(t *testing.T) {
	runFSMCases(t, []fsmCase{
		{
			name: "set server",
			cmd:  &SetServer{ID: "n1", RaftAddr: "127.0.0.1:7001", HTTPAddr: "127.0.0.1:8001"},
			check: func(t *testing.T, s *State) {
				sv, ok := s.Server("n1")
				if !ok || sv.HTTPAddr != "127.0.0.1:8001" || sv.RaftAddr != "127.0.0.1:7001" {
					t.Errorf("server = %+v, %v", sv, ok)
				}
			},
		},
		{
			name:  "remove server",
			setup: []Command{&SetServer{ID: "n1", HTTPAddr: "a"}, &SetServer{ID: "n2", HTTPAddr: "b"}},
			cmd:   &SetServer{ID: "n1", Remove: true},
			check: func(t *testing.T, s *State) {
				if _, ok := s.Server("n1"); ok {
					t.Error("n1 still there")
				}
				if got := s.Servers(); len(got) != 1 || got[0].ID != "n2" {
					t.Errorf("servers = %+v", got)
				}
			},
		},
		{name: "set server without id", cmd: &SetServer{HTTPAddr: "a"}, wantErr: ErrInvalid},
		{
			name:  "put work",
			setup: withOpStarted(),
			cmd:   work("w1"),
			check: func(t *testing.T, s *State) {
				w, ok := s.Work("w1")
				if !ok || w.Done || w.Agent != "agent-1" || !bytes.Equal(w.Payload, []byte(`{"op":"create"}`)) {
					t.Errorf("work = %+v, %v", w, ok)
				}
				if p := s.PendingWork("agent-1"); len(p) != 1 || p[0].ID != "w1" {
					t.Errorf("pending = %+v", p)
				}
				if p := s.PendingWork("agent-2"); len(p) != 0 {
					t.Errorf("pending for another agent = %+v", p)
				}
			},
		},
		{name: "put work twice", setup: append(withOpStarted(), work("w1")), cmd: work("w1"), wantErr: ErrConflict},
		{name: "put work of an unknown operation", setup: base(), cmd: work("w1"), wantErr: ErrNotFound},
		{name: "put work for an unknown agent", setup: withOpStarted(),
			cmd: &PutWork{Work: Work{ID: "w1", Agent: "ghost", Operation: "op1"}}, wantErr: ErrNotFound},
		{name: "put work without agent", setup: withOpStarted(),
			cmd: &PutWork{Work: Work{ID: "w1", Operation: "op1"}}, wantErr: ErrInvalid},
		{
			name:  "report work",
			setup: append(withOpStarted(), work("w1")),
			cmd:   &ReportWork{ID: "w1", Agent: "agent-1", Result: []byte(`{"ok":true}`), Time: t0},
			check: func(t *testing.T, s *State) {
				w, _ := s.Work("w1")
				if !w.Done || string(w.Result) != `{"ok":true}` || !w.Reported.Equal(t0) {
					t.Errorf("work = %+v", w)
				}
				if p := s.PendingWork("agent-1"); len(p) != 0 {
					t.Errorf("reported work still pending: %+v", p)
				}
			},
		},
		{name: "report work twice",
			setup:   append(withOpStarted(), work("w1"), &ReportWork{ID: "w1", Agent: "agent-1", Time: t0}),
			cmd:     &ReportWork{ID: "w1", Agent: "agent-1", Time: t0},
			wantErr: ErrConflict},
		{name: "report work from another agent", setup: append(withOpStarted(), work("w1")),
			cmd: &ReportWork{ID: "w1", Agent: "agent-2", Time: t0}, wantErr: ErrConflict},
		{name: "report unknown work", setup: withOpStarted(),
			cmd: &ReportWork{ID: "nope", Agent: "agent-1", Time: t0}, wantErr: ErrNotFound},
		{
			name:  "delete work",
			setup: append(withOpStarted(), work("w1"), work("w2")),
			cmd:   &DeleteWork{IDs: []string{"w1", "missing"}},
			check: func(t *testing.T, s *State) {
				if _, ok := s.Work("w1"); ok {
					t.Error("w1 still there")
				}
				if _, ok := s.Work("w2"); !ok {
					t.Error("w2 was deleted too")
				}
			},
		},
	})
}

// TestWorkSurvivesSnapshot: work items and servers are part of the snapshot.
func TestWorkSurvivesSnapshot(t *testing.T) {
	h := newHarness(t)
	h.must(append(withOpStarted(), &SetServer{ID: "n1", HTTPAddr: "127.0.0.1:8001"}, work("w1"))...)
	snap, err := h.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	g := NewFSM()
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if w, ok := g.State().Work("w1"); !ok || w.Agent != "agent-1" {
		t.Errorf("work after restore = %+v, %v", w, ok)
	}
	if sv, ok := g.State().Server("n1"); !ok || sv.HTTPAddr != "127.0.0.1:8001" {
		t.Errorf("server after restore = %+v, %v", sv, ok)
	}
}
