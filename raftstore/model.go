package raftstore

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/kiln-dev/kiln/planner"
	"github.com/kiln-dev/kiln/spec"
)

// This file holds the records of the replicated state. Every record is a plain
// value that round-trips through encoding/json; the read methods of State hand
// out deep copies of them.

// Role is what a token may do in its project.
type Role string

// Roles of a token: a reader plans and reads, a member also applies and
// destroys, an admin does everything.
const (
	RoleAdmin  Role = "admin"
	RoleMember Role = "member"
	RoleReader Role = "reader"
)

// Valid reports whether r is one of the known roles.
func (r Role) Valid() bool {
	return r == RoleAdmin || r == RoleMember || r == RoleReader
}

// Project groups stacks and tokens.
type Project struct {
	Name    string
	Created time.Time
	Index   uint64 // state index of the last change
}

// Token is an API token. Only the sha256 of its secret is stored.
type Token struct {
	ID          string
	Project     string
	Role        Role
	SecretHash  string // hex sha256 of the secret, see HashSecret
	Description string
	Created     time.Time
	Index       uint64
	// Kind is "" for an API token (Project and Role say what it may do),
	// TokenAgent for an agent credential (bound to Agent) or TokenJoin for
	// a join token (it may only register agents).
	Kind  TokenKind `json:",omitempty"`
	Agent string    `json:",omitempty"`
	// Expires, when set, is when the token stops working.
	Expires time.Time `json:",omitzero"`
}

// TokenKind says what a token is for.
type TokenKind string

// Token kinds besides the API token ("").
const (
	TokenAgent TokenKind = "agent"
	TokenJoin  TokenKind = "join"
)

// Expired reports whether the token has expired at now.
func (t Token) Expired(now time.Time) bool {
	return !t.Expires.IsZero() && !now.Before(t.Expires)
}

