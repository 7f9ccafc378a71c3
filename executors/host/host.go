// Package host is what the real executors of one host share when the agent
// runs them (executors.Executor): the records of the instances they made
// (executors/records), the operator's policy (Policy), per-object locks,
// and the lookup of the instance an action is about (Target).
//
// It imports only executors, executors/kinds and executors/records, so
// that every kind's executor package can use it.
package host

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"strings"
	"sync"

	"github.com/kiln-dev/kiln/executors"
	"github.com/kiln-dev/kiln/executors/kinds"
	"github.com/kiln-dev/kiln/executors/records"
)

// Host is the shared state of one host's real executors. The zero Host
// has no records and takes no value for unknown.
type Host struct {
	Records *records.Store
	// Unknown reports whether a configured value is still unknown (the
	// planner's "known after apply", which executors may not import).
	Unknown func(any) bool

	// locks serializes the changes of one object (a network's host list,
	// by network id), so parallel server creates on one network do not
	// lose entries.
	mu    sync.Mutex
	locks map[string]*sync.Mutex

	pmu    sync.Mutex
	policy Policy
}

// New is the Host over recs, with unknown the planner's unknown test.
func New(recs *records.Store, unknown func(any) bool) *Host {
	return &Host{Records: recs, Unknown: unknown, locks: map[string]*sync.Mutex{}}
}

// Lock takes the lock of id and returns its unlock.
func (h *Host) Lock(id string) func() {
	h.mu.Lock()
	if h.locks == nil {
		h.locks = map[string]*sync.Mutex{}
	}
	l := h.locks[id]
	if l == nil {
		l = &sync.Mutex{}
		h.locks[id] = l
	}
	h.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// genSep separates a resource address from the short hash of its
// generation in the address the executors are given.
const genSep = "~"

// PhysAddress is the address the executors key an instance by: the
// resource address for a plain create, plus "~" and a short hash of the
// generation for the create half of a replace, so that its domain, bridge,
// volume and rules do not collide with the instance being replaced.
func PhysAddress(address, generation string) string {
	if generation == "" {
		return address
	}
	sum := sha256.Sum256([]byte(generation))
	return address + genSep + hex.EncodeToString(sum[:])[:8]
}

// BaseAddress strips the generation suffix of a physical address.
func BaseAddress(phys string) string {
	a, _, _ := strings.Cut(phys, genSep)
	return a
}

// idOf is the id of an instance of kind named as a names it, by scope and
// physical address (kinds.Kind.ID).
func idOf(kind string, a executors.Instance) func(scope, phys string) string {
	id := kinds.MustGet(kind).ID
	return func(scope, phys string) string { return id(scope, phys, a.Attrs) }
}

// Target says which instance an action is about: the physical address of
// the instance with id a.ID when set (found by the kind's name of the
// first generation, else the records), else the instance of a's
// generation.
func (h *Host) Target(kind string, a executors.Instance) (string, error) {
	if a.ID == "" || (a.Op == executors.OpCreate && a.Generation != "") {
		return PhysAddress(a.Address, a.Generation), nil
	}
	if idOf(kind, a)(a.Stack, a.Address) == a.ID {
		return a.Address, nil
	}
	rec, ok, err := h.Records.Get(kind, a.ID)
	if err != nil {
		return "", err
	} else if ok && rec.Stack == a.Stack {
		return rec.Phys, nil
	}
	if err := LegacyInstance(kind, a, rec, ok); err != nil {
		return "", err
	}
	return "", fmt.Errorf("%s %s: instance %q is not known on this host", kind, a.Address, a.ID)
}

// WithComputed is the configured attributes of an action with computed
// ones added; unknown values are dropped (the computed ones replace them).
func (h *Host) WithComputed(a executors.Instance, computed map[string]any) map[string]any {
	out := make(map[string]any, len(a.Attrs)+len(computed))
	for k, v := range a.Attrs {
		if h.Unknown == nil || !h.Unknown(v) {
			out[k] = v
		}
	}
	maps.Copy(out, computed)
	return out
}

// Absent reads an executor's Read error for an action's Read: gone is
// true, and err nil, when the object is not there (executors.ErrNotFound).
func Absent(err error) (gone bool, _ error) {
	if errors.Is(err, executors.ErrNotFound) {
		return true, nil
	}
	return false, err
}

// DepOfKind returns the attributes of the only dependency of a kind, for
// filling an attribute that is still unknown; ok is false when there is
// not exactly one.
func DepOfKind(a executors.Instance, kind string) (map[string]any, bool) {
	var found map[string]any
	n := 0
	for addr, attrs := range a.Deps {
		if strings.HasPrefix(addr, kind+".") {
			found = attrs
			n++
		}
	}
	return found, n == 1
}

// DepID is the id the only dependency of kind reported, "" when there is
// not exactly one or it has no id.
func DepID(a executors.Instance, kind string) string {
	dep, ok := DepOfKind(a, kind)
	if !ok {
		return ""
	}
	id, _ := dep["id"].(string)
	return id
}

// StackAddress reports whether ip is the address of a server NIC of the
// stack, as the stack's networks on this host registered it.
func (h *Host) StackAddress(stack string, ip netip.Addr) (bool, error) {
	nets, err := h.Records.List("network")
	if err != nil {
		return false, err
	}
	for _, n := range nets {
		if n.Stack != stack {
			continue
		}
		for _, hst := range n.Hosts {
			if a, err := netip.ParseAddr(hst.IP); err == nil && a == ip.Unmap() {
				return true, nil
			}
		}
	}
	return false, nil
}

// OwnVolume refuses a volume id that is not a volume of the action's stack
// on this host.
func (h *Host) OwnVolume(a executors.Instance, id string) error {
	rec, ok, err := h.Records.Get("volume", id)
	if err != nil {
		return fmt.Errorf("%s: attribute \"volumes\": %q is not a volume of stack %s on this host (%v); a server attaches only its own stack's volumes (volume.NAME.id)", a.Address, id, a.Stack, err)
	}
	if !ok || rec.Stack != a.Stack {
		return fmt.Errorf("%s: attribute \"volumes\": %q is not a volume of stack %s on this host; a server attaches only its own stack's volumes (volume.NAME.id)", a.Address, id, a.Stack)
	}
	return nil
}

// OwnImage refuses a server image that is not the id of one of the action's
// image dependencies. The image cache is shared by every stack of the host;
// an image resource of the stack proves its source delivers those bytes
// (image.Cache.Create), so a server boots only an image its own stack
// fetched, never one it names by another project's sha256.
func OwnImage(a executors.Instance, sum string) error {
	for addr, dep := range a.Deps {
		if strings.HasPrefix(addr, "image.") && dep["id"] == sum {
			return nil
		}
	}
	return fmt.Errorf("%s: attribute \"image\": %q is not the id of an image of this stack; a server boots only its own stack's images (image.NAME.id)", a.Address, sum)
}
