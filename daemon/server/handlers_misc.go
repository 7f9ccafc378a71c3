package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"time"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/raftstore"
)

// Health, tokens, agents and operator routes.

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) error {
	addr, id := s.store.Leader()
	return writeJSON(w, http.StatusOK, api.Health{
		Leader:     s.store.IsLeader(),
		NodeID:     s.cfg.NodeID,
		LeaderAddr: addr,
		LeaderHTTP: func() string {
			if id == "" {
				return ""
			}
			return s.leaderHTTP()
		}(),
		Index:   s.store.State().Index(),
		Version: Version,
	})
}

func tokenInfo(t raftstore.Token) api.TokenInfo {
	return api.TokenInfo{ID: t.ID, Project: t.Project, Role: string(t.Role), Name: t.Description, Created: t.Created,
		Kind: string(t.Kind), Agent: t.Agent, Expires: t.Expires}
}

// handleTokens lists the tokens a caller administers: a global admin all of
// them, a project admin those of its project.
func (s *Server) handleTokens(w http.ResponseWriter, r *http.Request) error {
	c := callerOf(r)
	project := c.token.Project // "" lists every token for a global admin
	out := []api.TokenInfo{}
	for _, t := range s.store.State().Tokens(project) {
		if project != "" && (t.Project != project || t.Kind != "") {
			continue
		}
		out = append(out, tokenInfo(t))
	}
	return writeJSON(w, http.StatusOK, out)
}

// handleCreateToken makes a token. A project admin makes tokens of its own
// project only; global and join tokens need a global admin.
func (s *Server) handleCreateToken(w http.ResponseWriter, r *http.Request, req api.TokenRequest) error {
	c := callerOf(r)
	cmd := &raftstore.CreateToken{
		ID: "tok-" + randomHex(8), Project: req.Project, Role: raftstore.Role(req.Role),
		Description: req.Name, Time: time.Now().UTC(),
	}
	switch {
	case req.Join && req.Global:
		return &httpError{code: http.StatusBadRequest, field: "join", msg: "a token is either global or join, not both"}
	case (req.Join || req.Global) && !c.globalAdmin():
		return &httpError{code: http.StatusForbidden, field: "global", msg: fmt.Sprintf("only a global admin can make global or join tokens, not an admin of project %s", c.token.Project)}
	case req.Join && (req.Project != "" || req.Role != ""):
		return &httpError{code: http.StatusBadRequest, field: "project", msg: "a join token has no project and no role"}
	case req.Global && req.Project != "":
		return &httpError{code: http.StatusBadRequest, field: "project", msg: "a global token has no project"}
	case !req.Join && !cmd.Role.Valid():
		return &httpError{code: http.StatusBadRequest, field: "role", msg: fmt.Sprintf("role %q is not admin, member or reader", req.Role)}
	case !req.Join && !req.Global && req.Project == "":
		return &httpError{code: http.StatusBadRequest, field: "project", msg: "project is required (or global for a project-less token)"}
	case req.Project != "" && checkProject(req.Project) != nil:
		return &httpError{code: http.StatusBadRequest, field: "project", msg: checkProject(req.Project).Error()}
	case !req.Join && !req.Global && !c.global() && req.Project != c.token.Project:
		return &httpError{code: http.StatusForbidden, field: "project", msg: fmt.Sprintf("an admin of project %s cannot make tokens for project %s", c.token.Project, req.Project)}
	}
	if req.Join {
		cmd.Kind = raftstore.TokenJoin
	}
	if req.TTL != "" {
		ttl, err := time.ParseDuration(req.TTL)
		if err != nil || ttl <= 0 {
			return &httpError{code: http.StatusBadRequest, field: "ttl", msg: fmt.Sprintf("ttl %q is not a positive duration like 24h", req.TTL)}
		}
		cmd.Expires = cmd.Time.Add(ttl)
	}
	secret := "kiln_" + randomHex(24)
	cmd.SecretHash = raftstore.HashSecret(secret)
	if err := s.apply(r.Context(), cmd); err != nil {
		return err
	}
	t, _ := s.store.State().Token(cmd.ID)
	return writeJSON(w, http.StatusCreated, api.TokenCreated{TokenInfo: tokenInfo(t), Secret: secret})
}

