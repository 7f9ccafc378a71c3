package raftstore

import (
	"sort"
	"time"
)

// The apply method of every command. Each one validates first and mutates
// after, reads no clock and draws no random number: the same log gives the
// same state on every node.

func (c *PutBlob) apply(tx *txn) (any, error) {
	if len(c.Data) > MaxBlobSize {
		return nil, errorf(ErrTooLarge, "blob of %d bytes is over the limit of %d bytes", len(c.Data), MaxBlobSize)
	}
	if c.Hash == "" || HashBlob(c.Data) != c.Hash {
		return nil, invalid("blob hash %q does not match its content", c.Hash)
	}
	tx.putBlob(c.Hash, c.Data, c.Time)
	return nil, nil
}

func (c *DeleteBlob) apply(tx *txn) (any, error) {
	for _, st := range tx.t.stacks {
		if st.BundleHash == c.Hash {
			return nil, conflict("blob %s is the bundle of stack %s/%s", c.Hash, st.Project, st.Name)
		}
	}
	for _, p := range tx.t.plans {
		if p.ID == c.Hash || p.BundleHash == c.Hash {
			return nil, conflict("blob %s belongs to plan %s of stack %s/%s", c.Hash, p.ID, p.Project, p.Stack)
		}
	}
	tx.deleteBlob(c.Hash)
	return nil, nil
}

func (c *UpsertProject) apply(tx *txn) (any, error) {
	if c.Name == "" {
		return nil, invalid("project name is empty")
	}
	tx.ensureProject(c.Name, c.Time)
	return nil, nil
}

func (c *CreateToken) apply(tx *txn) (any, error) {
	switch {
	case c.ID == "":
		return nil, invalid("token id is empty")
	case len(c.SecretHash) != 64:
		return nil, invalid("token secret hash is not a hex sha256")
	}
	switch c.Kind {
	case "":
		if !c.Role.Valid() {
			return nil, invalid("token role %q is not admin, member or reader", c.Role)
		}
		if c.Agent != "" {
			return nil, invalid("an API token names no agent")
		}
	case TokenAgent, TokenJoin:
		if c.Project != "" || c.Role != "" {
			return nil, invalid("a %s token has no project and no role", c.Kind)
		}
		if (c.Kind == TokenAgent) != (c.Agent != "") {
			return nil, invalid("an agent credential, and only one, names its agent")
		}
	default:
		return nil, invalid("token kind %q is not agent or join", c.Kind)
	}
	if err := tx.checkNewToken(c.ID, c.SecretHash); err != nil {
		return nil, err
	}
	if c.Kind == "" {
		tx.ensureProject(c.Project, c.Time)
	}
	tx.t.tokens[c.ID] = &Token{
		ID: c.ID, Project: c.Project, Role: c.Role, SecretHash: c.SecretHash,
		Description: c.Description, Created: c.Time, Index: tx.index,
		Kind: c.Kind, Agent: c.Agent, Expires: c.Expires,
	}
	tx.t.tokenByHash[c.SecretHash] = c.ID
	return nil, nil
}

func (tx *txn) checkNewToken(id, hash string) error {
	if _, ok := tx.t.tokens[id]; ok {
		return conflict("token %s exists", id)
	}
	if _, ok := tx.t.tokenByHash[hash]; ok {
		return conflict("a token with this secret exists")
	}
	return nil
}

func (c *RevokeToken) apply(tx *txn) (any, error) {
	t, ok := tx.t.tokens[c.ID]
	if !ok {
		return nil, notFound("token %s", c.ID)
	}
	delete(tx.t.tokenByHash, t.SecretHash)
	delete(tx.t.tokens, c.ID)
	if t.Kind == TokenAgent {
		if ag, ok := tx.t.agents[t.Agent]; ok {
			tx.revokeAgent(ag, "credential "+t.ID+" revoked")
		}
	}
	return nil, nil
}

