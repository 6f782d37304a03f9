package balancer

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/bbb-agent/bbb-agent/balancer/records"
	"github.com/bbb-agent/bbb-agent/balancer/store"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/fleet"
)

// Scalelite's server API (REFERENCE §3): /scalelite/api/<action>, signed
// like a BBB API call with the balancer's BBB API secret, JSON bodies in and
// out. Servers added through it are polled like `servers add`'s; their id is
// the balancer's node id (the node's name also finds it).
const scalelitePrefix = "/scalelite/api/"

type slFields struct {
	URL            *string  `json:"url"`
	Secret         *string  `json:"secret"`
	LoadMultiplier *float64 `json:"load_multiplier"`
	Tag            *string  `json:"tag"`
	State          *string  `json:"state"`
	KeepState      bool     `json:"keep_state"`
}

type slRequest struct {
	ID     string   `json:"id"`
	Server slFields `json:"server"`
}

type slServer struct {
	ID             string  `json:"id"`
	URL            string  `json:"url"`
	Secret         string  `json:"secret"`
	Tag            *string `json:"tag"`
	State          string  `json:"state"`
	Load           float64 `json:"load"`
	LoadMultiplier string  `json:"load_multiplier"`
	Online         string  `json:"online"`
}

func (s *Server) scaleliteHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		action, _ := strings.CutPrefix(r.URL.Path, scalelitePrefix)
		if _, err := s.verifier.Verify(action, r.URL.RawQuery); err != nil {
			slFailed(w, "checksumError", "You did not pass the checksum security check")
			return
		}
		var method string
		var h func(http.ResponseWriter, *http.Request)
		switch action {
		case "getServers":
			method, h = http.MethodGet, s.slGetServers
		case "getServerInfo":
			method, h = http.MethodGet, s.slGetServerInfo
		case "addServer":
			method, h = http.MethodPost, s.slAddServer
		case "updateServer":
			method, h = http.MethodPost, s.slUpdateServer
		case "deleteServer":
			method, h = http.MethodPost, s.slDeleteServer
		case "panicServer":
			method, h = http.MethodPost, s.slPanicServer
		}
		if h == nil || r.Method != method {
			slFailed(w, "unsupportedRequest", "This request is not supported.")
			return
		}
		h(w, r)
	})
}

func (s *Server) slView(n nodeView) slServer {
	out := slServer{ID: n.ID, URL: n.URL, Secret: n.Secret, State: string(n.State), Online: "offline",
		Load: s.cfg.Policy.Load(n.Node, n.Reserved), LoadMultiplier: strconv.FormatFloat(n.LoadMultiplier, 'f', -1, 64)}
	if !strings.Contains(out.LoadMultiplier, ".") {
		out.LoadMultiplier += ".0"
	}
	if len(n.Tags) > 0 {
		out.Tag = &n.Tags[0]
	}
	if n.Online {
		out.Online = "online"
	}
	return out
}

func (s *Server) slFind(id string) (nodeView, bool) {
	if id == "" {
		return nodeView{}, false
	}
	return s.reg.find(id)
}

func (s *Server) slGetServers(w http.ResponseWriter, _ *http.Request) {
	ids := s.reg.idsByName(func(n *records.Node) bool { return n.Role == fleet.RoleBBB })
	if len(ids) == 0 {
		slError(w, http.StatusNotFound, "No servers found")
		return
	}
	writeNodeList(w, s.reg, ids, s.slView)
	s.collector.after()
}

func (s *Server) slGetServerInfo(w http.ResponseWriter, r *http.Request) {
	n, ok := s.slFind(r.URL.Query().Get("id"))
	if !ok {
		slError(w, http.StatusNotFound, "Server not found")
		return
	}
	writeJSON(w, http.StatusOK, s.slView(n))
}

func slDecode(w http.ResponseWriter, r *http.Request) (slRequest, bool) {
	var req slRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
		slError(w, http.StatusBadRequest, "Invalid JSON body")
		return req, false
	}
	return req, true
}

// slAddServer adds a server disabled, as Scalelite does: updateServer
// with state enable puts it into placement.
func (s *Server) slAddServer(w http.ResponseWriter, r *http.Request) {
	req, ok := slDecode(w, r)
	if !ok {
		return
	}
	f := req.Server
	if f.URL == nil || *f.URL == "" || f.Secret == nil || *f.Secret == "" {
		slError(w, http.StatusBadRequest, "Server needs a URL and a secret")
		return
	}
	apiURL, err := bbb.APIURL(*f.URL)
	if err != nil {
		slError(w, http.StatusBadRequest, err.Error())
		return
	}
	n := records.Node{Name: hostname(apiURL, apiURL), URL: apiURL, Secret: *f.Secret, Role: fleet.RoleBBB,
		State: fleet.Disabled, Source: records.SourcePoll, ReportInterval: s.cfg.PollInterval, CreatedAt: s.cfg.Clock()}
	if f.LoadMultiplier != nil {
		if *f.LoadMultiplier < 0 {
			slError(w, http.StatusBadRequest, "Load multiplier must not be negative")
			return
		}
		n.LoadMultiplier = *f.LoadMultiplier
	}
	if f.Tag != nil && *f.Tag != "" {
		n.Tags = []string{*f.Tag}
	}
	if _, exists := s.reg.byNodeName(n.Name); exists {
		slError(w, http.StatusBadRequest, fmt.Sprintf("Server with hostname %s already exists", n.Name))
		return
	}
	stored, err := s.store.UpsertNode(r.Context(), n)
	if err == nil && stored.State != fleet.Disabled {
		stored, err = s.store.SetNodeState(r.Context(), stored.ID, fleet.Disabled)
	}
	if !s.slStored(w, err) {
		return
	}
	s.reg.put(stored)
	s.log.Info("server added through the Scalelite API", "node", stored.Name, "id", stored.ID)
	s.bg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.NodeTimeout)
		defer cancel()
		s.pollNode(ctx, stored)
	})
	writeJSON(w, http.StatusOK, s.slView(nodeView{Node: stored}))
}

