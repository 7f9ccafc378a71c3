package server

import (
	"context"
	"fmt"
	"time"

	"github.com/kiln-dev/kiln/daemon/engine"
	"github.com/kiln-dev/kiln/planner"
	"github.com/kiln-dev/kiln/raftstore"
	"github.com/kiln-dev/kiln/spec"
)

// opRecorder records an operation's progress to raft on the leader: it is
// the engine's Recorder. Every record is a raft apply, made only while this
// server leads (see record); the dispatcher records its work items and
// assignments through it too.
type opRecorder struct {
	s *Server
	// lead is the leadership context: once it is done nothing more is
	// recorded and the next leader resumes the operation.
	lead  context.Context
	op    raftstore.Operation
	eval  *opEvaluator   // the desired stack, for what the state records of a resource
	names *physicalNames // reported by the agents through the dispatcher
}

var _ engine.Recorder = (*opRecorder)(nil)

// record applies a command of this operation unless leadership was lost:
// then nothing more is recorded and the next leader resumes the operation.
func (rec *opRecorder) record(ctx context.Context, c raftstore.Command) error {
	if err := rec.lead.Err(); err != nil {
		return fmt.Errorf("leadership lost: %w", err)
	}
	return rec.s.apply(ctx, c)
}

// event is one event of this server at level lvl, stamped now.
func (rec *opRecorder) event(msg string, lvl raftstore.Level) []raftstore.Event {
	return []raftstore.Event{{Time: time.Now().UTC(), Node: rec.s.cfg.NodeID, Level: lvl, Message: msg}}
}

// ActionStarted implements engine.Recorder.
func (rec *opRecorder) ActionStarted(ctx context.Context, opID, address, node string) error {
	msg := address + " started"
	if node != "" {
		msg += " on " + node
	}
	return rec.record(ctx, &raftstore.ActionStarted{
		Operation: opID, Address: address, Agent: node, Time: time.Now().UTC(), Events: rec.event(msg, raftstore.LevelInfo),
	})
}

// ActionFinished implements engine.Recorder: the status is recorded as the
// engine gives it (one vocabulary: a cancelled action is recorded
// cancelled), and a done action records (or forgets) the resource in the
// same step.
func (rec *opRecorder) ActionFinished(ctx context.Context, opID, address string, res engine.Result) error {
	cmd := &raftstore.ActionFinished{Operation: opID, Address: address, Status: res.Status, Error: res.Err, Time: time.Now().UTC()}
	ch := rec.op.Change(address)
	switch {
	case res.Status == raftstore.ActionDone:
		if ch != nil && ch.Action == planner.Delete {
			cmd.DeleteResource = true
			cmd.Events = rec.event(address+" deleted", raftstore.LevelInfo)
		} else if ch != nil {
			r := rec.resource(*ch, res)
			msg := fmt.Sprintf("%s %sd on %s", address, ch.Action, res.Node)
			if res.Ready > 0 {
				cmd.ReadySeconds = res.Ready.Seconds()
				r.ReadyAt = cmd.Time
				r.ReadySeconds = res.Ready.Seconds()
				msg += fmt.Sprintf(", ready after %.1fs", res.Ready.Seconds())
			}
			cmd.Resource = &r
			cmd.Events = rec.event(msg, raftstore.LevelInfo)
		}
	case res.Status.NotStarted(): // skipped, cancelled: only pending actions
		cmd.Events = rec.event(address+" "+string(res.Status)+": "+res.Err, raftstore.LevelWarn)
	}
	err := rec.record(ctx, cmd)
	if err == nil {
		rec.s.metrics.actions.WithLabelValues(string(res.Status), "recorded").Inc()
	}
	return err
}

// resource builds the record of an applied instance: configured and
// computed attributes split by the kind's schema.
func (rec *opRecorder) resource(ch planner.Change, res engine.Result) raftstore.Resource {
	rs := planner.ResourceState{
		Address: ch.Address, Kind: ch.Kind, Attrs: map[string]any{}, Computed: map[string]any{},
		DependsOn: ch.DependsOn, Sensitive: ch.Sensitive,
	}
	schema := spec.Schemas[ch.Kind]
	for k, v := range res.Attrs {
		computed := k == "id"
		if schema != nil {
			if a := schema.Attr(k); a != nil && a.Computed {
				computed = true
			}
		}
		if computed {
			rs.Computed[k] = v
		} else {
			rs.Attrs[k] = v
		}
	}
	if d := rec.eval.desired(); d != nil {
		if dr := d.Resource(ch.Address); dr != nil {
			rs.PreventDestroy = dr.Lifecycle.PreventDestroy
			// Keep the configured attributes as the template set them, so
			// that the next plan compares like with like.
			for k := range rs.Attrs {
				if _, ok := dr.Attrs[k]; !ok {
					delete(rs.Attrs, k)
				}
			}
			for k, v := range dr.Attrs {
				if _, ok := rs.Attrs[k]; !ok && !spec.IsUnknown(v) {
					rs.Attrs[k] = v
				}
			}
		}
	}
	return raftstore.Resource{State: rs, PhysicalName: rec.names.get(ch.Address), Status: raftstore.ResourceReady, Node: res.Node}
}

// OperationFinished implements engine.Recorder. A done apply evaluates the
// outputs again with the attributes the agents reported.
func (rec *opRecorder) OperationFinished(ctx context.Context, opID, status, errMsg string) error {
	cmd := &raftstore.FinishOperation{ID: opID, Error: errMsg, Time: time.Now().UTC()}
	switch status {
	case engine.OperationComplete:
		cmd.Status = raftstore.OpDone
		cmd.Outputs = rec.eval.outputs()
	case engine.OperationFailed:
		cmd.Status = raftstore.OpFailed
	default:
		cmd.Status = raftstore.OpCancelled
	}
	lvl := raftstore.LevelInfo
	if cmd.Status != raftstore.OpDone {
		lvl = raftstore.LevelError
	}
	msg := string(rec.op.Kind) + " " + string(cmd.Status)
	if errMsg != "" {
		msg += ": " + errMsg
	}
	cmd.Events = rec.event(msg, lvl)
	err := rec.record(ctx, cmd)
	if err == nil {
		rec.s.metrics.operations.WithLabelValues(string(rec.op.Kind), string(cmd.Status)).Inc()
	}
	return err
}

// Event implements engine.Recorder.
func (rec *opRecorder) Event(ctx context.Context, stack, msg string) error {
	return rec.record(ctx, &raftstore.AppendEvents{Project: rec.op.Project, Stack: stack, Events: rec.event(msg, raftstore.LevelInfo)})
}
