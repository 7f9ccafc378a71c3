// Package api holds the wire types of kiln's HTTP API (JSON under /v1): the
// contract between the server (daemon/server), the Go client (client),
// agents and the CLI. docs/api.yaml documents the same contract (OpenAPI).
//
// Authentication: every route except GET /v1/health needs
// "Authorization: Bearer <token>". Missing or wrong token: 401. A stack of
// another project: 404. Bodies are JSON, at most MaxBodyBytes, unknown fields
// refused; errors are {"error": "...", "field": "..."} with 4xx/5xx.
//
// Routes:
//
//	GET    /v1/health                              Health (no token)
//	GET    /metrics                                Prometheus text format
//	GET    /v1/stacks                              []StackSummary
//	GET    /v1/stacks/{stack}                      StackDetail
//	DELETE /v1/stacks/{stack}                      202 OperationRef (destroy, then forget the stack)
//	POST   /v1/stacks/{stack}/plan     PlanRequest  PlanResponse
//	POST   /v1/stacks/{stack}/apply    ApplyRequest 202 OperationRef
//	POST   /v1/stacks/{stack}/destroy  DestroyRequest 202 OperationRef
//	POST   /v1/stacks/{stack}/renew    RenewRequest StackDetail
//	GET    /v1/stacks/{stack}/outputs              map[string]OutputValue
//	GET    /v1/stacks/{stack}/events?index=N&wait=30s  EventsResponse (blocking query)
//	GET    /v1/stacks/{stack}/resources/{address}/console  text (last 256 KiB of the serial console; ?offset=N answers ConsoleChunk for following)
//	GET    /v1/operations/{id}?index=N&wait=30s    Operation (blocking query)
//	POST   /v1/operations/{id}/cancel              Operation
//	GET    /v1/tokens                              []TokenInfo (admin)
//	POST   /v1/tokens                  TokenRequest TokenCreated (admin)
//	DELETE /v1/tokens/{id}                         204 (admin)
//	GET    /v1/agents                              []AgentInfo
//	POST   /v1/agents                  AgentRegister AgentInfo (global admin or join token: issues the agent's credential; an agent's credential: its own id)
//	POST   /v1/agents/{id}/heartbeat   AgentHeartbeat 204
//	GET    /v1/agents/{id}/work?index=N&wait=30s   WorkResponse (blocking query; any server answers)
//	POST   /v1/agents/{id}/results     ActionReport 204
//	GET    /v1/agents/{id}/hostwork?index=N&wait=30s  HostWorkResponse (refresh | images | prune | gc | console; held by the leader, not in raft; see hostops.go)
//	POST   /v1/agents/{id}/hostresults HostAnswer  204
//	POST   /v1/agents/{id}/events      Event    204 (progress, e.g. image downloads)
//	POST   /v1/agents/{id}/revoke                  AgentInfo (global admin: its credentials stop working)
//	GET    /v1/images                              []ImageInfo (per agent)
//	POST   /v1/images/prune                        200 []ImageInfo removed (admin; 409 while an image without sha256 is being fetched)
//	GET    /v1/gc?force=false                      GCReport (admin)
//	GET    /v1/operator/raft/peers                 []Peer (admin)
//	POST   /v1/operator/raft/peers     JoinRequest 204 (admin; used by `kiln server -join`)
//	DELETE /v1/operator/raft/peers/{id}            204 (admin)
//	GET    /v1/operator/snapshot                   binary snapshot (admin)
//	PUT    /v1/operator/snapshot                   binary snapshot in, 204 (admin)
//
// Writes sent to a follower are forwarded to the leader; reads are consistent
// (the answering server first confirms leadership, or forwards) unless
// ?stale=true.
//
// Who may call each route: docs/authorization.md (agent routes: the agent's
// own credential or a global admin; operator, gc, image prune: a global
// admin).
package api

import (
	"fmt"
	"strconv"
	"time"

	"github.com/kiln-dev/kiln/planner"
)

// MaxBodyBytes bounds every request body (template bundles included) but
// a snapshot restore's, which the server streams to disk: it takes every
// snapshot that save wrote.
const MaxBodyBytes = 32 << 20

// IndexHeader carries the state index of a response, for blocking queries.
const IndexHeader = "X-Kiln-Index"

// Error is the body of every error response.
type Error struct {
	Error string `json:"error"`
	// Field names the request field at fault, when there is one.
	Field string `json:"field,omitempty"`
	// Diagnostics are the template's errors (file, line, column, summary,
	// detail) when the request carried a template that does not load.
	Diagnostics []Diagnostic `json:"diagnostics,omitempty"`
}

