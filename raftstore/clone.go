package raftstore

import (
	"maps"
	"slices"

	"github.com/kiln-dev/kiln/planner"
	"github.com/kiln-dev/kiln/spec"
)

// Deep copies of the records, so that a reader owns what it is given and never
// sees a later mutation of the state (nor can make one).

// cloneValue copies an attribute value: maps and slices are copied, every
// other value (string, numbers, bool, spec.Unknown, nil) is immutable.
func cloneValue(v any) any {
	return planner.MapValue(v, func(x any) any {
		switch t := x.(type) {
		case []string:
			return slices.Clone(t)
		case map[string]string:
			return maps.Clone(t)
		}
		return x
	})
}

func cloneAttrs(m map[string]any) map[string]any { return cloneValue(m).(map[string]any) }

func cloneResourceState(r planner.ResourceState) planner.ResourceState {
	r.Attrs = cloneAttrs(r.Attrs)
	r.Computed = cloneAttrs(r.Computed)
	r.DependsOn = slices.Clone(r.DependsOn)
	r.Sensitive = maps.Clone(r.Sensitive)
	return r
}

func cloneChange(c planner.Change) planner.Change {
	c.Before = cloneAttrs(c.Before)
	c.After = cloneAttrs(c.After)
	c.Changed = slices.Clone(c.Changed)
	c.ReplaceBecause = slices.Clone(c.ReplaceBecause)
	c.ReplaceAttrs = slices.Clone(c.ReplaceAttrs)
	c.DependsOn = slices.Clone(c.DependsOn)
	c.Sensitive = maps.Clone(c.Sensitive)
	return c
}

func cloneOutputs(m map[string]spec.Output) map[string]spec.Output {
	if m == nil {
		return nil
	}
	out := make(map[string]spec.Output, len(m))
	for k, o := range m {
		o.Value = cloneValue(o.Value)
		out[k] = o
	}
	return out
}

func clonePlan(p planner.Result) planner.Result {
	if p.Changes != nil {
		cs := make([]planner.Change, len(p.Changes))
		for i, c := range p.Changes {
			cs[i] = cloneChange(c)
		}
		p.Changes = cs
	}
	p.Outputs = cloneOutputs(p.Outputs)
	return p
}

func (s Stack) clone() Stack {
	s.Vars = slices.Clone(s.Vars)
	if s.VarFiles != nil {
		vf := make([]spec.VarFile, len(s.VarFiles))
		for i, f := range s.VarFiles {
			f.Bytes = slices.Clone(f.Bytes)
			vf[i] = f
		}
		s.VarFiles = vf
	}
	s.Params = cloneAttrs(s.Params)
	s.Outputs = cloneOutputs(s.Outputs)
	return s
}

func (r Resource) clone() Resource {
	r.State = cloneResourceState(r.State)
	return r
}

func (o Operation) clone() Operation {
	o.Plan = clonePlan(o.Plan)
	o.Actions = slices.Clone(o.Actions)
	return o
}

func (a Agent) clone() Agent {
	a.Images = slices.Clone(a.Images)
	return a
}