// handleRevokeToken deletes a token the caller administers (another
// project's token is not found). Revoking an agent credential revokes its
// agent.
func (s *Server) handleRevokeToken(w http.ResponseWriter, r *http.Request) error {
	c := callerOf(r)
	id := r.PathValue("id")
	t, ok := s.store.State().Token(id)
	if !ok || (!c.global() && (t.Project != c.token.Project || t.Kind != "")) {
		return errf(http.StatusNotFound, "token %s not found", id)
	}
	if err := s.apply(r.Context(), &raftstore.RevokeToken{ID: id}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) agentInfo(a raftstore.Agent) api.AgentInfo {
	return api.AgentInfo{
		ID: a.ID, Address: a.Address, Status: string(a.Status), StatusReason: a.StatusReason,
		// api.Capacity and raftstore.Capacity have the same fields (the
		// conversion stops compiling when one gains a field the other lacks).
		Capacity: api.Capacity(a.Capacity),
		Images:   a.Images, LastHeartbeat: a.LastHeartbeat,
		Actions: len(s.store.State().PendingWork(a.ID)),
		Revoked: a.Revoked,
	}
}

// handleAgents lists the agents. A project token sees no cached image
// names (they may name other projects' images).
func (s *Server) handleAgents(w http.ResponseWriter, r *http.Request) error {
	global := callerOf(r).global()
	out := []api.AgentInfo{}
	for _, a := range s.store.State().Agents() {
		ai := s.agentInfo(a)
		if !global {
			ai.Images = nil
		}
		out = append(out, ai)
	}
	return writeJSON(w, http.StatusOK, out)
}

// handleRegisterAgent registers an agent. With a global admin or a join
// token it issues the agent's credential (returned once, replacing earlier
// ones); a join token cannot take over an agent that has a credential. An
// agent's credential re-registers its own agent only.
func (s *Server) handleRegisterAgent(w http.ResponseWriter, r *http.Request, req api.AgentRegister) error {
	c := callerOf(r)
	if req.ID == "" {
		return required("id")
	}
	if err := req.Capacity.CheckRatios("capacity"); err != nil {
		return &httpError{code: http.StatusBadRequest, field: "capacity", msg: err.Error()}
	}
	if err := req.Capacity.CheckHostPorts("capacity"); err != nil {
		return &httpError{code: http.StatusBadRequest, field: "capacity", msg: err.Error()}
	}
	cmd := &raftstore.RegisterAgent{
		ID: req.ID, Address: req.Address, Images: req.Images, Time: time.Now().UTC(),
		Capacity: raftstore.Capacity(req.Capacity),
	}
	var secret string
	switch c.token.Kind {
	case raftstore.TokenAgent:
		if req.ID != c.token.Agent {
			return &httpError{code: http.StatusForbidden, field: "id", msg: fmt.Sprintf("the credential of agent %s cannot register agent %s", c.token.Agent, req.ID)}
		}
	default: // a global admin or a join token
		cmd.ByJoin = c.token.Kind == raftstore.TokenJoin
		secret = "kiln_agent_" + randomHex(24)
		cmd.CredentialID, cmd.CredentialHash = "tok-"+randomHex(8), raftstore.HashSecret(secret)
	}
	if err := s.apply(r.Context(), cmd); err != nil {
		return err
	}
	a, _ := s.store.State().Agent(req.ID)
	ai := s.agentInfo(a)
	ai.Credential = secret
	return writeJSON(w, http.StatusOK, ai)
}

// handleRevokeAgent revokes an agent's credentials: it gets 401 and no work
// until a global admin registers it again.
func (s *Server) handleRevokeAgent(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	err := s.apply(r.Context(), &raftstore.RevokeAgent{ID: id, Reason: "by token " + callerOf(r).token.ID, Time: time.Now().UTC()})
	if err != nil {
		return err
	}
	a, _ := s.store.State().Agent(id)
	return writeJSON(w, http.StatusOK, s.agentInfo(a))
}

func (s *Server) handleHeartbeat(w http.ResponseWriter, r *http.Request, req api.AgentHeartbeat) error {
	if err := req.Capacity.CheckRatios("capacity"); err != nil {
		return &httpError{code: http.StatusBadRequest, field: "capacity", msg: err.Error()}
	}
	if err := req.Capacity.CheckHostPorts("capacity"); err != nil {
		return &httpError{code: http.StatusBadRequest, field: "capacity", msg: err.Error()}
	}
	capa := raftstore.Capacity(req.Capacity)
	cmd := &raftstore.AgentHeartbeat{ID: r.PathValue("id"), Images: req.Images, Time: time.Now().UTC()}
	if !reflect.ValueOf(capa).IsZero() {
		cmd.Capacity = &capa
	}
	if err := s.apply(r.Context(), cmd); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// handleWork answers an agent's blocking query from this server's state:
// every item not reported yet, once one of them is newer than ?index.
func (s *Server) handleWork(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	index, wait, err := waitParams(r)
	if err != nil {
		return err
	}
	st := s.store.State()
	if _, ok := st.Agent(id); !ok {
		return errf(http.StatusNotFound, "agent %s is not registered", id)
	}
	var (
		items []raftstore.Work
		at    uint64
	)
	s.block(r.Context(), wait, func() bool {
		// The index is read before the items: an item listed was not yet
		// reported at it, so an agent that had its report taken at a
		// later index knows this copy is stale.
		at = st.Index()
		items = st.PendingWork(id)
		for _, it := range items {
			if it.Index > index {
				return true
			}
		}
		return false
	})
	resp := workResponse{Items: make([]json.RawMessage, 0, len(items)), Index: at}
	for _, it := range items {
		if len(it.Payload) == 0 {
			return fmt.Errorf("work %s has no payload", it.ID)
		}
		resp.Items = append(resp.Items, json.RawMessage(it.Payload))
	}
	w.Header().Set(api.IndexHeader, strconv.FormatUint(resp.Index, 10))
	return writeJSON(w, http.StatusOK, resp)
}

// workResponse is api.WorkResponse with its items as the leader stored them
// (each is an api.WorkItem's JSON): the work route serves them without
// decoding them.
type workResponse struct {
	Items []json.RawMessage `json:"items"`
	Index uint64            `json:"index"`
}

func (s *Server) handleResults(w http.ResponseWriter, r *http.Request, rep api.ActionReport) error {
	if rep.WorkID == "" {
		return required("work_id")
	}
	body, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	if err := s.recordReport(r.Context(), rep, &raftstore.ReportWork{ID: rep.WorkID, Agent: r.PathValue("id"), Result: body, Time: time.Now().UTC()}); err != nil {
		return err
	}
	// The index at which the report is recorded (or later): the agent
	// knows a copy of the item handed out before that is stale.
	w.Header().Set(api.IndexHeader, strconv.FormatUint(s.store.State().Index(), 10))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) handlePeers(w http.ResponseWriter, r *http.Request) error {
	peers, err := s.store.Peers()
	if err != nil {
		return err
	}
	out := []api.Peer{}
	for _, p := range peers {
		ap := api.Peer{ID: p.ID, RaftAddr: p.Address, Leader: p.Leader, Voter: p.Voter}
		if sv, ok := s.store.State().Server(p.ID); ok {
			ap.HTTPAddr = sv.HTTPAddr
		}
		out = append(out, ap)
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleJoin(w http.ResponseWriter, r *http.Request, req api.JoinRequest) error {
	switch {
	case req.ID == "":
		return required("id")
	case req.RaftAddr == "":
		return required("raft_addr")
	case req.HTTPAddr == "":
		return required("http_addr")
	}
	member, err := s.checkJoin(r.Context(), req)
	if err != nil || member {
		if err == nil {
			w.WriteHeader(http.StatusNoContent) // already a member at these addresses
		}
		return err
	}
	if err := s.apply(r.Context(), &raftstore.SetServer{ID: req.ID, RaftAddr: req.RaftAddr, HTTPAddr: req.HTTPAddr}); err != nil {
		return err
	}
	if err := s.store.AddVoter(r.Context(), req.ID, req.RaftAddr); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) handleRemovePeer(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := s.store.RemoveServer(r.Context(), id); err != nil {
		return err
	}
	if err := s.apply(r.Context(), &raftstore.SetServer{ID: id, Remove: true}); err != nil && !errors.Is(err, raftstore.ErrNotLeader) {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) handleSnapshotSave(w http.ResponseWriter, r *http.Request) error {
	var buf bytes.Buffer
	if err := s.store.SaveSnapshot(&buf); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set(api.IndexHeader, strconv.FormatUint(s.store.State().Index(), 10))
	_, err := w.Write(buf.Bytes())
	return err
}

func (s *Server) handleSnapshotRestore(w http.ResponseWriter, r *http.Request) error {
	// The body is streamed to a file by the store (the route has no body
	// cap: every snapshot that save wrote must be accepted).
	if err := s.store.RestoreSnapshot(r.Context(), r.Body); err != nil {
		var maxErr *http.MaxBytesError
		switch {
		case errors.As(err, &maxErr):
			return errf(http.StatusRequestEntityTooLarge, "snapshot too large: at most %d bytes", maxErr.Limit)
		case errors.Is(err, raftstore.ErrInvalid):
			return errf(http.StatusBadRequest, "%v", err)
		}
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
