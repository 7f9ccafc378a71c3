package api

import (
	"fmt"

	"github.com/kiln-dev/kiln/planner"
)

// Host operations: questions the leader asks an agent about its host rather
// than about one action of one stack — the refresh of a plan, `kiln image
// list`, `kiln image prune`, `kiln gc` and `kiln console`. They are asked
// once and answered once, some with answers too big for the Raft log (a
// console log), so they do not go through it: the leader holds them in
// memory until answered.
//
// The protocol:
//
//	GET  /v1/agents/{id}/hostwork?index=N&wait=30s  ->  HostWorkResponse
//	POST /v1/agents/{id}/hostresults  HostAnswer    ->  204
//
// The agent follows the blocking query (any server forwards it to the
// leader; index is the leader's sequence, and starts over at 0 when it goes
// back, as after a change of leader). Each HostRequest names its operation
// in Op and carries the request of that operation in the field of the same
// name, and no other; the agent answers a HostAnswer with the same WorkID
// and Op and, in the field of that name, the answer. An answer that is not
// OK carries the agent's Error (Refused: the agent cannot do host
// operations at all, or does not know Op), and may still carry the part of
// the answer done before the error (the images a prune removed). 404 to the
// answer: nobody waits for it any more.
//
//	Op        request                            answer
//	refresh   RefreshRequest (the resources)     RefreshAnswer (exists, attrs)
//	images    ImagesRequest {}                   ImagesAnswer (the cache)
//	prune     PruneRequest (sha256s in use)      PruneAnswer (the images removed)
//	gc        GCRequest (what is owned)          GCAnswer (orphans, removed)
//	console   ConsoleRequest (domain, offset)    ConsoleChunk (text, next, size)

// HostOp names a host operation.
type HostOp string

// The host operations.
const (
	HostRefresh HostOp = "refresh"
	HostImages  HostOp = "images"
	HostPrune   HostOp = "prune"
	HostGC      HostOp = "gc"
	HostConsole HostOp = "console"
)

// ConsoleMax caps the console text one answer carries (the tail of the log
// when it is longer): 256 KiB.
const ConsoleMax = 256 << 10

// HostWorkResponse answers an agent's blocking query for host work.
type HostWorkResponse struct {
	Items []HostRequest `json:"items"`
	Index uint64        `json:"index"`
}

// HostRequest is one host question to an agent: Op and, in the field of
// Op's name, its request (the others nil).
type HostRequest struct {
	// WorkID names the question; the answer carries it back.
	WorkID string `json:"work_id"`
	Op     HostOp `json:"op"`

	Refresh *RefreshRequest `json:"refresh,omitempty"`
	Images  *ImagesRequest  `json:"images,omitempty"`
	Prune   *PruneRequest   `json:"prune,omitempty"`
	GC      *GCRequest      `json:"gc,omitempty"`
	Console *ConsoleRequest `json:"console,omitempty"`
}

// Check says what is wrong with a request: an unknown Op, or a request
// whose fields do not match Op (Op's missing, another's set).
func (r HostRequest) Check() error {
	set := map[HostOp]bool{
		HostRefresh: r.Refresh != nil,
		HostImages:  r.Images != nil,
		HostPrune:   r.Prune != nil,
		HostGC:      r.GC != nil,
		HostConsole: r.Console != nil,
	}
	have, known := set[r.Op]
	if !known {
		return fmt.Errorf("unknown host operation %q (known: refresh, images, prune, gc, console)", r.Op)
	}
	if !have {
		return fmt.Errorf("host operation %s without its %s request", r.Op, r.Op)
	}
	for op, s := range set {
		if s && op != r.Op {
			return fmt.Errorf("host operation %s carries a %s request too", r.Op, op)
		}
	}
	return nil
}

