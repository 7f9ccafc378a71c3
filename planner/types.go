package planner

import "github.com/kiln-dev/kiln/spec"

// State is the actual state of one stack, as recorded after previous applies
// and refreshed by the executors' Read.
type State struct {
	Stack string
	// Serial increases with every change of the stack's state; an operation
	// planned against an older serial is refused.
	Serial    uint64
	Resources []ResourceState
}

// ResourceState is one resource instance that exists.
type ResourceState struct {
	Address string
	Kind    string
	// Attrs are the configured attributes as last applied (same shape as
	// spec.Resource.Attrs).
	Attrs map[string]any
	// Computed are the computed attributes (id, gateway, address, ...).
	Computed map[string]any
	// DependsOn as it was when the resource was applied; used to order deletes
	// of resources no longer in the template.
	DependsOn []string
	// Sensitive attributes are never shown.
	Sensitive map[string]bool
	// PreventDestroy as it was when applied.
	PreventDestroy bool
}

// Prior returns the computed attributes of the state in the form spec.Load takes.
func (s *State) Prior() spec.Prior {
	if s == nil {
		return nil
	}
	p := make(spec.Prior, len(s.Resources))
	for _, r := range s.Resources {
		p[r.Address] = r.Computed
	}
	return p
}

// Action is what a change does to one resource instance.
type Action int

const (
	NoOp Action = iota
	Create
	Update
	Replace
	Delete
)

func (a Action) String() string {
	switch a {
	case NoOp:
		return "no-op"
	case Create:
		return "create"
	case Update:
		return "update"
	case Replace:
		return "replace"
	case Delete:
		return "delete"
	}
	return "unknown"
}

// Change is the planned change of one resource instance.
type Change struct {
	Address string
	Kind    string
	Action  Action
	// Before is the state's Attrs plus Computed (nil for a create); After is
	// the desired Attrs plus Computed (nil for a delete), with Unknown where a
	// value is known only after apply.
	Before, After map[string]any
	// Changed lists the attributes whose value differs, sorted.
	Changed []string
	// ReplaceBecause lists the attributes that force a replace, sorted; for a
	// replace cascaded from a dependency it names that dependency's attribute
	// ("image.base.id").
	ReplaceBecause []string
	// ReplaceAttrs lists this instance's own attributes whose change forces
	// the replace (for a cascade, the attributes that became unknown), sorted.
	// The text renderer marks them "# forces replacement".
	ReplaceAttrs []string
	// CreateBeforeDestroy flips the order of a replace.
	CreateBeforeDestroy bool
	// DependsOn are the addresses this change waits for (for a delete: the
	// addresses that must be deleted first), sorted.
	DependsOn []string
	Sensitive map[string]bool
}

// Result is the plan of one stack: an ordered set of changes.
type Result struct {
	Stack string
	// Serial is the state serial the plan was made against.
	Serial uint64
	// Changes in an order in which each comes after those it depends on; ties
	// broken by address. No-op changes are included.
	Changes []Change
	// Outputs are the desired outputs, possibly unknown.
	Outputs map[string]spec.Output
}

// Summary counts the changes by action.
type Summary struct {
	Create, Update, Replace, Delete int
}

// Summary counts the plan's changes.
func (p *Result) Summary() Summary {
	var s Summary
	for _, c := range p.Changes {
		switch c.Action {
		case Create:
			s.Create++
		case Update:
			s.Update++
		case Replace:
			s.Replace++
		case Delete:
			s.Delete++
		}
	}
	return s
}

// HasChanges reports whether applying the plan would change anything.
func (p *Result) HasChanges() bool {
	s := p.Summary()
	return s.Create+s.Update+s.Replace+s.Delete > 0
}
