package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/planner"
	"github.com/kiln-dev/kiln/raftstore"
	"github.com/kiln-dev/kiln/spec"
)

// storedBundle is the content of a stack's bundle blob: the template files
// and what is needed to load them again (anywhere, by any leader).
type storedBundle struct {
	Bundle map[string][]byte `json:"bundle"`
	Files  []string          `json:"files,omitempty"`
	Dir    string            `json:"dir,omitempty"`
	Env    map[string]string `json:"env,omitempty"`
}

// storedPlan is the content of a plan blob; its hash is the plan id.
type storedPlan struct {
	Project string              `json:"project"`
	Stack   string              `json:"stack"`
	Kind    raftstore.OpKind    `json:"kind"`
	Serial  uint64              `json:"serial"`
	Plan    json.RawMessage     `json:"plan"` // planner storage codec
	Desired *raftstore.PutStack `json:"desired,omitempty"`
}

// diagError is a template with errors: 400 with the diagnostics.
type diagError struct {
	diags []api.Diagnostic
	text  string
}

func (e *diagError) Error() string { return e.text }

func toDiagnostics(diags hcl.Diagnostics) []api.Diagnostic {
	out := make([]api.Diagnostic, 0, len(diags))
	for _, d := range diags {
		ad := api.Diagnostic{Severity: "error", Summary: d.Summary, Detail: d.Detail}
		if d.Severity == hcl.DiagWarning {
			ad.Severity = "warning"
		}
		if d.Subject != nil {
			ad.File, ad.Line, ad.Column = d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column
		}
		out = append(out, ad)
	}
	return out
}

// bundleOf turns an uploaded template into its stored form.
func bundleOf(t *api.Template) (storedBundle, []byte, error) {
	if len(t.Bundle) == 0 {
		return storedBundle{}, nil, &httpError{code: http.StatusBadRequest, field: "template.bundle", msg: "template.bundle is empty: upload the template files"}
	}
	sb := storedBundle{Bundle: t.Bundle, Files: t.Files, Dir: t.Dir, Env: t.Env}
	data, err := json.Marshal(sb)
	return sb, data, err
}

func rawVars(t *api.Template) ([]spec.RawVar, []spec.VarFile) {
	var vars []spec.RawVar
	for _, v := range t.Vars {
		vars = append(vars, spec.RawVar{Name: v.Name, Value: v.Value})
	}
	var files []spec.VarFile
	for _, f := range t.VarFiles {
		files = append(files, spec.VarFile{Name: f.Name, Bytes: f.Content})
	}
	return vars, files
}

// load evaluates a stack's template against the prior state, within the
// evaluation limits (ctx bounds its time).
func load(ctx context.Context, lim spec.Limits, stack string, sb storedBundle, vars []spec.RawVar, files []spec.VarFile, prior spec.Prior) (*spec.Stack, error) {
	desired, diags := spec.Load(spec.Bundle(sb.Bundle), spec.Options{
		Stack: stack, Vars: vars, VarFiles: files, Env: sb.Env, Prior: prior, Dir: sb.Dir, Files: sb.Files,
		Limits: lim, Context: ctx,
	})
	if diags.HasErrors() {
		var buf bytes.Buffer
		if err := spec.WriteDiagnostics(&buf, diags, spec.Bundle(sb.Bundle), spec.Options{Dir: sb.Dir}, 0, false); err != nil {
			buf.WriteString(diags.Error())
		}
		return nil, &diagError{diags: toDiagnostics(diags), text: strings.TrimSpace(buf.String())}
	}
	return desired, nil
}

// loadStack evaluates a recorded stack's template (for outputs and the
// resource records after apply).
func (s *Server) loadStack(st raftstore.Stack) (*spec.Stack, error) {
	data, ok := s.store.State().Blob(st.BundleHash)
	if !ok {
		return nil, fmt.Errorf("bundle %s of stack %s is missing", st.BundleHash, st.Name)
	}
	var sb storedBundle
	if err := json.Unmarshal(data, &sb); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", st.BundleHash, err)
	}
	// The template was accepted within the limits once; its values are the
	// same again, and a time limit here would break outputs of a stack
	// already applied, so only the size limits apply.
	return load(context.Background(), s.cfg.EvalLimits, st.Name, sb, st.Vars, st.VarFiles, s.store.State().PlannerState(st.Project, st.Name).Prior())
}