// Health answers GET /v1/health.
type Health struct {
	Leader     bool   `json:"leader"`
	NodeID     string `json:"node_id"`
	LeaderAddr string `json:"leader_addr,omitempty"` // raft address of the leader
	LeaderHTTP string `json:"leader_http,omitempty"` // HTTP address of the leader
	Index      uint64 `json:"index"`
	Version    string `json:"version"`
}

// Bundle is a template bundle on the wire: file path (slash-separated,
// relative) -> content. encoding/json encodes []byte as base64.
type Bundle map[string][]byte

// Var is a -var name=value or KILN_VAR_name given as text.
type Var struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// VarFile is the content of a -var-file.
type VarFile struct {
	Name    string `json:"name"`
	Content []byte `json:"content"`
}

// Template is what a client uploads to plan or apply.
type Template struct {
	Bundle Bundle `json:"bundle"`
	// Files are the template files within the bundle (default: every
	// top-level *.hcl).
	Files []string `json:"files,omitempty"`
	// Dir names the template directory in diagnostics.
	Dir      string            `json:"dir,omitempty"`
	Vars     []Var             `json:"vars,omitempty"`
	VarFiles []VarFile         `json:"var_files,omitempty"`
	Env      map[string]string `json:"env,omitempty"` // KILN_VAR_* without the prefix
}

// Diagnostic is one template problem.
type Diagnostic struct {
	Severity string `json:"severity"` // error | warning
	Summary  string `json:"summary"`
	Detail   string `json:"detail,omitempty"`
	File     string `json:"file,omitempty"`
	Line     int    `json:"line,omitempty"`
	Column   int    `json:"column,omitempty"`
}

// PlanRequest asks for a plan of a stack against its actual state.
type PlanRequest struct {
	Template Template `json:"template"`
	// Destroy plans the deletion of everything (Template is then ignored).
	Destroy bool `json:"destroy,omitempty"`
}

// PlanResponse carries the plan. A template with errors answers 400 with
// Diagnostics set (and the text rendering of them in Error).
type PlanResponse struct {
	PlanID      string       `json:"plan_id"`
	Stack       string       `json:"stack"`
	Serial      uint64       `json:"serial"`
	HasChanges  bool         `json:"has_changes"`
	Plan        any          `json:"plan"` // the plan JSON contract (docs/plan-json.md)
	Text        string       `json:"text"` // rendered without colour
	Diagnostics []Diagnostic `json:"diagnostics,omitempty"`
}

// ApplyRequest applies a template (planning it on the leader) or a plan made
// before (PlanID; refused with 409 if the stack's serial has moved since).
type ApplyRequest struct {
	Template *Template `json:"template,omitempty"`
	PlanID   string    `json:"plan_id,omitempty"`
	// TTL like "2h": the leader destroys the stack when it expires.
	TTL string `json:"ttl,omitempty"`
}

// DestroyRequest destroys a stack.
type DestroyRequest struct{}

// RenewRequest sets a new TTL from now.
type RenewRequest struct {
	TTL string `json:"ttl"`
}

// OperationRef is the answer to an accepted asynchronous request.
type OperationRef struct {
	OperationID string `json:"operation_id"`
	Stack       string `json:"stack"`
	// NoChanges is true when there was nothing to do (no operation made;
	// OperationID empty).
	NoChanges bool `json:"no_changes,omitempty"`
}

// StackSummary is one line of `kiln stacks`.
type StackSummary struct {
	Name      string    `json:"name"`
	Project   string    `json:"project"`
	Status    string    `json:"status"` // COMPLETE | IN_PROGRESS | FAILED | ...
	Resources int       `json:"resources"`
	Expires   time.Time `json:"expires,omitempty"`
	Updated   time.Time `json:"updated"`
}

// StackDetail answers GET /v1/stacks/{stack}.
type StackDetail struct {
	StackSummary
	StatusReason    string                 `json:"status_reason,omitempty"`
	Serial          uint64                 `json:"serial"`
	ActiveOperation string                 `json:"active_operation,omitempty"`
	Resources       []ResourceInfo         `json:"resource_list"`
	Outputs         map[string]OutputValue `json:"outputs"`
}

