package raftstore

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/kiln-dev/kiln/planner"
	"github.com/kiln-dev/kiln/spec"
)

// MessageType is the first byte of every log entry: it says how to decode the
// JSON body that follows. Numbers are explicit and only ever appended; a
// retired number is never reused.
type MessageType uint8

// Command types.
const (
	CmdPutBlob         MessageType = 1
	CmdDeleteBlob      MessageType = 2
	CmdUpsertProject   MessageType = 3
	CmdCreateToken     MessageType = 4
	CmdRevokeToken     MessageType = 5
	CmdPutStack        MessageType = 6
	CmdDeleteStack     MessageType = 7
	CmdRenewTTL        MessageType = 8
	CmdStartOperation  MessageType = 9
	CmdCancelOperation MessageType = 10
	CmdActionStarted   MessageType = 11
	CmdActionFinished  MessageType = 12
	CmdFinishOperation MessageType = 13
	CmdAssignAction    MessageType = 14
	CmdUpsertResource  MessageType = 15
	CmdDeleteResource  MessageType = 16
	CmdAppendEvents    MessageType = 17
	CmdRegisterAgent   MessageType = 18
	CmdAgentHeartbeat  MessageType = 19
	CmdMarkAgentDown   MessageType = 20
	CmdSetServer       MessageType = 21
	CmdPutWork         MessageType = 22
	CmdReportWork      MessageType = 23
	CmdDeleteWork      MessageType = 24
	CmdRevokeAgent     MessageType = 25
	CmdPutPlan         MessageType = 26 // plans.go
	CmdExpirePlans     MessageType = 27 // plans.go
	// CmdBatch is several commands in one entry (batch.go). It never carries
	// IgnoreUnknownTypeFlag: an older FSM must stop on it, not skip writes.
	CmdBatch MessageType = 28
	// CmdStartWork records an action's start with its first work item
	// (work.go).
	CmdStartWork MessageType = 29
	// Append new types here.
)

// IgnoreUnknownTypeFlag set on a type means an older FSM that does not know
// the type skips the entry instead of stopping (for optional commands added
// in a later version). Without it an unknown type is a bug and panics.
const IgnoreUnknownTypeFlag MessageType = 128

// Command is one typed change of the state. Only this package defines them.
type Command interface {
	Type() MessageType
	apply(tx *txn) (any, error)
}

var commandTypes = map[MessageType]func() Command{
	CmdPutBlob:         func() Command { return new(PutBlob) },
	CmdDeleteBlob:      func() Command { return new(DeleteBlob) },
	CmdUpsertProject:   func() Command { return new(UpsertProject) },
	CmdCreateToken:     func() Command { return new(CreateToken) },
	CmdRevokeToken:     func() Command { return new(RevokeToken) },
	CmdPutStack:        func() Command { return new(PutStack) },
	CmdDeleteStack:     func() Command { return new(DeleteStack) },
	CmdRenewTTL:        func() Command { return new(RenewTTL) },
	CmdStartOperation:  func() Command { return new(StartOperation) },
	CmdCancelOperation: func() Command { return new(CancelOperation) },
	CmdActionStarted:   func() Command { return new(ActionStarted) },
	CmdActionFinished:  func() Command { return new(ActionFinished) },
	CmdFinishOperation: func() Command { return new(FinishOperation) },
	CmdAssignAction:    func() Command { return new(AssignAction) },
	CmdUpsertResource:  func() Command { return new(UpsertResource) },
	CmdDeleteResource:  func() Command { return new(DeleteResource) },
	CmdAppendEvents:    func() Command { return new(AppendEvents) },
	CmdRegisterAgent:   func() Command { return new(RegisterAgent) },
	CmdAgentHeartbeat:  func() Command { return new(AgentHeartbeat) },
	CmdMarkAgentDown:   func() Command { return new(MarkAgentDown) },
	CmdSetServer:       func() Command { return new(SetServer) },
	CmdPutWork:         func() Command { return new(PutWork) },
	CmdReportWork:      func() Command { return new(ReportWork) },
	CmdDeleteWork:      func() Command { return new(DeleteWork) },
	CmdRevokeAgent:     func() Command { return new(RevokeAgent) },
	CmdStartWork:       func() Command { return new(StartWork) },
}

