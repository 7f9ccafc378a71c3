package raftstore

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"time"
)

// Servers and work items: what the daemon needs besides the stack state.
//
// A server's HTTP address is kept by raft id so that a follower can forward
// a write to the leader's API. A work item is one request to an agent (a
// create, update, delete or read of one resource instance): the leader puts
// it, the agent finds it with a blocking query on any server, runs it and
// reports; the report is committed here and the leader, which waits on the
// state, reads it back. The item's payload and result are opaque to the
// store: the daemon's wire JSON, kept as it is (RawJSON).

// ServerInfo is one kiln server: its raft id and the addresses it serves.
type ServerInfo struct {
	ID       string
	RaftAddr string
	HTTPAddr string
	Index    uint64
}

// Work is one request to an agent.
type Work struct {
	ID        string
	Agent     string
	Operation string
	Address   string
	Op        string // create | update | delete | read
	// Generation is the generation of the instance the request is about
	// (the action's), so that a new leader can match a request an earlier
	// one put without decoding Payload. Work put by a kiln from before it
	// does not have it.
	Generation string `json:",omitempty"`
	// Payload is the request as the agent receives it.
	Payload RawJSON
	Created time.Time
	// Done is set by ReportWork; Result is the agent's report.
	Done     bool
	Result   RawJSON `json:",omitempty"`
	Reported time.Time
	Index    uint64
}

// RawJSON is a JSON document (a work item, a report) that a command or a
// snapshot carries as it is, inside its own JSON. Entries and snapshots
// written by a kiln from before it carry the document as a base64 string
// (how encoding/json writes []byte): both forms decode. The document is an
// object or an array (a bare string would read as the older form), which
// MarshalJSON checks.
type RawJSON []byte

// MarshalJSON writes the document itself; empty is null.
func (r RawJSON) MarshalJSON() ([]byte, error) {
	if len(r) == 0 {
		return []byte("null"), nil
	}
	if !startsDocument(r) {
		return nil, errNotJSON
	}
	return r, nil // encoding/json checks that it is valid
}

// UnmarshalJSON reads a document, null, or the base64 string of a
// document (the older form).
func (r *RawJSON) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if bytes.Equal(data, []byte("null")) {
		*r = nil
		return nil
	}
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return err
		}
		if len(b) == 0 {
			*r = nil
			return nil
		}
		if !startsDocument(b) || !json.Valid(b) {
			return errNotJSON
		}
		*r = b
		return nil
	}
	// The decoder has checked that data is valid JSON.
	if !startsDocument(data) {
		return errNotJSON
	}
	*r = append((*r)[:0:0], data...)
	return nil
}

// startsDocument reports whether b starts like a JSON object or array.
func startsDocument(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) > 0 && (b[0] == '{' || b[0] == '[')
}

var errNotJSON = errors.New("raw JSON: not a JSON object or array")

func (w Work) clone() Work {
	w.Payload = slices.Clone(w.Payload)
	w.Result = slices.Clone(w.Result)
	return w
}

// SetServer records (or, with Remove, forgets) a server's addresses.
type SetServer struct {
	ID       string
	RaftAddr string
	HTTPAddr string
	Remove   bool `json:",omitempty"`
}

// PutWork records a work item for an agent of an unfinished operation.
type PutWork struct {
	Work Work
}

// ReportWork records an agent's result for a work item. A second report of
// the same item is refused (ErrConflict); a report of an item that is gone
// (its operation finished) is ErrNotFound.
type ReportWork struct {
	ID     string
	Agent  string
	Result RawJSON
	Time   time.Time
}

// StartWork records an action's start (as ActionStarted) and puts its
// first work item (as PutWork) in one step: the start is durable before any
// agent can see the work, with one log entry instead of two. Either both
// are applied or neither: the work must be for the started action.
type StartWork struct {
	Start ActionStarted
	Work  Work
}

// DeleteWork forgets work items (the leader gave up waiting for them).
type DeleteWork struct {
	IDs []string
}

func (*SetServer) Type() MessageType  { return CmdSetServer }
func (*PutWork) Type() MessageType    { return CmdPutWork }
func (*ReportWork) Type() MessageType { return CmdReportWork }
func (*DeleteWork) Type() MessageType { return CmdDeleteWork }
func (*StartWork) Type() MessageType  { return CmdStartWork }

func (c *SetServer) apply(tx *txn) (any, error) {
	if c.ID == "" {
		return nil, invalid("server id is empty")
	}
	if c.Remove {
		delete(tx.t.servers, c.ID)
		return nil, nil
	}
	tx.t.servers[c.ID] = &ServerInfo{ID: c.ID, RaftAddr: c.RaftAddr, HTTPAddr: c.HTTPAddr, Index: tx.index}
	return nil, nil
}