// ResourceInfo is one resource of a stack.
type ResourceInfo struct {
	Address      string         `json:"address"`
	Kind         string         `json:"kind"`
	Status       string         `json:"status"`
	Error        string         `json:"error,omitempty"`
	Node         string         `json:"node,omitempty"`
	PhysicalName string         `json:"physical_name,omitempty"`
	Attrs        map[string]any `json:"attributes,omitempty"` // sensitive values as "(sensitive)"
	// ReadyAt and ReadySeconds: for a server, when its guest last passed its
	// readiness check (by the create or update that made it so), and how
	// long it took from the domain's start.
	ReadyAt      *time.Time `json:"ready_at,omitempty"`
	ReadySeconds float64    `json:"ready_seconds,omitempty"`
}

// OutputValue is one output; sensitive values are shown only with
// ?sensitive=true by a member or admin.
type OutputValue struct {
	Value     any  `json:"value"`
	Sensitive bool `json:"sensitive,omitempty"`
}

// Operation answers GET /v1/operations/{id}.
type Operation struct {
	ID       string         `json:"id"`
	Stack    string         `json:"stack"`
	Kind     string         `json:"kind"`   // apply | destroy
	Status   string         `json:"status"` // pending | running | complete | failed | cancelled
	Error    string         `json:"error,omitempty"`
	Serial   uint64         `json:"serial"`
	Actions  []ActionStatus `json:"actions"`
	Created  time.Time      `json:"created"`
	Started  time.Time      `json:"started,omitempty"`
	Finished time.Time      `json:"finished,omitempty"`
}

// ActionStatus is one action of an operation.
type ActionStatus struct {
	Address  string    `json:"address"`
	Action   string    `json:"action"` // create | update | replace | delete
	Status   string    `json:"status"` // pending | running | done | failed | skipped | cancelled
	Error    string    `json:"error,omitempty"`
	Agent    string    `json:"agent,omitempty"`
	Started  time.Time `json:"started,omitempty"`
	Finished time.Time `json:"finished,omitempty"`
	// ReadySeconds is, for a server created or updated, how long its guest
	// took to pass its readiness check; ReadyAt when it did.
	ReadySeconds float64    `json:"ready_seconds,omitempty"`
	ReadyAt      *time.Time `json:"ready_at,omitempty"`
}

// Event is one thing that happened to a stack.
type Event struct {
	Index   uint64    `json:"index"`
	Time    time.Time `json:"time"`
	Stack   string    `json:"stack"`
	Node    string    `json:"node,omitempty"`
	Level   string    `json:"level"` // info | warn | error
	Message string    `json:"message"`
	// Operation and Address when the event is about one.
	Operation string `json:"operation,omitempty"`
	Address   string `json:"address,omitempty"`
}

// EventsResponse answers a (blocking) events query: the events after the
// given index and the index to pass next time.
type EventsResponse struct {
	Events []Event `json:"events"`
	Index  uint64  `json:"index"`
}

// TokenRequest creates a token.
type TokenRequest struct {
	Project string `json:"project"`
	Role    string `json:"role"` // admin | member | reader
	Name    string `json:"name,omitempty"`
	// Global makes a project-less token (project must be empty): a global
	// admin token administers the cluster. Only a global admin may ask.
	Global bool `json:"global,omitempty"`
	// Join makes a join token (no project, no role): it may only register
	// agents. Only a global admin may ask.
	Join bool `json:"join,omitempty"`
	// TTL, a duration like "24h", makes the token expire; "" never.
	TTL string `json:"ttl,omitempty"`
}

// TokenCreated carries the secret once; only its hash is stored.
type TokenCreated struct {
	TokenInfo
	Secret string `json:"secret"`
}

// TokenInfo describes a token without its secret.
type TokenInfo struct {
	ID      string    `json:"id"`
	Project string    `json:"project"`
	Role    string    `json:"role"`
	Name    string    `json:"name,omitempty"`
	Created time.Time `json:"created"`
	// Kind is "agent" for an agent credential (of Agent), "join" for a
	// join token, absent for an API token.
	Kind    string    `json:"kind,omitempty"`
	Agent   string    `json:"agent,omitempty"`
	Expires time.Time `json:"expires,omitzero"`
}