// Encode returns the log entry of a command: its type byte, then its JSON.
func Encode(c Command) ([]byte, error) {
	if b, ok := c.(*Batch); ok {
		return b.encode()
	}
	body, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode command %d: %w", c.Type(), err)
	}
	buf := make([]byte, 0, len(body)+1)
	buf = append(buf, byte(c.Type()))
	return append(buf, body...), nil
}

// Decode is the inverse of Encode. It returns (nil, nil) for an unknown type
// that carries IgnoreUnknownTypeFlag.
func Decode(data []byte) (c Command, err error) {
	// Bad bytes are an error, never a panic (a value codec that trips on
	// them included).
	defer func() {
		if r := recover(); r != nil {
			c, err = nil, fmt.Errorf("decode command: %v", r)
		}
	}()
	if len(data) == 0 {
		return nil, fmt.Errorf("decode command: empty entry")
	}
	t := MessageType(data[0])
	if t == CmdBatch {
		return decodeBatch(data[1:])
	}
	mk, ok := commandTypes[t&^IgnoreUnknownTypeFlag]
	if !ok {
		if t&IgnoreUnknownTypeFlag != 0 {
			return nil, nil
		}
		return nil, fmt.Errorf("decode command: unknown type %d", t)
	}
	c = mk()
	if err := json.Unmarshal(data[1:], c); err != nil {
		return nil, fmt.Errorf("decode command %d: %w", t, err)
	}
	return c, nil
}

// txn is the context of one command's apply: the tables it changes and the
// index it is applied at. A command checks everything before it changes
// anything, so that a refused command leaves no trace.
type txn struct {
	t     *tables
	index uint64
}

func (tx *txn) stack(project, name string) (*Stack, error) {
	st, ok := tx.t.stacks[stackKey(project, name)]
	if !ok {
		return nil, notFound("stack %s/%s", project, name)
	}
	return st, nil
}

func (tx *txn) operation(id string) (*Operation, error) {
	o, ok := tx.t.operations[id]
	if !ok {
		return nil, notFound("operation %s", id)
	}
	return o, nil
}

func (tx *txn) agent(id string) (*Agent, error) {
	ag, ok := tx.t.agents[id]
	if !ok {
		return nil, notFound("agent %s", id)
	}
	return ag, nil
}

func (tx *txn) ensureProject(name string, at time.Time) {
	if name == "" {
		return
	}
	if _, ok := tx.t.projects[name]; !ok {
		tx.t.projects[name] = &Project{Name: name, Created: at, Index: tx.index}
	}
}

// appendEvents adds events to a stack's bounded log, numbering them.
func (tx *txn) appendEvents(key string, evs []Event) {
	if len(evs) == 0 {
		return
	}
	el := tx.t.events[key]
	if el == nil {
		el = &eventLog{NextSeq: 1}
		tx.t.events[key] = el
	}
	for _, e := range evs {
		e.Seq = el.NextSeq
		e.Index = tx.index
		if e.Level == "" {
			e.Level = LevelInfo
		}
		el.NextSeq++
		el.Events = append(el.Events, e)
	}
	// Compact only when twice the bound is reached, so that an append costs
	// O(1) amortized; readers see the newest MaxEvents (eventLog.kept).
	if n := len(el.Events); n > 2*MaxEvents {
		el.Events = append(make([]Event, 0, 2*MaxEvents), el.Events[n-MaxEvents:]...)
	}
}

// kept returns the newest MaxEvents events.
func (el *eventLog) kept() []Event {
	if n := len(el.Events); n > MaxEvents {
		return el.Events[n-MaxEvents:]
	}
	return el.Events
}

// putResource records a resource of a stack and moves the stack's serial.
func (tx *txn) putResource(st *Stack, r Resource, at time.Time) {
	key := stackKey(st.Project, st.Name)
	r.Project, r.Stack = st.Project, st.Name
	r.Index = tx.index
	if r.Updated.IsZero() {
		r.Updated = at
	}
	rs := tx.t.resources[key]
	if rs == nil {
		rs = map[string]*Resource{}
		tx.t.resources[key] = rs
	}
	rs[r.State.Address] = &r
	tx.bumpSerial(st, at)
}