// HashSecret returns the hex sha256 of a token secret, the form stored in Token.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// HashBlob returns the content hash under which a blob is stored.
func HashBlob(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// StackStatus is the state of a stack as a whole.
type StackStatus string

// Stack statuses.
const (
	StackPending    StackStatus = "PENDING" // desired state recorded, never applied
	StackInProgress StackStatus = "IN_PROGRESS"
	StackComplete   StackStatus = "COMPLETE"
	StackFailed     StackStatus = "FAILED"
	StackCancelled  StackStatus = "CANCELLED"
	StackDestroyed  StackStatus = "DESTROYED"
)

// Stack is the desired state of one stack and a summary of its actual state.
type Stack struct {
	Project string
	Name    string
	// BundleHash names the template bundle blob (see PutBlob).
	BundleHash string
	// Vars and VarFiles as the user gave them.
	Vars     []spec.RawVar
	VarFiles []spec.VarFile
	// Params are the resolved param values when the daemon records them.
	Params Values
	// Generation counts the changes of the desired state.
	Generation uint64
	Status     StackStatus
	// StatusReason says why, for FAILED and CANCELLED.
	StatusReason string
	// Expires is when the TTL reaper destroys the stack; zero means never.
	Expires time.Time
	// Outputs as of the last finished apply.
	Outputs Outputs
	// Serial counts the changes of the actual state (resources); a plan made
	// against another serial is refused.
	Serial uint64
	// ActiveOperation is the id of the unfinished operation, if any.
	ActiveOperation string
	Created         time.Time
	Updated         time.Time
	Index           uint64
}

// ResourceStatus is the state of one resource instance.
type ResourceStatus string

// Resource statuses.
const (
	ResourceCreating ResourceStatus = "creating"
	ResourceReady    ResourceStatus = "ready"
	ResourceUpdating ResourceStatus = "updating"
	ResourceDeleting ResourceStatus = "deleting"
	ResourceFailed   ResourceStatus = "failed"
)

// Resource is one resource instance that exists (or is being made).
type Resource struct {
	Project string
	Stack   string
	// State is what the planner compares against: address, kind, attributes,
	// computed attributes, dependencies.
	State planner.ResourceState
	// PhysicalName is the name of the object on its host.
	PhysicalName string
	Status       ResourceStatus
	Error        string
	// Node is the agent that owns the resource.
	Node string
	// ReadyAt is when a server's guest passed its readiness check (the
	// create or update that made it), ReadySeconds how long it took.
	ReadyAt      time.Time `json:",omitzero"`
	ReadySeconds float64   `json:",omitempty"`
	Updated      time.Time
	Index        uint64
}

// OpKind is what an operation does.
type OpKind string

// Operation kinds.
const (
	OpApply   OpKind = "apply"
	OpDestroy OpKind = "destroy"
)

// OpStatus is the state of an operation.
type OpStatus string

// Operation statuses. Done, failed and cancelled are final.
const (
	OpPending   OpStatus = "pending"
	OpRunning   OpStatus = "running"
	OpDone      OpStatus = "done"
	OpFailed    OpStatus = "failed"
	OpCancelled OpStatus = "cancelled"
)

// Final reports whether the status is final.
func (s OpStatus) Final() bool { return s == OpDone || s == OpFailed || s == OpCancelled }

// ActionStatus is the state of one action of an operation. It is kiln's one
// vocabulary of action statuses: the FSM records it, the leader's engine
// runs on it (daemon/engine), and the API renders it as is (api.ActionStatus,
// docs/api.yaml).
type ActionStatus string

// Action statuses. Pending and running are not final; the others are.
// Skipped: a dependency failed (or an older leader's record of a
// cancelled action, which it wrote as skipped). Cancelled: the operation was
// cancelled before the action started; it never runs, not even when the
// operation is resumed.
const (
	ActionPending   ActionStatus = "pending"
	ActionRunning   ActionStatus = "running"
	ActionDone      ActionStatus = "done"
	ActionFailed    ActionStatus = "failed"
	ActionSkipped   ActionStatus = "skipped"
	ActionCancelled ActionStatus = "cancelled"
)

// ActionStatuses lists every action status, in the order of an action's
// life.
var ActionStatuses = []ActionStatus{ActionPending, ActionRunning, ActionDone, ActionFailed, ActionSkipped, ActionCancelled}

// Final reports whether nothing more will happen to an action in this
// status.
func (s ActionStatus) Final() bool {
	switch s {
	case ActionDone, ActionFailed, ActionSkipped, ActionCancelled:
		return true
	}
	return false
}

// NotStarted reports whether the status is one an action ends in without
// having run: skipped or cancelled. Only a pending action gets one.
func (s ActionStatus) NotStarted() bool {
	return s == ActionSkipped || s == ActionCancelled
}

// ActionState is the progress of one change of an operation's plan. The
// actions of an operation are in the plan's order; a no-op change is done
// from the start.
type ActionState struct {
	Address  string
	Action   planner.Action
	Status   ActionStatus
	Error    string // why it failed or was skipped
	Attempts int
	Agent    string // the agent it is assigned to
	Assigned time.Time
	Started  time.Time
	Finished time.Time
	// ReadySeconds is how long a server's guest took to be ready.
	ReadySeconds float64 `json:",omitempty"`
	// Index is the state index of the action's last change (0: recorded
	// by a kiln from before it was kept).
	Index uint64 `json:",omitempty"`
}

// Operation is an apply or destroy of one stack.
type Operation struct {
	ID      string
	Project string
	Stack   string
	Kind    OpKind
	Plan    planner.Result
	// Serial is the stack serial the plan was made against.
	Serial          uint64
	Status          OpStatus
	Error           string
	CancelRequested bool
	// Forget: the stack is to be forgotten once this destroy is done.
	Forget      bool `json:",omitempty"`
	Actions     []ActionState
	Created     time.Time
	Started     time.Time
	Finished    time.Time
	CreateIndex uint64
	Index       uint64

	// byAddress indexes Actions by address (their order never changes). It
	// is built when the FSM stores the operation (indexActions) and only
	// read after, so copies share it; without it Action scans.
	byAddress map[string]int
}

// indexActions builds the index of Action: an operation of thousands of
// actions is looked up on every record of one of them.
func (o *Operation) indexActions() {
	o.byAddress = make(map[string]int, len(o.Actions))
	for i, a := range o.Actions {
		o.byAddress[a.Address] = i
	}
}

// Action returns the action with the given address, or nil.
func (o *Operation) Action(addr string) *ActionState {
	if o.byAddress != nil {
		if i, ok := o.byAddress[addr]; ok && i < len(o.Actions) && o.Actions[i].Address == addr {
			return &o.Actions[i]
		}
	}
	for i := range o.Actions {
		if o.Actions[i].Address == addr {
			return &o.Actions[i]
		}
	}
	return nil
}

// Change returns the plan's change for an address, or nil.
func (o *Operation) Change(addr string) *planner.Change {
	// The actions were made from the plan's changes, in the same order.
	if i, ok := o.byAddress[addr]; ok && i < len(o.Plan.Changes) && o.Plan.Changes[i].Address == addr {
		return &o.Plan.Changes[i]
	}
	for i := range o.Plan.Changes {
		if o.Plan.Changes[i].Address == addr {
			return &o.Plan.Changes[i]
		}
	}
	return nil
}

// Level of an event.
type Level string

// Event levels.
const (
	LevelInfo  Level = "info"
	LevelWarn  Level = "warn"
	LevelError Level = "error"
)

// Event is one thing that happened to a stack.
type Event struct {
	// Seq numbers the events of one stack from 1.
	Seq uint64
	// Index is the state index of the command that recorded the event.
	Index     uint64
	Time      time.Time
	Node      string
	Level     Level
	Message   string
	Operation string `json:",omitempty"`
	Address   string `json:",omitempty"`
}

// Capacity is what an agent's host offers. The ratios and the accelerator
// were added later: a record without them decodes to zero values, which
// mean the scheduler's default ratios and an unknown accelerator.
type Capacity struct {
	CPUs        int
	MemoryBytes int64
	DiskBytes   int64
	// CPURatio and MemoryRatio are the agent's allocation ratios (0: the
	// defaults).
	CPURatio    float64
	MemoryRatio float64
	// Accel is "kvm" or "tcg" ("" unknown); AccelReason says why.
	Accel       string
	AccelReason string `json:",omitempty"`
	// HostPortsLo..HostPortsHi are the host ports the agent forwards and
	// ReservedPorts those it never does (added later: 0..0 is unknown).
	HostPortsLo   int   `json:",omitempty"`
	HostPortsHi   int   `json:",omitempty"`
	ReservedPorts []int `json:",omitempty"`
}

// AgentStatus says whether an agent is heartbeating.
type AgentStatus string

// Agent statuses.
const (
	AgentUp   AgentStatus = "up"
	AgentDown AgentStatus = "down"
)

// Agent is a hypervisor host that runs actions.
type Agent struct {
	ID            string
	Address       string
	Capacity      Capacity
	Images        []string // content hashes or names of the cached images
	Status        AgentStatus
	StatusReason  string
	Registered    time.Time
	LastHeartbeat time.Time
	Index         uint64
	// Revoked: its credentials were revoked; only a global admin's
	// registration takes it back.
	Revoked bool `json:",omitempty"`
}

// Assignment is an action assigned to an agent and not finished yet.
type Assignment struct {
	Operation string
	Project   string
	Stack     string
	Kind      OpKind
	Action    ActionState
	Change    planner.Change
}
