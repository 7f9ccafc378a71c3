package server

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/kiln-dev/kiln/daemon/api"
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
	return api.TokenInfo{ID: t.ID, Project: t.Project, Role: string(t.Role), Name: t.Description, Created: t.Created}
}

func (s *Server) handleTokens(w http.ResponseWriter, r *http.Request) error {
	c := callerOf(r)
	project := c.token.Project // "" lists every token for a management token
	out := []api.TokenInfo{}
	for _, t := range s.store.State().Tokens(project) {
		out = append(out, tokenInfo(t))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleCreateToken(w http.ResponseWriter, r *http.Request) error {
	c := callerOf(r)
	var req api.TokenRequest
	if err := decode(r, &req, false); err != nil {
		return err
	}
	role := raftstore.Role(req.Role)
	if !role.Valid() {
		return &httpError{code: http.StatusBadRequest, field: "role", msg: fmt.Sprintf("role %q is not admin, member or reader", req.Role)}
	}
	if req.Project == "" {
		return &httpError{code: http.StatusBadRequest, field: "project", msg: "project is required"}
	}
	if !c.global() && req.Project != c.token.Project {
		return &httpError{code: http.StatusForbidden, field: "project", msg: fmt.Sprintf("an admin of project %s cannot make tokens for project %s", c.token.Project, req.Project)}
	}
	secret := "kiln_" + randomHex(24)
	cmd := &raftstore.CreateToken{
		ID: "tok-" + randomHex(8), Project: req.Project, Role: role,
		SecretHash: raftstore.HashSecret(secret), Description: req.Name, Time: time.Now().UTC(),
	}
	if err := s.apply(r.Context(), cmd); err != nil {
		return err
	}
	t, _ := s.store.State().Token(cmd.ID)
	return writeJSON(w, http.StatusCreated, api.TokenCreated{TokenInfo: tokenInfo(t), Secret: secret})
}

func (s *Server) handleRevokeToken(w http.ResponseWriter, r *http.Request) error {
	c := callerOf(r)
	id := r.PathValue("id")
	t, ok := s.store.State().Token(id)
	if !ok || (!c.global() && t.Project != c.token.Project) {
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
	}
}

func (s *Server) handleAgents(w http.ResponseWriter, r *http.Request) error {
	out := []api.AgentInfo{}
	for _, a := range s.store.State().Agents() {
		out = append(out, s.agentInfo(a))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleRegisterAgent(w http.ResponseWriter, r *http.Request) error {
	var req api.AgentRegister
	if err := decode(r, &req, false); err != nil {
		return err
	}
	if req.ID == "" {
		return &httpError{code: http.StatusBadRequest, field: "id", msg: "id is required"}
	}
	if err := req.Capacity.CheckRatios("capacity"); err != nil {
		return &httpError{code: http.StatusBadRequest, field: "capacity", msg: err.Error()}
	}
	err := s.apply(r.Context(), &raftstore.RegisterAgent{
		ID: req.ID, Address: req.Address, Images: req.Images, Time: time.Now().UTC(),
		Capacity: raftstore.Capacity(req.Capacity),
	})
	if err != nil {
		return err
	}
	a, _ := s.store.State().Agent(req.ID)
	return writeJSON(w, http.StatusOK, s.agentInfo(a))
}

func (s *Server) handleHeartbeat(w http.ResponseWriter, r *http.Request) error {
	var req api.AgentHeartbeat
	if err := decode(r, &req, true); err != nil {
		return err
	}
	if err := req.Capacity.CheckRatios("capacity"); err != nil {
		return &httpError{code: http.StatusBadRequest, field: "capacity", msg: err.Error()}
	}
	capa := raftstore.Capacity(req.Capacity)
	cmd := &raftstore.AgentHeartbeat{ID: r.PathValue("id"), Images: req.Images, Time: time.Now().UTC()}
	if capa != (raftstore.Capacity{}) {
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
	var items []raftstore.Work
	s.block(r.Context(), wait, func() bool {
		items = st.PendingWork(id)
		for _, it := range items {
			if it.Index > index {
				return true
			}
		}
		return false
	})
	resp := api.WorkResponse{Items: []api.WorkItem{}, Index: st.Index()}
	for _, it := range items {
		var wi api.WorkItem
		if err := jsonUnmarshal(it.Payload, &wi); err != nil {
			return fmt.Errorf("work %s: %w", it.ID, err)
		}
		resp.Items = append(resp.Items, wi)
	}
	w.Header().Set(api.IndexHeader, strconv.FormatUint(resp.Index, 10))
	return writeJSON(w, http.StatusOK, resp)
}

func (s *Server) handleResults(w http.ResponseWriter, r *http.Request) error {
	var rep api.ActionReport
	if err := decode(r, &rep, false); err != nil {
		return err
	}
	if rep.WorkID == "" {
		return &httpError{code: http.StatusBadRequest, field: "work_id", msg: "work_id is required"}
	}
	body, err := jsonMarshal(rep)
	if err != nil {
		return err
	}
	if err := s.apply(r.Context(), &raftstore.ReportWork{ID: rep.WorkID, Agent: r.PathValue("id"), Result: body, Time: time.Now().UTC()}); err != nil {
		return err
	}
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

func (s *Server) handleJoin(w http.ResponseWriter, r *http.Request) error {
	var req api.JoinRequest
	if err := decode(r, &req, false); err != nil {
		return err
	}
	switch {
	case req.ID == "":
		return &httpError{code: http.StatusBadRequest, field: "id", msg: "id is required"}
	case req.RaftAddr == "":
		return &httpError{code: http.StatusBadRequest, field: "raft_addr", msg: "raft_addr is required"}
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