// HostAnswer is an agent's answer to a HostRequest: the same WorkID and
// Op, whether it worked, and, in the field of Op's name, the answer.
type HostAnswer struct {
	WorkID string `json:"work_id"`
	Op     HostOp `json:"op"`
	// OK false: the operation failed with Error; Refused: the agent could
	// not take it at all (no host operations with its drivers, unknown op).
	OK      bool   `json:"ok"`
	Refused bool   `json:"refused,omitempty"`
	Error   string `json:"error,omitempty"`

	Refresh *RefreshAnswer `json:"refresh,omitempty"`
	Images  *ImagesAnswer  `json:"images,omitempty"`
	Prune   *PruneAnswer   `json:"prune,omitempty"`
	GC      *GCAnswer      `json:"gc,omitempty"`
	Console *ConsoleChunk  `json:"console,omitempty"`
}

// RefreshRequest asks an agent to read the actual state of a stack's
// resources that it holds, for a plan.
type RefreshRequest struct {
	Project   string            `json:"project"`
	Stack     string            `json:"stack"`
	Resources []RefreshResource `json:"resources"`
}

// RefreshResource is one resource to read: its recorded state.
type RefreshResource struct {
	Address string `json:"address"`
	Kind    string `json:"kind"`
	// ID of the instance recorded (the read is about that instance); ""
	// reads the newest instance at the address.
	ID string `json:"id,omitempty"`
	// Attrs are the recorded attributes, configured and computed, in the
	// planner's tagged value encoding.
	Attrs planner.Values `json:"attrs"`
}

// RefreshAnswer is what the agent found, one entry per resource asked.
type RefreshAnswer struct {
	Resources []ResourceRead `json:"resources"`
}

// ResourceRead is the actual state of one resource: whether it exists and,
// when it does, the attributes its driver read back (tagged encoding).
type ResourceRead struct {
	Address string         `json:"address"`
	Exists  bool           `json:"exists"`
	Attrs   planner.Values `json:"attrs"`
}

// ImagesRequest asks for the agent's image cache (`kiln image list`).
type ImagesRequest struct{}

// ImagesAnswer lists the cached images (Agent and Stacks empty: the
// leader fills them in).
type ImagesAnswer struct {
	Images []ImageInfo `json:"images"`
}

// PruneRequest asks the agent to remove the cached images whose sha256 is
// not in InUse (`kiln image prune`).
type PruneRequest struct {
	InUse []string `json:"in_use"`
}

// PruneAnswer lists the images removed (Agent empty).
type PruneAnswer struct {
	Removed []ImageInfo `json:"removed"`
}

// GCRequest asks the agent for the objects tagged by kiln that no stack
// owns (`kiln gc`) and, with Force, to remove them. Stacks are named by
// scope (executors.Scope of project and stack), as the objects' owner tags
// carry them.
type GCRequest struct {
	// Owned holds, by scope, the addresses of the stack's resources.
	Owned map[string][]string `json:"owned"`
	// Busy are scopes with an unfinished operation: everything of theirs
	// counts as owned (what it is making is not recorded yet).
	Busy  []string `json:"busy"`
	Force bool     `json:"force,omitempty"`
}

// GCAnswer lists the orphans (Agent empty) and whether they were removed.
type GCAnswer struct {
	Orphans []Orphan `json:"orphans"`
	Removed bool     `json:"removed"`
}

// ConsoleRequest asks for the serial console log of the server whose
// domain is Name, of the stack Stack of Project (the agent refuses a
// domain of another stack).
type ConsoleRequest struct {
	Project string `json:"project"`
	Stack   string `json:"stack"`
	Name    string `json:"name"`
	// Offset to read from; < 0 (or past the end: the log was truncated)
	// reads the log's last Max bytes.
	Offset int64 `json:"offset"`
	// Max bytes to answer: 0, or more than ConsoleMax, is ConsoleMax.
	Max int64 `json:"max,omitempty"`
}

// ConsoleChunk is a piece of a console log: an agent's answer to a
// ConsoleRequest, and the answer of GET .../console?offset=N.
type ConsoleChunk struct {
	Text string `json:"text"`
	// Next is the offset to ask from next time; Size the log's size.
	Next int64 `json:"next"`
	Size int64 `json:"size"`
}