// Capacity of an agent's host, and how the scheduler may fill it.
type Capacity struct {
	CPUs        int   `json:"cpus"`
	MemoryBytes int64 `json:"memory_bytes"`
	DiskBytes   int64 `json:"disk_bytes"`
	// CPURatio is how many guest vCPUs one host CPU counts for, MemoryRatio
	// how many bytes of guest memory one byte of host memory counts for;
	// 0 (an agent that does not say) means the scheduler's defaults, 16
	// and 1. Disk is never overcommitted.
	CPURatio    float64 `json:"cpu_ratio"`
	MemoryRatio float64 `json:"memory_ratio"`
	// Accel is the accelerator the agent's guests run with: "kvm" or
	// "tcg"; "" when unknown. AccelReason says why, in one sentence.
	Accel       string `json:"accel"`
	AccelReason string `json:"accel_reason,omitempty"`
	// HostPortsLo..HostPortsHi is the inclusive range of host ports the
	// agent lets port forwards use (its -host-ports); ReservedPorts, in
	// the range, are never forwarded (the ports of a kiln server in the
	// same process or of its -servers, the ready-signal port). 0..0 (an
	// agent that does not say) is unknown: the servers check no range at
	// plan time.
	HostPortsLo   int   `json:"host_ports_lo,omitempty"`
	HostPortsHi   int   `json:"host_ports_hi,omitempty"`
	ReservedPorts []int `json:"reserved_ports,omitempty"`
}

// MaxReservedPorts bounds Capacity.ReservedPorts.
const MaxReservedPorts = 64

// HostPortsKnown reports whether the agent said which host ports it
// forwards.
func (c Capacity) HostPortsKnown() bool { return c.HostPortsLo != 0 || c.HostPortsHi != 0 }

// CheckHostPorts checks c's host-port policy: not set, or 1 <= lo <= hi <=
// 65535 and at most MaxReservedPorts reserved ports, each a port. field
// names the capacity in the error.
func (c Capacity) CheckHostPorts(field string) error {
	if c.HostPortsKnown() && (c.HostPortsLo < 1 || c.HostPortsHi > 65535 || c.HostPortsLo > c.HostPortsHi) {
		return fmt.Errorf("%s.host_ports_lo..host_ports_hi %d..%d: want 1 <= lo <= hi <= 65535", field, c.HostPortsLo, c.HostPortsHi)
	}
	if len(c.ReservedPorts) > MaxReservedPorts {
		return fmt.Errorf("%s.reserved_ports: %d ports, at most %d", field, len(c.ReservedPorts), MaxReservedPorts)
	}
	for _, p := range c.ReservedPorts {
		if p < 1 || p > 65535 {
			return fmt.Errorf("%s.reserved_ports: %d is not a port (1-65535)", field, p)
		}
	}
	return nil
}

// Bounds of the allocation ratios an agent may report.
const (
	MaxCPURatio    = 1000.0
	MaxMemoryRatio = 100.0
)

// CheckRatio says why r is not an allocation ratio of at most max (above 0,
// at most max), naming it what (a flag, a variable, a field); nil when it
// is one.
func CheckRatio(what string, r, max float64) error {
	if r > 0 && r <= max {
		return nil
	}
	return fmt.Errorf("%s %s: want a number above 0 and at most %s", what,
		strconv.FormatFloat(r, 'g', -1, 64), strconv.FormatFloat(max, 'g', -1, 64))
}

// CheckRatios checks c's allocation ratios: each is 0 (not set: the
// scheduler's default) or within CheckRatio's bounds. field names the
// capacity in the error ("capacity" gives "capacity.cpu_ratio 0.5: ...").
func (c Capacity) CheckRatios(field string) error {
	if c.CPURatio != 0 {
		if err := CheckRatio(field+".cpu_ratio", c.CPURatio, MaxCPURatio); err != nil {
			return err
		}
	}
	if c.MemoryRatio != 0 {
		return CheckRatio(field+".memory_ratio", c.MemoryRatio, MaxMemoryRatio)
	}
	return nil
}

// AgentRegister registers (or re-registers) an agent.
type AgentRegister struct {
	ID       string   `json:"id"`
	Address  string   `json:"address"` // how a human reaches it, informational
	Capacity Capacity `json:"capacity"`
	Images   []string `json:"images,omitempty"`
}

// AgentHeartbeat keeps an agent up.
type AgentHeartbeat struct {
	Capacity Capacity `json:"capacity"`
	Images   []string `json:"images,omitempty"`
}

// AgentInfo is one line of `kiln agents`.
type AgentInfo struct {
	ID            string    `json:"id"`
	Address       string    `json:"address"`
	Status        string    `json:"status"` // up | down
	StatusReason  string    `json:"status_reason,omitempty"`
	Capacity      Capacity  `json:"capacity"`
	Images        []string  `json:"images,omitempty"`
	LastHeartbeat time.Time `json:"last_heartbeat"`
	Actions       int       `json:"actions"` // actions assigned and not finished
	// Revoked: its credential was revoked; it gets no work.
	Revoked bool `json:"revoked,omitempty"`
	// Credential is the agent's new credential, in the answer to a
	// registration with a global admin or join token only.
	Credential string `json:"credential,omitempty"`
}