func (tx *txn) deleteResource(st *Stack, addr string, at time.Time) {
	key := stackKey(st.Project, st.Name)
	if _, ok := tx.t.resources[key][addr]; !ok {
		return
	}
	delete(tx.t.resources[key], addr)
	if len(tx.t.resources[key]) == 0 {
		delete(tx.t.resources, key)
	}
	tx.bumpSerial(st, at)
}

func (tx *txn) bumpSerial(st *Stack, at time.Time) {
	st.Serial++
	st.Index = tx.index
	if !at.IsZero() {
		st.Updated = at
	}
}

// MaxBlobSize bounds a blob: a template bundle is text, and every byte of it
// goes through the log and into every snapshot.
const MaxBlobSize = 8 << 20

// PutBlob stores a content-addressed blob (a template bundle) once.
type PutBlob struct {
	Hash string // HashBlob(Data)
	Data []byte
	// Time is when the blob was put: an unreferenced blob is collected
	// BlobGrace after it (plans.go). Zero: collectable at once.
	Time time.Time `json:",omitzero"`
}

// DeleteBlob drops a blob that no stack refers to.
type DeleteBlob struct {
	Hash string
}

// UpsertProject creates a project (an existing one is left as it is).
type UpsertProject struct {
	Name string
	Time time.Time
}

// CreateToken records a token; its project is created if needed. Project ""
// is a management token, valid for every project.
type CreateToken struct {
	ID          string
	Project     string
	Role        Role
	SecretHash  string // HashSecret(secret)
	Description string
	Time        time.Time
	// Kind, Agent and Expires: see Token. An agent credential or a join
	// token has no project and no role.
	Kind    TokenKind `json:",omitempty"`
	Agent   string    `json:",omitempty"`
	Expires time.Time `json:",omitzero"`
}

// RevokeToken deletes a token. Revoking an agent credential revokes its
// agent (see RevokeAgent).
type RevokeToken struct {
	ID string
}

// PutStack records the desired state of a stack, creating it (and its
// project) if needed, and raises its generation.
type PutStack struct {
	Project    string
	Name       string
	BundleHash string
	Vars       []spec.RawVar
	VarFiles   []spec.VarFile
	Params     Values
	// Expires is the TTL expiry; zero means no TTL.
	Expires time.Time
	Time    time.Time
}

// DeleteStack forgets a stack with its resources, operations and events. It
// is refused while an operation runs, or while resources remain unless Force.
type DeleteStack struct {
	Project string
	Name    string
	Force   bool
}

// RenewTTL moves the expiry of a stack (zero clears it).
type RenewTTL struct {
	Project string
	Name    string
	Expires time.Time
	Time    time.Time
}

// StartOperation records an operation with its plan. It is refused with
// ErrStaleSerial if the stack serial is no longer Serial, and with
// ErrConflict if another operation of the stack is unfinished. Desired, when
// set, is recorded in the same step (only if the operation is accepted).
type StartOperation struct {
	ID      string
	Project string
	Stack   string
	Kind    OpKind
	Plan    planner.Result
	// Serial is the stack serial the plan was made against (normally Plan.Serial).
	Serial  uint64
	Desired *PutStack `json:",omitempty"`
	Events  []Event   `json:",omitempty"`
	// Forget asks the leader to forget the stack (DeleteStack) once this
	// destroy is done.
	Forget bool `json:",omitempty"`
	Time   time.Time
}

// CancelOperation asks for an operation to stop: the engine starts nothing
// more and finishes it as cancelled.
type CancelOperation struct {
	ID     string
	Reason string
	Events []Event `json:",omitempty"`
	Time   time.Time
}

// ActionStarted marks an action running (again: every start counts an attempt).
type ActionStarted struct {
	Operation string
	Address   string
	Agent     string  // when set, the action is (re)assigned to it
	Events    []Event `json:",omitempty"`
	Time      time.Time
}

// ActionFinished records the end of an action: done, failed, skipped or
// cancelled, the last two only for a pending action (leaders from before
// cancelled existed recorded a cancelled action as skipped). With Resource
// set, the resource is recorded; with DeleteResource, the address is
// forgotten; either moves the stack serial. Skip lists pending dependents
// the engine skips in the same step, with SkipReason.
type ActionFinished struct {
	Operation      string
	Address        string
	Status         ActionStatus
	Error          string
	Resource       *Resource `json:",omitempty"`
	DeleteResource bool      `json:",omitempty"`
	Skip           []string  `json:",omitempty"`
	SkipReason     string    `json:",omitempty"`
	Events         []Event   `json:",omitempty"`
	// ReadySeconds: a server's guest was ready after that long.
	ReadySeconds float64 `json:",omitempty"`
	Time         time.Time
}

