package balancer

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/bbb-agent/bbb-agent/agentapi"
	"github.com/bbb-agent/bbb-agent/balancer/records"
	"github.com/bbb-agent/bbb-agent/balancer/store"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/fleet"
)

// agentHandler serves /agent/v1/.
func (s *Server) agentHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+agentapi.PathRegister, s.agentRegister)
	mux.HandleFunc("POST "+agentapi.PathReport, s.agentReport)
	mux.HandleFunc("POST "+agentapi.PathDrain, s.agentSetState(fleet.Cordoned))
	mux.HandleFunc("POST "+agentapi.PathUndrain, s.agentSetState(fleet.Enabled))
	mux.HandleFunc("POST "+agentapi.PathDeregister, s.agentDeregister)
	mux.HandleFunc("POST "+agentapi.PathRecording, s.agentRecording)
	mux.HandleFunc("GET "+agentapi.PathPing, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	return s.requireToken(s.cfg.AgentToken, mux, func(w http.ResponseWriter) {
		s.metrics.reportErrors.WithLabelValues(agentapi.CodeUnauthorized).Inc()
		writeJSON(w, http.StatusUnauthorized, agentapi.Error{Error: "missing or wrong agent token", Code: agentapi.CodeUnauthorized})
	})
}

// requireToken checks "Authorization: Bearer <token>" in constant time.
func (s *Server) requireToken(token string, next http.Handler, deny func(http.ResponseWriter)) http.Handler {
	want := []byte(token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			deny(w)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) agentRegister(w http.ResponseWriter, r *http.Request) {
	var req agentapi.RegisterRequest
	if !decodeAgentJSON(w, r, &req) {
		return
	}
	n, err := s.nodeFromRegistration(req)
	if err != nil {
		agentError(w, http.StatusBadRequest, agentapi.CodeBadRequest, err.Error())
		return
	}
	stored, err := s.store.UpsertNode(r.Context(), n)
	if errors.Is(err, store.ErrConflict) {
		stored, err = s.adoptNode(r, n)
	}
	if errors.Is(err, store.ErrConflict) {
		agentError(w, http.StatusConflict, agentapi.CodeConflict, err.Error())
		return
	}
	if err != nil {
		s.log.Error("agent register", "node", n.Name, "err", err)
		agentError(w, http.StatusInternalServerError, agentapi.CodeInternal, "the balancer's database did not answer; retry")
		return
	}
	s.reg.put(stored)
	s.log.Info("node registered", "node", stored.Name, "id", stored.ID, "url", stored.URL, "role", stored.Role, "state", stored.State)
	writeJSON(w, http.StatusOK, agentapi.RegisterResponse{NodeID: stored.ID, State: stored.State})
}

// adoptNode lets an agent take over a node an operator added by URL (a
// fleet migrating to agents node by node): the node keeps its ID and
// state and is renamed to the agent's node name.
func (s *Server) adoptNode(r *http.Request, n records.Node) (records.Node, error) {
	nodes, err := s.store.Nodes(r.Context())
	if err != nil {
		return records.Node{}, err
	}
	for _, old := range nodes {
		if old.URL == n.URL && old.Source == records.SourcePoll {
			if err := s.store.RenameNode(r.Context(), old.ID, n.Name); err != nil {
				return records.Node{}, err
			}
			s.reg.remove(old.ID)
			s.log.Info("agent adopts an operator-added node", "node", n.Name, "was", old.Name)
			return s.store.UpsertNode(r.Context(), n)
		}
	}
	return records.Node{}, fmt.Errorf("%w: the URL %s belongs to another agent's node", store.ErrConflict, n.URL)
}

func (s *Server) nodeFromRegistration(req agentapi.RegisterRequest) (records.Node, error) {
	if req.Node == "" {
		return records.Node{}, errors.New("node name is empty")
	}
	role, err := fleet.ParseRole(req.Role)
	if err != nil {
		return records.Node{}, err
	}
	n := records.Node{Name: req.Node, Role: role, Tags: req.Tags, LoadMultiplier: req.LoadMultiplier,
		Source: records.SourceAgent, AgentVersion: req.AgentVersion, State: fleet.Enabled, CreatedAt: s.cfg.Clock(),
		ReportInterval: time.Duration(req.ReportIntervalSeconds * float64(time.Second))}
	if role == fleet.RoleBBB {
		if n.URL, err = bbb.APIURL(req.URL); err != nil {
			return records.Node{}, err
		}
		if req.Secret == "" {
			return records.Node{}, errors.New("BBB secret is empty")
		}
		n.Secret = req.Secret
	}
	if role == fleet.RoleTURN {
		if len(req.TURNURIs) == 0 {
			return records.Node{}, errors.New("a TURN node must say what it offers: turn_uris is empty")
		}
		for _, u := range req.TURNURIs {
			if !strings.HasPrefix(u, "turn:") && !strings.HasPrefix(u, "turns:") && !strings.HasPrefix(u, "stun:") {
				return records.Node{}, fmt.Errorf("turn_uris: %q is not a stun:, turn: or turns: URI", u)
			}
		}
		n.TURNURIs = req.TURNURIs
	}
	if n.LoadMultiplier < 0 {
		return records.Node{}, errors.New("load_multiplier must not be negative")
	}
	if n.ReportInterval < 0 || n.ReportInterval > time.Hour {
		return records.Node{}, errors.New("report_interval_seconds must be between 0 and 3600")
	}
	return n, nil
}

func (s *Server) agentReport(w http.ResponseWriter, r *http.Request) {
	var req agentapi.ReportRequest
	if !decodeAgentJSON(w, r, &req) {
		return
	}
	n, err := s.reg.report(req.Node, req.Seq, req.Load)
	if err != nil {
		// Registered through another replica since our last refresh?
		if stored, serr := s.store.NodeByName(r.Context(), req.Node); serr == nil {
			s.reg.put(stored)
			n, err = s.reg.report(req.Node, req.Seq, req.Load)
		}
	}
	if err != nil {
		s.metrics.reportErrors.WithLabelValues(agentapi.CodeUnknownNode).Inc()
		agentError(w, http.StatusNotFound, agentapi.CodeUnknownNode, fmt.Sprintf("node %q is not registered: register first", req.Node))
		return
	}
	s.metrics.reports.Inc()
	placedBefore := s.cfg.Clock().Add(-n.ReportInterval)
	switch {
	case req.MeetingIDs != nil && n.State == fleet.Cordoned:
		s.prune(r.Context(), n.ID, req.MeetingIDs, placedBefore) // before the emptiness check below
	case req.MeetingIDs != nil:
		s.pruneAsync(n.ID, req.MeetingIDs, placedBefore)
	}
	if n.State == fleet.Cordoned && req.Load.Meetings == 0 {
		s.disableIfEmpty(n)
		n, _, _ = s.reg.node(n.ID)
	}
	writeJSON(w, http.StatusOK, agentapi.ReportResponse{State: n.State, TURNServers: s.turnServers()})
}

// turnServers lists the online, enabled TURN nodes.
func (s *Server) turnServers() []agentapi.TURNServer {
	nodes := s.reg.turnServers()
	out := make([]agentapi.TURNServer, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, agentapi.TURNServer{Node: n.Name, URIs: n.TURNURIs})
	}
	return out
}