// agentCredentials returns the ids of the credentials of an agent.
func (tx *txn) agentCredentials(agent string) []string {
	var out []string
	for id, t := range tx.t.tokens {
		if t.Kind == TokenAgent && t.Agent == agent {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// revokeAgent deletes an agent's credentials and marks it revoked and down.
func (tx *txn) revokeAgent(ag *Agent, reason string) {
	for _, id := range tx.agentCredentials(ag.ID) {
		delete(tx.t.tokenByHash, tx.t.tokens[id].SecretHash)
		delete(tx.t.tokens, id)
	}
	ag.Revoked = true
	tx.markAgentDown(ag, "revoked: "+reason)
}

func (c *RevokeAgent) apply(tx *txn) (any, error) {
	ag, err := tx.agent(c.ID)
	if err != nil {
		return nil, err
	}
	tx.revokeAgent(ag, c.Reason)
	return nil, nil
}

func (c *PutStack) validate(tx *txn) error {
	switch {
	case c.Project == "" || c.Name == "":
		return invalid("stack project and name are required")
	case c.BundleHash == "":
		return invalid("stack %s/%s has no bundle hash", c.Project, c.Name)
	}
	if _, ok := tx.t.blobs[c.BundleHash]; !ok {
		return notFound("bundle %s (put the blob first)", c.BundleHash)
	}
	return nil
}

func (c *PutStack) apply(tx *txn) (any, error) {
	if err := c.validate(tx); err != nil {
		return nil, err
	}
	c.put(tx)
	return nil, nil
}

// put records the desired state; validate has passed.
func (c *PutStack) put(tx *txn) *Stack {
	tx.ensureProject(c.Project, c.Time)
	key := stackKey(c.Project, c.Name)
	st, ok := tx.t.stacks[key]
	if !ok {
		st = &Stack{Project: c.Project, Name: c.Name, Status: StackPending, Created: c.Time}
		tx.t.stacks[key] = st
	}
	st.BundleHash = c.BundleHash
	st.Vars = c.Vars
	st.VarFiles = c.VarFiles
	st.Params = c.Params
	st.Expires = c.Expires
	st.Generation++
	if st.Status == StackDestroyed {
		st.Status, st.StatusReason = StackPending, ""
	}
	st.Updated = c.Time
	st.Index = tx.index
	return st
}

func (c *DeleteStack) apply(tx *txn) (any, error) {
	st, err := tx.stack(c.Project, c.Name)
	if err != nil {
		return nil, err
	}
	key := stackKey(c.Project, c.Name)
	if st.ActiveOperation != "" {
		return nil, conflict("stack %s has an unfinished operation %s", key, st.ActiveOperation)
	}
	if n := len(tx.t.resources[key]); n > 0 && !c.Force {
		return nil, conflict("stack %s still has %d resources; destroy it first", key, n)
	}
	delete(tx.t.stacks, key)
	delete(tx.t.resources, key)
	delete(tx.t.events, key)
	for id, o := range tx.t.operations {
		if o.Project == c.Project && o.Stack == c.Name {
			delete(tx.t.operations, id)
		}
	}
	// Its plans go, and the bundle too unless another stack or a plan
	// shares it.
	tx.dropStackPlans(c.Project, c.Name)
	if !tx.blobInUse(st.BundleHash) {
		tx.deleteBlob(st.BundleHash)
	}
	return nil, nil
}

func (c *RenewTTL) apply(tx *txn) (any, error) {
	st, err := tx.stack(c.Project, c.Name)
	if err != nil {
		return nil, err
	}
	st.Expires = c.Expires
	st.Updated = c.Time
	st.Index = tx.index
	return nil, nil
}

func (c *StartOperation) apply(tx *txn) (any, error) {
	switch {
	case c.ID == "":
		return nil, invalid("operation id is empty")
	case c.Kind != OpApply && c.Kind != OpDestroy:
		return nil, invalid("operation kind %q is not apply or destroy", c.Kind)
	}
	if _, ok := tx.t.operations[c.ID]; ok {
		return nil, conflict("operation %s exists", c.ID)
	}
	seen := make(map[string]bool, len(c.Plan.Changes))
	for _, ch := range c.Plan.Changes {
		if ch.Address == "" || seen[ch.Address] {
			return nil, invalid("plan has an empty or repeated address %q", ch.Address)
		}
		seen[ch.Address] = true
	}
	if c.Desired != nil {
		if c.Desired.Project != c.Project || c.Desired.Name != c.Stack {
			return nil, invalid("desired state is for another stack")
		}
		if err := c.Desired.validate(tx); err != nil {
			return nil, err
		}
	}
	st, ok := tx.t.stacks[stackKey(c.Project, c.Stack)]
	var serial uint64
	switch {
	case ok:
		serial = st.Serial
		if st.ActiveOperation != "" {
			return nil, conflict("stack %s/%s has an unfinished operation %s", c.Project, c.Stack, st.ActiveOperation)
		}
	case c.Desired == nil:
		return nil, notFound("stack %s/%s", c.Project, c.Stack)
	}
	if serial != c.Serial {
		return nil, errorf(ErrStaleSerial, "planned against serial %d, the stack is at %d", c.Serial, serial)
	}

	if c.Desired != nil {
		st = c.Desired.put(tx)
	}
	op := &Operation{
		ID: c.ID, Project: c.Project, Stack: c.Stack, Kind: c.Kind,
		Plan: c.Plan, Serial: c.Serial, Status: OpPending, Forget: c.Forget,
		Created: c.Time, CreateIndex: tx.index, Index: tx.index,
		Actions: make([]ActionState, len(c.Plan.Changes)),
	}
	for i, ch := range c.Plan.Changes {
		a := ActionState{Address: ch.Address, Action: ch.Action, Status: ActionPending, Index: tx.index}
		if ch.Action == 0 { // planner.NoOp: nothing to do
			a.Status = ActionDone
		}
		op.Actions[i] = a
	}
	op.indexActions()
	tx.t.operations[c.ID] = op
	st.ActiveOperation = c.ID
	st.Status, st.StatusReason = StackInProgress, ""
	st.Updated = c.Time
	st.Index = tx.index
	tx.appendEvents(stackKey(c.Project, c.Stack), withOp(c.Events, c.ID))
	return nil, nil
}

func (c *CancelOperation) apply(tx *txn) (any, error) {
	o, err := tx.liveOperation(c.ID)
	if err != nil {
		return nil, err
	}
	o.CancelRequested = true
	if o.Error == "" {
		o.Error = c.Reason
	}
	o.Index = tx.index
	tx.appendEvents(stackKey(o.Project, o.Stack), withOp(c.Events, o.ID))
	return nil, nil
}

// liveOperation finds an unfinished operation.
func (tx *txn) liveOperation(id string) (*Operation, error) {
	o, err := tx.operation(id)
	if err != nil {
		return nil, err
	}
	if o.Status.Final() {
		return nil, conflict("operation %s is already %s", id, o.Status)
	}
	return o, nil
}

// liveAction finds an action of an unfinished operation.
func (tx *txn) liveAction(opID, addr string) (*Operation, *ActionState, error) {
	o, err := tx.liveOperation(opID)
	if err != nil {
		return nil, nil, err
	}
	a := o.Action(addr)
	if a == nil {
		return nil, nil, notFound("action %s in operation %s", addr, opID)
	}
	return o, a, nil
}

func (c *ActionStarted) apply(tx *txn) (any, error) {
	o, a, err := tx.liveAction(c.Operation, c.Address)
	if err != nil {
		return nil, err
	}
	if a.Status.Final() {
		return nil, conflict("action %s is already %s", c.Address, a.Status)
	}
	a.Status, a.Index = ActionRunning, tx.index
	a.Attempts++
	a.Started = c.Time
	if c.Agent != "" {
		a.Agent = c.Agent
	}
	if o.Status == OpPending {
		o.Status = OpRunning
		o.Started = c.Time
	}
	o.Index = tx.index
	tx.appendEvents(stackKey(o.Project, o.Stack), withAction(c.Events, o.ID, c.Address))
	return nil, nil
}

func (c *ActionFinished) apply(tx *txn) (any, error) {
	o, a, err := tx.liveAction(c.Operation, c.Address)
	if err != nil {
		return nil, err
	}
	switch c.Status {
	case ActionDone, ActionFailed:
	case ActionSkipped, ActionCancelled:
		if a.Status != ActionPending {
			return nil, conflict("action %s is %s, only a pending action is %s", c.Address, a.Status, c.Status)
		}
	default:
		return nil, invalid("action status %q is not done, failed, skipped or cancelled", c.Status)
	}
	if a.Status.Final() {
		return nil, conflict("action %s is already %s", c.Address, a.Status)
	}
	if c.Resource != nil && c.Resource.State.Address != c.Address {
		return nil, invalid("resource %s recorded for action %s", c.Resource.State.Address, c.Address)
	}
	var skip []*ActionState
	for _, addr := range c.Skip {
		s := o.Action(addr)
		if s == nil {
			return nil, notFound("action %s in operation %s", addr, o.ID)
		}
		if s.Status == ActionRunning {
			return nil, conflict("action %s is running and cannot be skipped", addr)
		}
		if s.Status == ActionPending && s != a {
			skip = append(skip, s)
		}
	}
	st, err := tx.stack(o.Project, o.Stack)
	if err != nil {
		return nil, err
	}

	a.Status, a.Error, a.Finished, a.ReadySeconds, a.Index = c.Status, c.Error, c.Time, c.ReadySeconds, tx.index
	for _, s := range skip {
		s.Status, s.Error, s.Finished, s.Index = ActionSkipped, c.SkipReason, c.Time, tx.index
	}
	if c.Resource != nil {
		tx.putResource(st, *c.Resource, c.Time)
	}
	if c.DeleteResource {
		tx.deleteResource(st, c.Address, c.Time)
	}
	if o.Status == OpPending {
		o.Status, o.Started = OpRunning, c.Time
	}
	o.Index = tx.index
	tx.appendEvents(stackKey(o.Project, o.Stack), withAction(c.Events, o.ID, c.Address))
	return nil, nil
}

func (c *FinishOperation) apply(tx *txn) (any, error) {
	o, err := tx.liveOperation(c.ID)
	if err != nil {
		return nil, err
	}
	switch c.Status {
	case OpDone:
		for _, a := range o.Actions {
			if !a.Status.Final() {
				return nil, conflict("action %s is still %s", a.Address, a.Status)
			}
		}
	case OpFailed, OpCancelled:
	default:
		return nil, invalid("operation status %q is not done, failed or cancelled", c.Status)
	}
	key := stackKey(o.Project, o.Stack)
	st := tx.t.stacks[key] // present: a stack with an unfinished operation is never deleted

	reason := "operation " + string(c.Status)
	if c.Error != "" {
		reason += ": " + c.Error
	}
	// The leader's engine records every action final before it ends an
	// operation (a cancel records the unstarted ones cancelled); what is
	// left here is skipped or failed as it always was, so that servers of
	// every version apply this entry alike.
	for i := range o.Actions {
		a := &o.Actions[i]
		switch a.Status {
		case ActionPending:
			a.Status, a.Error, a.Finished, a.Index = ActionSkipped, reason, c.Time, tx.index
		case ActionRunning:
			a.Status, a.Error, a.Finished, a.Index = ActionFailed, "interrupted: "+reason, c.Time, tx.index
		}
	}
	o.Status, o.Finished, o.Index = c.Status, c.Time, tx.index
	if c.Error != "" {
		o.Error = c.Error
	}
	if st != nil && st.ActiveOperation == o.ID {
		st.ActiveOperation = ""
		switch {
		case c.Status == OpDone && o.Kind == OpDestroy:
			st.Status, st.StatusReason, st.Outputs = StackDestroyed, "", nil
		case c.Status == OpDone:
			st.Status, st.StatusReason = StackComplete, ""
			if c.Outputs != nil {
				st.Outputs = c.Outputs
			}
		case c.Status == OpFailed:
			st.Status, st.StatusReason = StackFailed, o.Error
		default:
			st.Status, st.StatusReason = StackCancelled, o.Error
		}
		st.Updated, st.Index = c.Time, tx.index
	}
	tx.appendEvents(key, withOp(c.Events, o.ID))
	tx.dropWork(o.ID)
	tx.pruneOperations(o.Project, o.Stack)
	return nil, nil
}

// pruneOperations keeps the newest MaxFinishedOperations finished operations
// of a stack.
func (tx *txn) pruneOperations(project, stack string) {
	var done []*Operation
	for _, o := range tx.t.operations {
		if o.Project == project && o.Stack == stack && o.Status.Final() {
			done = append(done, o)
		}
	}
	if len(done) <= MaxFinishedOperations {
		return
	}
	sort.Slice(done, func(i, j int) bool { return done[i].CreateIndex < done[j].CreateIndex })
	for _, o := range done[:len(done)-MaxFinishedOperations] {
		delete(tx.t.operations, o.ID)
	}
}

func (c *AssignAction) apply(tx *txn) (any, error) {
	o, a, err := tx.liveAction(c.Operation, c.Address)
	if err != nil {
		return nil, err
	}
	if a.Status.Final() {
		return nil, conflict("action %s is already %s", c.Address, a.Status)
	}
	ag, err := tx.agent(c.Agent)
	if err != nil {
		return nil, err
	}
	if ag.Status != AgentUp {
		return nil, conflict("agent %s is %s", c.Agent, ag.Status)
	}
	a.Agent, a.Assigned, a.Index = c.Agent, c.Time, tx.index
	o.Index = tx.index
	return nil, nil
}

func (c *UpsertResource) apply(tx *txn) (any, error) {
	if c.Resource.State.Address == "" {
		return nil, invalid("resource address is empty")
	}
	st, err := tx.stack(c.Resource.Project, c.Resource.Stack)
	if err != nil {
		return nil, err
	}
	tx.putResource(st, c.Resource, c.Time)
	return nil, nil
}

func (c *DeleteResource) apply(tx *txn) (any, error) {
	st, err := tx.stack(c.Project, c.Stack)
	if err != nil {
		return nil, err
	}
	tx.deleteResource(st, c.Address, c.Time)
	return nil, nil
}

func (c *AppendEvents) apply(tx *txn) (any, error) {
	if _, err := tx.stack(c.Project, c.Stack); err != nil {
		return nil, err
	}
	tx.appendEvents(stackKey(c.Project, c.Stack), c.Events)
	return nil, nil
}

func (c *RegisterAgent) apply(tx *txn) (any, error) {
	if c.ID == "" {
		return nil, invalid("agent id is empty")
	}
	ag, ok := tx.t.agents[c.ID]
	switch {
	case ok && c.ByJoin && ag.Revoked:
		return nil, conflict("agent %s was revoked: a join token cannot register it again (a global admin can)", c.ID)
	case ok && c.ByJoin && len(tx.agentCredentials(c.ID)) > 0:
		return nil, conflict("agent %s is registered with a credential: a join token cannot take it over (revoke it first, or register with a global admin token)", c.ID)
	case ok && ag.Revoked && c.CredentialID == "":
		return nil, conflict("agent %s was revoked: register it again with a global admin token", c.ID)
	case c.ByJoin && c.CredentialID == "":
		return nil, invalid("a registration by join token issues a credential")
	}
	if c.CredentialID != "" {
		if len(c.CredentialHash) != 64 {
			return nil, invalid("credential secret hash is not a hex sha256")
		}
		if err := tx.checkNewToken(c.CredentialID, c.CredentialHash); err != nil {
			return nil, err
		}
	}
	if !ok {
		ag = &Agent{ID: c.ID, Registered: c.Time}
		tx.t.agents[c.ID] = ag
	}
	if c.CredentialID != "" {
		for _, id := range tx.agentCredentials(c.ID) {
			delete(tx.t.tokenByHash, tx.t.tokens[id].SecretHash)
			delete(tx.t.tokens, id)
		}
		tx.t.tokens[c.CredentialID] = &Token{
			ID: c.CredentialID, SecretHash: c.CredentialHash, Kind: TokenAgent, Agent: c.ID,
			Description: "credential of agent " + c.ID, Created: c.Time, Index: tx.index,
		}
		tx.t.tokenByHash[c.CredentialHash] = c.CredentialID
		ag.Revoked = false
	}
	ag.Address, ag.Capacity, ag.Images = c.Address, c.Capacity, c.Images
	tx.markAgentUp(ag, c.Time)
	return nil, nil
}

func (c *AgentHeartbeat) apply(tx *txn) (any, error) {
	ag, ok := tx.t.agents[c.ID]
	if !ok {
		return nil, notFound("agent %s (register first)", c.ID)
	}
	if ag.Revoked {
		return nil, conflict("agent %s was revoked: register it again with a global admin token", c.ID)
	}
	if c.Capacity != nil {
		ag.Capacity = *c.Capacity
	}
	if c.Images != nil {
		ag.Images = c.Images
	}
	tx.markAgentUp(ag, c.Time)
	return nil, nil
}

func (c *MarkAgentDown) apply(tx *txn) (any, error) {
	ag, err := tx.agent(c.ID)
	if err != nil {
		return nil, err
	}
	tx.markAgentDown(ag, c.Reason)
	return nil, nil
}

// markAgentUp records a sign of life of an agent at the given time.
func (tx *txn) markAgentUp(ag *Agent, at time.Time) {
	ag.Status, ag.StatusReason = AgentUp, ""
	ag.LastHeartbeat, ag.Index = at, tx.index
}

// markAgentDown marks an agent down and unassigns the actions it had not
// started.
func (tx *txn) markAgentDown(ag *Agent, reason string) {
	ag.Status, ag.StatusReason, ag.Index = AgentDown, reason, tx.index
	for _, o := range tx.t.operations {
		if o.Status.Final() {
			continue
		}
		for i := range o.Actions {
			a := &o.Actions[i]
			if a.Agent == ag.ID && a.Status == ActionPending {
				a.Agent, a.Assigned, a.Index = "", time.Time{}, tx.index
				o.Index = tx.index
			}
		}
	}
}

func withOp(evs []Event, op string) []Event {
	for i := range evs {
		if evs[i].Operation == "" {
			evs[i].Operation = op
		}
	}
	return evs
}

func withAction(evs []Event, op, addr string) []Event {
	evs = withOp(evs, op)
	for i := range evs {
		if evs[i].Address == "" {
			evs[i].Address = addr
		}
	}
	return evs
}
