package raftstore

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

func work(id string) *PutWork {
	return &PutWork{Work: Work{ID: id, Agent: "agent-1", Operation: "op1", Address: "network.lan",
		Op: "create", Payload: []byte(`{"op":"create"}`), Created: t0}}
}

func startWork(id, addr string) *StartWork {
	return &StartWork{
		Start: ActionStarted{Operation: "op1", Address: addr, Agent: "agent-1", Time: t0},
		Work:  work(id).Work,
	}
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
			name:  "start work",
			setup: withOpStarted(),
			cmd:   startWork("w1", "network.lan"),
			check: func(t *testing.T, s *State) {
				o, _ := s.Operation("op1")
				a := o.Action("network.lan")
				if a == nil || a.Status != ActionRunning || a.Agent != "agent-1" || a.Attempts != 1 {
					t.Errorf("action = %+v, want running on agent-1", a)
				}
				if p := s.PendingWork("agent-1"); len(p) != 1 || p[0].ID != "w1" || p[0].Index != s.Index() {
					t.Errorf("pending = %+v", p)
				}
			},
		},
		// Refused as a whole: the action stays pending, no work is put.
		{name: "start work for an unknown agent", setup: withOpStarted(), cmd: func() Command {
			c := startWork("w1", "network.lan")
			c.Work.Agent = "agent-9"
			return c
		}(), wantErr: ErrNotFound},
		{name: "start work of an action already done", setup: append(withOpStarted(),
			&ActionStarted{Operation: "op1", Address: "network.lan", Time: t0},
			&ActionFinished{Operation: "op1", Address: "network.lan", Status: ActionDone, Resource: resource("network.lan"), Time: t0}),
			cmd: startWork("w1", "network.lan"), wantErr: ErrConflict},
		{name: "start work for another action", setup: withOpStarted(), cmd: func() Command {
			c := startWork("w1", "network.lan")
			c.Work.Address = "server.web"
			return c
		}(), wantErr: ErrInvalid},
		{name: "start work that exists", setup: append(withOpStarted(), startWork("w1", "network.lan")),
			cmd: startWork("w1", "network.lan"), wantErr: ErrConflict},
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

// TestWorkPayloadForms: a work item's payload and result travel inside the
// command as JSON; entries written by a kiln from before carry them as
// base64 strings, and both read to the same work.
func TestWorkPayloadForms(t *testing.T) {
	payload, result := `{"op":"create","attrs":{"n":{"i":1}}}`, `{"ok":true}`
	put := &PutWork{Work: Work{ID: "w1", Agent: "agent-1", Operation: "op1", Address: "network.lan", Op: "create",
		Generation: "g1", Payload: RawJSON(payload), Created: t0}}
	entry, err := Encode(put)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(entry, []byte(`"Payload":`+payload)) {
		t.Errorf("payload is not inline JSON in the entry: %s", entry[1:])
	}
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	oldPut := fmt.Sprintf(`{"Work":{"ID":"w1","Agent":"agent-1","Operation":"op1","Address":"network.lan","Op":"create",`+
		`"Payload":%q,"Created":"2026-01-02T03:04:05Z","Done":false,"Reported":"0001-01-01T00:00:00Z","Index":0}}`, b64(payload))
	oldReport := fmt.Sprintf(`{"ID":"w1","Agent":"agent-1","Result":%q,"Time":"2026-01-02T03:04:05Z"}`, b64(result))
	newReport, err := Encode(&ReportWork{ID: "w1", Agent: "agent-1", Result: RawJSON(result), Time: t0})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name        string
		put, report []byte
	}{
		{"new", entry, newReport},
		{"old", append([]byte{byte(CmdPutWork)}, oldPut...), append([]byte{byte(CmdReportWork)}, oldReport...)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.must(withOpStarted()...)
			for _, e := range [][]byte{tt.put, tt.report} {
				h.idx++
				if resp := h.f.Apply(&raft.Log{Index: h.idx, Type: raft.LogCommand, Data: e}); resp != nil {
					t.Fatalf("apply %s: %v", e, resp)
				}
			}
			w, ok := h.state().Work("w1")
			if !ok || string(w.Payload) != payload || string(w.Result) != result || !w.Done || w.Op != "create" {
				t.Errorf("work = %+v (payload %s, result %s), %v", w, w.Payload, w.Result, ok)
			}
			// Written again, it is in the new form, whatever it was read from.
			snap := snapshotJSON(t, h.state())
			if !bytes.Contains(snap, []byte(`"Payload":`+payload)) || !bytes.Contains(snap, []byte(`"Result":`+result)) {
				t.Errorf("snapshot does not hold the payload as JSON: %s", snap)
			}
		})
	}
}

// TestWorkSnapshotForms: a version-1 snapshot (payload and result base64)
// and a version-2 one (JSON) read to the same work items.
func TestWorkSnapshotForms(t *testing.T) {
	payload, result := `{"op":"read","read":"id"}`, `{"ok":true,"exists":true}`
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	old := fmt.Sprintf(`{"Version":1,"Index":9,"Work":[{"ID":"w1","Agent":"a","Operation":"op1","Address":"x.y","Op":"read",`+
		`"Payload":%q,"Done":true,"Result":%q},{"ID":"w2","Agent":"a","Operation":"op1","Payload":""}]}`, b64(payload), b64(result))
	cur := `{"Version":2,"Index":9,"Work":[{"ID":"w1","Agent":"a","Operation":"op1","Address":"x.y","Op":"read",` +
		`"Payload":` + payload + `,"Done":true,"Result":` + result + `},{"ID":"w2","Agent":"a","Operation":"op1","Payload":null}]}`
	for name, snap := range map[string]string{"version 1": old, "version 2": cur} {
		tb, err := readSnapshot(strings.NewReader(snap))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		w := tb.work["w1"]
		if w == nil || string(w.Payload) != payload || string(w.Result) != result || !w.Done {
			t.Errorf("%s: w1 = %+v", name, w)
		}
		if w2 := tb.work["w2"]; w2 == nil || w2.Payload != nil {
			t.Errorf("%s: w2 = %+v", name, w2)
		}
	}
	for _, bad := range []string{
		`{"Version":1,"Work":[{"ID":"w1","Payload":"not base64"}]}`,
		fmt.Sprintf(`{"Version":1,"Work":[{"ID":"w1","Payload":%q}]}`, b64("not json")),
		`{"Version":2,"Work":[{"ID":"w1","Payload":5}]}`,
		`{"Version":3}`,
	} {
		if _, err := readSnapshot(strings.NewReader(bad)); err == nil {
			t.Errorf("%s read", bad)
		}
	}
}

func TestRawJSONRefusesNonDocuments(t *testing.T) {
	for _, r := range []RawJSON{RawJSON(`"a string"`), RawJSON(`{"a":`), RawJSON(`x`), RawJSON(`  `)} {
		if _, err := Encode(&ReportWork{ID: "w", Result: r}); err == nil {
			t.Errorf("%q encoded", r)
		}
	}
	if b, err := Encode(&ReportWork{ID: "w"}); err != nil || !bytes.Contains(b, []byte(`"Result":null`)) {
		t.Errorf("empty result = %s, %v", b, err)
	}
}