// slStored answers a database error; it reports whether there was none.
func (s *Server) slStored(w http.ResponseWriter, err error) bool {
	switch {
	case err == nil:
		return true
	case errors.Is(err, store.ErrConflict):
		slError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, store.ErrNotFound):
		slError(w, http.StatusNotFound, "Server not found")
	default:
		s.log.Error("scalelite API: database", "err", err)
		slError(w, http.StatusInternalServerError, "the balancer's database did not answer")
	}
	return false
}

func (s *Server) slUpdateServer(w http.ResponseWriter, r *http.Request) {
	req, ok := slDecode(w, r)
	if !ok {
		return
	}
	n, ok := s.slFind(req.ID)
	if !ok {
		slError(w, http.StatusNotFound, "Server not found")
		return
	}
	f := req.Server
	var state fleet.AdminState
	if f.State != nil {
		switch *f.State {
		case "enable":
			state = fleet.Enabled
		case "cordon":
			state = fleet.Cordoned
		case "disable":
			state = fleet.Disabled
		default:
			slError(w, http.StatusBadRequest, fmt.Sprintf("Invalid state %q: use enable, cordon or disable", *f.State))
			return
		}
	}
	updated := n.Node
	changed := false
	if f.LoadMultiplier != nil {
		if *f.LoadMultiplier <= 0 {
			slError(w, http.StatusBadRequest, "Load multiplier must be a positive number")
			return
		}
		updated.LoadMultiplier, changed = *f.LoadMultiplier, true
	}
	if f.Secret != nil && *f.Secret != "" {
		updated.Secret, changed = *f.Secret, true
	}
	if f.Tag != nil {
		updated.Tags, changed = nil, true
		if *f.Tag != "" {
			updated.Tags = []string{*f.Tag}
		}
	}
	var err error
	if changed {
		updated, err = s.store.UpsertNode(r.Context(), updated)
		if !s.slStored(w, err) {
			return
		}
	}
	if state != "" {
		updated, err = s.store.SetNodeState(r.Context(), n.ID, state)
		if !s.slStored(w, err) {
			return
		}
	}
	s.reg.put(updated)
	s.log.Info("server updated through the Scalelite API", "node", n.Name, "state", updated.State)
	n.Node = updated
	writeJSON(w, http.StatusOK, s.slView(n))
}

func (s *Server) slDeleteServer(w http.ResponseWriter, r *http.Request) {
	req, ok := slDecode(w, r)
	if !ok {
		return
	}
	n, ok := s.slFind(req.ID)
	if !ok {
		slError(w, http.StatusNotFound, "Server not found")
		return
	}
	if err := s.store.DeleteNode(r.Context(), n.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.slStored(w, err)
		return
	}
	s.reg.remove(n.ID)
	s.log.Info("server removed through the Scalelite API", "node", n.Name)
	writeJSON(w, http.StatusOK, map[string]string{"success": fmt.Sprintf("Server id=%s was destroyed", n.ID)})
}

func (s *Server) slPanicServer(w http.ResponseWriter, r *http.Request) {
	req, ok := slDecode(w, r)
	if !ok {
		return
	}
	n, ok := s.slFind(req.ID)
	if !ok {
		slError(w, http.StatusNotFound, "Server not found")
		return
	}
	resp, status, err := s.panicNode(r.Context(), n, !req.Server.KeepState)
	if err != nil {
		slError(w, status, err.Error())
		return
	}
	msg := fmt.Sprintf("Server id=%s has been disabled and the meetings have been destroyed", n.ID)
	if req.Server.KeepState {
		msg = fmt.Sprintf("Server id=%s: the meetings have been destroyed", n.ID)
	}
	if len(resp.Failed) > 0 {
		msg += fmt.Sprintf(" (%d could not be ended: %s)", len(resp.Failed), strings.Join(resp.Failed, ", "))
	}
	writeJSON(w, http.StatusOK, map[string]string{"success": msg})
}

func slError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// slFailed is Scalelite's answer to a call it refuses before routing: BBB's
// XML failure.
func slFailed(w http.ResponseWriter, key, msg string) {
	w.Header().Set("Content-Type", "application/xml; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, xml.Header)
	_ = xml.NewEncoder(w).Encode(struct {
		XMLName    xml.Name `xml:"response"`
		ReturnCode string   `xml:"returncode"`
		MessageKey string   `xml:"messageKey"`
		Message    string   `xml:"message"`
	}{ReturnCode: "FAILED", MessageKey: key, Message: msg})
}
