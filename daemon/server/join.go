package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/kiln-dev/kiln/api"
)

// joinProbeTimeout bounds each check of a joining peer.
const joinProbeTimeout = 5 * time.Second

// checkJoin refuses a join that would rewrite a member's address or take
// another member's address, and a new peer that does not answer on both its
// addresses. member reports a node that is a member at exactly these
// addresses already (the join is then a no-op).
func (s *Server) checkJoin(ctx context.Context, req api.JoinRequest) (member bool, err error) {
	for field, addr := range map[string]string{"raft_addr": req.RaftAddr, "http_addr": req.HTTPAddr} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return false, &httpError{code: http.StatusBadRequest, field: field, msg: fmt.Sprintf("%s %q is not HOST:PORT", field, addr)}
		}
	}
	peers, err := s.store.Peers()
	if err != nil {
		return false, err
	}
	st := s.store.State()
	for _, p := range peers {
		sv, known := st.Server(p.ID)
		switch {
		case p.ID == req.ID && p.Address == req.RaftAddr && known && sv.HTTPAddr == req.HTTPAddr:
			return true, nil
		case p.ID == req.ID && p.Address == req.RaftAddr && (!known || sv.HTTPAddr == ""):
			// A member whose HTTP address was never recorded: record it
			// once it answers.
		case p.ID == req.ID:
			return false, errf(http.StatusConflict, "node %s is already a member at raft address %s, HTTP address %s: a join cannot change a member's address (remove it first with kiln operator raft remove-peer %s)", p.ID, p.Address, sv.HTTPAddr, p.ID)
		case p.Address == req.RaftAddr:
			return false, &httpError{code: http.StatusConflict, field: "raft_addr", msg: fmt.Sprintf("raft address %s is in use by node %s", req.RaftAddr, p.ID)}
		case known && sv.HTTPAddr == req.HTTPAddr:
			return false, &httpError{code: http.StatusConflict, field: "http_addr", msg: fmt.Sprintf("HTTP address %s is in use by node %s", req.HTTPAddr, p.ID)}
		}
	}
	return false, probePeer(ctx, req)
}

// probePeer checks that a joining peer answers: its HTTP address serves
// /v1/health as the node it claims to be, and its raft address accepts a
// TCP connection. A voter that cannot be reached costs the cluster its
// quorum, so nothing is changed until both answer.
func probePeer(ctx context.Context, req api.JoinRequest) error {
	ctx, cancel := context.WithTimeout(ctx, joinProbeTimeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+req.HTTPAddr+"/v1/health", nil)
	if err != nil {
		return &httpError{code: http.StatusBadRequest, field: "http_addr", msg: fmt.Sprintf("http_addr %q: %v", req.HTTPAddr, err)}
	}
	hc := &http.Client{
		Transport:     &http.Transport{Proxy: nil, DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := hc.Do(hreq)
	if err != nil {
		return errf(http.StatusServiceUnavailable, "join of node %s refused, nothing changed: its HTTP address %s does not answer: %v", req.ID, req.HTTPAddr, err)
	}
	defer resp.Body.Close()
	var h api.Health
	if resp.StatusCode != http.StatusOK {
		return errf(http.StatusServiceUnavailable, "join of node %s refused, nothing changed: GET http://%s/v1/health answered %s", req.ID, req.HTTPAddr, resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&h); err != nil {
		return errf(http.StatusServiceUnavailable, "join of node %s refused, nothing changed: http://%s/v1/health is not a kiln health answer: %v", req.ID, req.HTTPAddr, err)
	}
	if h.NodeID != req.ID {
		return &httpError{code: http.StatusConflict, field: "http_addr", msg: fmt.Sprintf("join of node %s refused, nothing changed: HTTP address %s answers as node %q", req.ID, req.HTTPAddr, h.NodeID)}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", req.RaftAddr)
	if err != nil {
		return errf(http.StatusServiceUnavailable, "join of node %s refused, nothing changed: its raft address %s does not accept connections: %v", req.ID, req.RaftAddr, err)
	}
	conn.Close()
	return nil
}