func (s *Server) agentSetState(to fleet.AdminState) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req agentapi.NodeRequest
		if !decodeAgentJSON(w, r, &req) {
			return
		}
		n, ok := s.reg.byNodeName(req.Node)
		if !ok {
			agentError(w, http.StatusNotFound, agentapi.CodeUnknownNode, fmt.Sprintf("node %q is not registered", req.Node))
			return
		}
		updated, err := s.store.SetNodeState(r.Context(), n.ID, to)
		if err != nil {
			s.log.Error("agent state change", "node", n.Name, "to", to, "err", err)
			agentError(w, http.StatusInternalServerError, agentapi.CodeInternal, "the balancer's database did not answer; retry")
			return
		}
		s.reg.put(updated)
		s.log.Info("node state set by its agent", "node", n.Name, "state", to)
		writeJSON(w, http.StatusOK, agentapi.StateResponse{State: updated.State})
	}
}

func (s *Server) agentDeregister(w http.ResponseWriter, r *http.Request) {
	var req agentapi.NodeRequest
	if !decodeAgentJSON(w, r, &req) {
		return
	}
	n, ok := s.reg.byNodeName(req.Node)
	if !ok {
		// Already gone: deregistering is idempotent.
		writeJSON(w, http.StatusOK, agentapi.StateResponse{State: fleet.Disabled})
		return
	}
	if err := s.store.DeleteNode(r.Context(), n.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Error("agent deregister", "node", n.Name, "err", err)
		agentError(w, http.StatusInternalServerError, agentapi.CodeInternal, "the balancer's database did not answer; retry")
		return
	}
	s.reg.remove(n.ID)
	s.log.Info("node deregistered", "node", n.Name)
	writeJSON(w, http.StatusOK, agentapi.StateResponse{State: fleet.Disabled})
}

func decodeAgentJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, agentapi.MaxBodyBytes))
	if err := dec.Decode(v); err != nil {
		agentError(w, http.StatusBadRequest, agentapi.CodeBadRequest, "request body is not the expected JSON: "+err.Error())
		return false
	}
	return true
}

func agentError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, agentapi.Error{Error: msg, Code: code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