// plannedOp is a plan ready to become an operation.
type plannedOp struct {
	stored storedPlan
	result *planner.Result
	id     string
	bundle []byte // the bundle blob to put first (apply with a template)
	// warnings say what the plan could not take into account (an agent
	// that did not answer the refresh).
	warnings []api.Diagnostic
}

// makePlan plans a template (or, with destroy, the deletion of everything)
// against the stack's actual state.
func (s *Server) makePlan(ctx context.Context, project, stack string, t *api.Template, destroy bool) (*plannedOp, error) {
	actual := s.store.State().PlannerState(project, stack)
	var warnings []api.Diagnostic
	if !destroy {
		// Plan against what is really there (a delete of something gone
		// succeeds, so a destroy needs no refresh).
		actual, warnings = s.refresh(ctx, project, stack, actual)
	}
	p := &plannedOp{stored: storedPlan{Project: project, Stack: stack, Serial: actual.Serial, Kind: raftstore.OpApply}, warnings: warnings}
	var desired *spec.Stack
	if destroy {
		p.stored.Kind = raftstore.OpDestroy
		if _, ok := s.store.State().Stack(project, stack); !ok {
			return nil, errf(http.StatusNotFound, "stack %s not found", stack)
		}
	} else {
		if t == nil {
			return nil, required("template")
		}
		sb, data, err := bundleOf(t)
		if err != nil {
			return nil, err
		}
		vars, files := rawVars(t)
		desired, err = s.evaluate(ctx, stack, sb, vars, files, actual.Prior())
		if err != nil {
			return nil, err
		}
		if err := s.checkHostPorts(project, stack, desired); err != nil {
			return nil, err
		}
		p.bundle = data
		p.stored.Desired = &raftstore.PutStack{
			Project: project, Name: stack, BundleHash: raftstore.HashBlob(data), Vars: vars, VarFiles: files,
			Params: paramValues(desired),
		}
	}
	res, err := planner.Plan(desired, actual)
	if err != nil {
		var pd *planner.PreventDestroyError
		if errors.As(err, &pd) {
			return nil, errf(http.StatusConflict, "prevent_destroy forbids deleting or replacing %s", strings.Join(pd.Addresses, ", "))
		}
		return nil, errf(http.StatusBadRequest, "plan: %v", err)
	}
	res.Stack = stack
	p.result = res
	p.stored.Plan, err = json.Marshal(res)
	if err != nil {
		return nil, fmt.Errorf("encode plan: %w", err)
	}
	return p, nil
}

func paramValues(st *spec.Stack) map[string]any {
	if len(st.Params) == 0 {
		return nil
	}
	out := make(map[string]any, len(st.Params))
	for k, p := range st.Params {
		out[k] = p.Value
	}
	return out
}

// planResponse renders a plan for the API.
func planResponse(id string, p *plannedOp) (api.PlanResponse, error) {
	var js, txt bytes.Buffer
	if err := planner.RenderJSON(&js, p.result); err != nil {
		return api.PlanResponse{}, fmt.Errorf("render plan: %w", err)
	}
	if err := planner.RenderText(&txt, p.result, planner.TextOptions{}); err != nil {
		return api.PlanResponse{}, fmt.Errorf("render plan: %w", err)
	}
	return api.PlanResponse{
		PlanID: id, Stack: p.stored.Stack, Serial: p.stored.Serial, HasChanges: p.result.HasChanges(),
		Plan: json.RawMessage(js.Bytes()), Text: txt.String(), Diagnostics: p.warnings,
	}, nil
}

// sortedKeys returns the keys of a map, sorted.
func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