// FinishOperation ends an operation and sets the stack's status from it:
// done apply -> COMPLETE, done destroy -> DESTROYED, failed -> FAILED,
// cancelled -> CANCELLED. A done operation needs every action final; a
// failed or cancelled one skips what is pending and fails what is running.
type FinishOperation struct {
	ID     string
	Status OpStatus
	Error  string
	// Outputs of a done apply; nil leaves the stack's outputs as they are.
	Outputs Outputs `json:",omitempty"`
	Events  []Event `json:",omitempty"`
	Time    time.Time
}

// AssignAction places a not yet finished action on an up agent.
type AssignAction struct {
	Operation string
	Address   string
	Agent     string
	Time      time.Time
}

// UpsertResource records a resource outside an action (refresh, adoption).
type UpsertResource struct {
	Resource Resource
	Time     time.Time
}

// DeleteResource forgets a resource outside an action.
type DeleteResource struct {
	Project string
	Stack   string
	Address string
	Time    time.Time
}

// AppendEvents adds events to a stack.
type AppendEvents struct {
	Project string
	Stack   string
	Events  []Event
}

// RegisterAgent records an agent (again: it is updated) and marks it up.
type RegisterAgent struct {
	ID       string
	Address  string
	Capacity Capacity
	Images   []string
	Time     time.Time
	// CredentialID and CredentialHash, when set, record the agent's new
	// credential; it replaces the agent's earlier ones.
	CredentialID   string `json:",omitempty"`
	CredentialHash string `json:",omitempty"`
	// ByJoin: the registration comes with a join token, which may not take
	// over an agent that has a credential or was revoked.
	ByJoin bool `json:",omitempty"`
}

// RevokeAgent deletes an agent's credentials, marks it revoked and down
// (its pending actions are unassigned). Revoking twice is no error.
type RevokeAgent struct {
	ID     string
	Reason string
	Time   time.Time
}

// AgentHeartbeat marks an agent up; Capacity and Images, when set, replace
// what is recorded.
type AgentHeartbeat struct {
	ID       string
	Capacity *Capacity `json:",omitempty"`
	Images   []string  `json:",omitempty"`
	Time     time.Time
}

// MarkAgentDown marks an agent down and unassigns the actions it had not
// started, so the scheduler places them elsewhere.
type MarkAgentDown struct {
	ID     string
	Reason string
	Time   time.Time
}

func (*PutBlob) Type() MessageType         { return CmdPutBlob }
func (*DeleteBlob) Type() MessageType      { return CmdDeleteBlob }
func (*UpsertProject) Type() MessageType   { return CmdUpsertProject }
func (*CreateToken) Type() MessageType     { return CmdCreateToken }
func (*RevokeToken) Type() MessageType     { return CmdRevokeToken }
func (*PutStack) Type() MessageType        { return CmdPutStack }
func (*DeleteStack) Type() MessageType     { return CmdDeleteStack }
func (*RenewTTL) Type() MessageType        { return CmdRenewTTL }
func (*StartOperation) Type() MessageType  { return CmdStartOperation }
func (*CancelOperation) Type() MessageType { return CmdCancelOperation }
func (*ActionStarted) Type() MessageType   { return CmdActionStarted }
func (*ActionFinished) Type() MessageType  { return CmdActionFinished }
func (*FinishOperation) Type() MessageType { return CmdFinishOperation }
func (*AssignAction) Type() MessageType    { return CmdAssignAction }
func (*UpsertResource) Type() MessageType  { return CmdUpsertResource }
func (*DeleteResource) Type() MessageType  { return CmdDeleteResource }
func (*AppendEvents) Type() MessageType    { return CmdAppendEvents }
func (*RegisterAgent) Type() MessageType   { return CmdRegisterAgent }
func (*AgentHeartbeat) Type() MessageType  { return CmdAgentHeartbeat }
func (*MarkAgentDown) Type() MessageType   { return CmdMarkAgentDown }
func (*RevokeAgent) Type() MessageType     { return CmdRevokeAgent }