// Op is what a work item asks of an agent for one resource instance.
type Op string

// Work item operations. A read asks for the actual state of the instance an
// interrupted action was making or changing (see WorkItem.Read).
const (
	OpCreate Op = "create"
	OpUpdate Op = "update"
	OpDelete Op = "delete"
	OpRead   Op = "read"
)

// ReadOf says which instance of an address a read (OpRead) is about.
type ReadOf string

// Read selectors.
const (
	// ReadMade is the instance a create was making: the newest at the
	// address, and of the item's Generation when it has one (the create
	// half of a replace).
	ReadMade ReadOf = "made"
	// ReadID is the instance with the item's ID: the one an update or a
	// delete acts on.
	ReadID ReadOf = "id"
)

// WorkItem is one action assigned to an agent.
type WorkItem struct {
	OperationID string `json:"operation_id"`
	Stack       string `json:"stack"`
	Project     string `json:"project"`
	Address     string `json:"address"`
	Kind        string `json:"kind"`
	Op          Op     `json:"op"`
	// Attrs, ID, Generation and Deps as in engine.Action; values are in
	// the planner's tagged JSON encoding (planner.Values).
	Attrs      planner.Values            `json:"attrs,omitempty"`
	ID         string                    `json:"id,omitempty"`
	Generation string                    `json:"generation,omitempty"`
	Deps       map[string]planner.Values `json:"deps,omitempty"`
	// Read, for OpRead, says which instance to read (see ReadSelector
	// for an item without it).
	Read ReadOf `json:"read,omitempty"`
	// Attempt counts from 1.
	Attempt int `json:"attempt"`
	// AwaitReady: a read of a server waits until its guest is ready.
	AwaitReady bool `json:"await_ready,omitempty"`
	// WorkID names this request; the agent's ActionReport carries it back.
	WorkID string `json:"work_id,omitempty"`
}

// ReadSelector is the instance a read is about: it.Read, or, for an item
// from a leader that does not set it, what ID and Generation say (ReadID
// when there is an ID and no Generation).
func (it WorkItem) ReadSelector() ReadOf {
	if it.Read != "" {
		return it.Read
	}
	if it.ID != "" && it.Generation == "" {
		return ReadID
	}
	return ReadMade
}

// WorkResponse answers an agent's blocking query for work.
type WorkResponse struct {
	Items []WorkItem `json:"items"`
	Index uint64     `json:"index"`
}

// ActionReport is an agent's result for one work item.
type ActionReport struct {
	OperationID string `json:"operation_id"`
	Address     string `json:"address"`
	Op          Op     `json:"op"`
	// OK false means the action failed; Refused means the agent could not take
	// it (no room, missing capability) and the leader should place it
	// elsewhere.
	OK      bool           `json:"ok"`
	Refused bool           `json:"refused,omitempty"`
	Error   string         `json:"error,omitempty"`
	Exists  bool           `json:"exists,omitempty"` // for op "read"
	Attrs   planner.Values `json:"attrs,omitempty"`
	// PhysicalName of the object made.
	PhysicalName string `json:"physical_name,omitempty"`
	// WorkID is the WorkItem.WorkID this reports on (required).
	WorkID string `json:"work_id,omitempty"`
	// ReadySeconds is, for a server created or updated, how long its
	// guest took to pass its readiness check.
	ReadySeconds float64 `json:"ready_seconds,omitempty"`
}

// ImageInfo is one cached image on an agent.
type ImageInfo struct {
	Agent  string   `json:"agent"`
	SHA256 string   `json:"sha256"`
	Format string   `json:"format"`
	Size   int64    `json:"size"`
	Stacks []string `json:"stacks,omitempty"`
}

// GCReport lists kiln-tagged objects no stack owns.
type GCReport struct {
	Orphans []Orphan `json:"orphans"`
	Removed bool     `json:"removed"`
}

// Orphan is one object tagged by kiln that no stack owns.
type Orphan struct {
	Agent string `json:"agent"`
	Kind  string `json:"kind"` // domain | volume | bridge | iptables-rule | file | dnsmasq
	Name  string `json:"name"`
	Owner string `json:"owner"` // kiln:<stack>/<address>, or kiln:<project>/<stack>/<address> outside the default project
}

// JoinRequest adds a server to the raft configuration.
type JoinRequest struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
}

// Peer is one raft server.
type Peer struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr,omitempty"`
	Leader   bool   `json:"leader"`
	Voter    bool   `json:"voter"`
}
