package server

import (
	"context"
	"fmt"
	"sync"
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

	// Records parked until the next record of their action, which carries
	// them in the same log entry (see recordFor): an action's start waits
	// for its first work item, an agent's report for the action's result
	// or its next step's work item.
	mu      sync.Mutex
	starts  map[string]*raftstore.ActionStarted
	reports map[string]*delivery
	// works are the work items put for each action, forgotten with its
	// result: the state keeps only the work of running actions.
	works map[string][]string
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

// recordFor records commands of the action at address, in one log entry
// with what is parked for it: a report goes first (it is an earlier step's
// and acknowledged to its agent by this entry), and a parked start goes
// with the action's first work item as one StartWork (the start is durable
// before any agent sees the work) or, when no work follows, before the
// commands. The error is the commands' (or the start's) own.
func (rec *opRecorder) recordFor(ctx context.Context, address string, cmds ...raftstore.Command) error {
	rec.mu.Lock()
	start, rep := rec.starts[address], rec.reports[address]
	delete(rec.starts, address)
	delete(rec.reports, address)
	rec.mu.Unlock()
	if err := rec.lead.Err(); err != nil {
		err = fmt.Errorf("leadership lost: %w", err)
		if rep != nil {
			rep.ack(err)
		}
		return err
	}
	var all []raftstore.Command
	if rep != nil {
		all = append(all, rep.cmd)
	}
	if start != nil {
		if pw, ok := cmds[0].(*raftstore.PutWork); ok && len(cmds) == 1 {
			cmds = []raftstore.Command{&raftstore.StartWork{Start: *start, Work: pw.Work}}
		} else {
			all = append(all, start)
		}
	}
	all = append(all, cmds...)
	if len(all) == 1 {
		return rec.record(ctx, all[0])
	}
	errs := rec.s.store.ApplyAll(ctx, all...)
	for _, err := range errs {
		rec.s.metrics.applies.WithLabelValues(resultLabel(err)).Inc()
	}
	if rep != nil {
		rep.ack(errs[0])
		errs = errs[1:]
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// noteWork notes a work item put for the action at address.
func (rec *opRecorder) noteWork(address, id string) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.works == nil {
		rec.works = map[string][]string{}
	}
	rec.works[address] = append(rec.works[address], id)
}

// takeWorks returns the work items noted for the action at address and
// forgets them.
func (rec *opRecorder) takeWorks(address string) []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	ids := rec.works[address]
	delete(rec.works, address)
	return ids
}

// parkReport keeps an agent's report of the action at address for the
// action's next record.
func (rec *opRecorder) parkReport(address string, d *delivery) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.reports == nil {
		rec.reports = map[string]*delivery{}
	}
	if old := rec.reports[address]; old != nil {
		// Not expected (a report is parked until the action's next
		// record): the older one is recorded by its handler.
		old.ack(fmt.Errorf("report of %s superseded", address))
	}
	rec.reports[address] = d
}

// dropParked lets go of whatever is still parked when the operation ends:
// a parked start never ran (no work was put), and a parked report's
// handler records it on its own.
func (rec *opRecorder) dropParked() {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for addr, d := range rec.reports {
		d.ack(fmt.Errorf("operation %s ended before the report of %s was recorded", rec.op.ID, addr))
	}
	rec.starts, rec.reports = nil, nil
}

// event is one event of this server at level lvl, stamped now.
func (rec *opRecorder) event(msg string, lvl raftstore.Level) []raftstore.Event {
	return []raftstore.Event{{Time: time.Now().UTC(), Node: rec.s.cfg.NodeID, Level: lvl, Message: msg}}
}

// ActionStarted implements engine.Recorder. The start is parked until the
// action's first work item, which records both in one step (StartWork): the
// start is durable before the work reaches any agent, which is what the
// engine asks. An action that fails before it puts work records its start
// with its result.
func (rec *opRecorder) ActionStarted(ctx context.Context, opID, address, node string) error {
	if err := rec.lead.Err(); err != nil {
		return fmt.Errorf("leadership lost: %w", err)
	}
	msg := address + " started"
	if node != "" {
		msg += " on " + node
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.starts == nil {
		rec.starts = map[string]*raftstore.ActionStarted{}
	}
	rec.starts[address] = &raftstore.ActionStarted{
		Operation: opID, Address: address, Agent: node, Time: time.Now().UTC(), Events: rec.event(msg, raftstore.LevelInfo),
	}
	return nil
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
	cmds := []raftstore.Command{cmd}
	if ids := rec.takeWorks(address); len(ids) > 0 {
		// The action's work items go with its result: nobody needs them
		// after it (a new leader resumes only running actions), and an
		// operation of thousands of actions keeps only the running ones'.
		cmds = append(cmds, &raftstore.DeleteWork{IDs: ids})
	}
	err := rec.recordFor(ctx, address, cmds...)
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
	rec.dropParked()
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