func (c *PutWork) apply(tx *txn) (any, error) {
	if err := tx.checkWork(c.Work); err != nil {
		return nil, err
	}
	tx.putWork(c.Work)
	return nil, nil
}

func (c *StartWork) apply(tx *txn) (any, error) {
	if c.Work.Operation != c.Start.Operation || c.Work.Address != c.Start.Address {
		return nil, invalid("work %s is for %s %s, not the action started (%s %s)", c.Work.ID, c.Work.Operation, c.Work.Address, c.Start.Operation, c.Start.Address)
	}
	if err := tx.checkWork(c.Work); err != nil {
		return nil, err
	}
	if _, err := c.Start.apply(tx); err != nil {
		return nil, err
	}
	tx.putWork(c.Work)
	return nil, nil
}

// checkWork checks that work w may be put.
func (tx *txn) checkWork(w Work) error {
	switch {
	case w.ID == "" || w.Agent == "":
		return invalid("work id and agent are required")
	}
	if _, ok := tx.t.work[w.ID]; ok {
		return conflict("work %s exists", w.ID)
	}
	o, err := tx.operation(w.Operation)
	if err != nil {
		return err
	}
	if o.Status.Final() {
		return conflict("operation %s is already %s", o.ID, o.Status)
	}
	_, err = tx.agent(w.Agent)
	return err
}

// putWork stores work w (checked by checkWork), not reported yet.
func (tx *txn) putWork(w Work) {
	w.Done, w.Result, w.Reported = false, nil, time.Time{}
	w.Index = tx.index
	tx.t.work[w.ID] = &w
}

func (c *ReportWork) apply(tx *txn) (any, error) {
	w, ok := tx.t.work[c.ID]
	if !ok {
		return nil, notFound("work %s", c.ID)
	}
	if c.Agent != "" && c.Agent != w.Agent {
		return nil, conflict("work %s is assigned to agent %s, not %s", c.ID, w.Agent, c.Agent)
	}
	if w.Done {
		return nil, conflict("work %s is already reported", c.ID)
	}
	w.Done, w.Result, w.Reported, w.Index = true, c.Result, c.Time, tx.index
	return nil, nil
}

func (c *DeleteWork) apply(tx *txn) (any, error) {
	for _, id := range c.IDs {
		delete(tx.t.work, id)
	}
	return nil, nil
}

// dropWork forgets the work items of an operation (it finished).
func (tx *txn) dropWork(opID string) {
	for id, w := range tx.t.work {
		if w.Operation == opID {
			delete(tx.t.work, id)
		}
	}
}

func serversTable(t *tables) map[string]*ServerInfo { return t.servers }
func workTable(t *tables) map[string]*Work          { return t.work }
func cloneWork(w Work) Work                         { return w.clone() }
func byWorkIndex(a, b *Work) bool                   { return a.Index < b.Index }

// Server returns a server's addresses by raft id.
func (s *State) Server(id string) (ServerInfo, bool) {
	return getOne(s, serversTable, id, nil)
}

// Servers returns every recorded server, sorted by id.
func (s *State) Servers() []ServerInfo {
	return getAll(s, serversTable, nil, nil, func(a, b *ServerInfo) bool { return a.ID < b.ID })
}

// Work returns one work item.
func (s *State) Work(id string) (Work, bool) {
	return getOne(s, workTable, id, cloneWork)
}

// WorkReport returns, without copying the item, whether work id exists
// and was reported, and then its report: the cheap check of a leader that
// waits for it.
func (s *State) WorkReport(id string) (result []byte, done, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	w, ok := s.t.work[id]
	if !ok || !w.Done {
		return nil, false, ok
	}
	return slices.Clone(w.Result), true, true
}

// PendingWork returns the work items of an agent not reported yet, in the
// order they were put.
func (s *State) PendingWork(agentID string) []Work {
	return getAll(s, workTable, func(w *Work) bool { return w.Agent == agentID && !w.Done }, cloneWork,
		func(a, b *Work) bool { return a.Index < b.Index || a.Index == b.Index && a.ID < b.ID })
}

// WorkFor returns the work items of one action of an operation (reported or
// not), in the order they were put: what a new leader looks at before it
// asks an agent again.
func (s *State) WorkFor(opID, address string) []Work {
	return getAll(s, workTable, func(w *Work) bool { return w.Operation == opID && w.Address == address }, cloneWork, byWorkIndex)
}
