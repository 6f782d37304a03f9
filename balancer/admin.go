package balancer

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bbb-agent/bbb-agent/balancer/adminapi"
	"github.com/bbb-agent/bbb-agent/balancer/records"
	"github.com/bbb-agent/bbb-agent/balancer/store"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/fleet"
)

// adminHandler serves /admin/v1/.
func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+adminapi.PathServers, s.adminList)
	mux.HandleFunc("POST "+adminapi.PathServers, s.adminAdd)
	mux.HandleFunc("GET "+adminapi.PathServer+"{id}", s.adminGet)
	mux.HandleFunc("POST "+adminapi.PathServer+"{id}", s.adminUpdate)
	mux.HandleFunc("POST "+adminapi.PathServer+"{id}/state", s.adminSetState)
	mux.HandleFunc("POST "+adminapi.PathServer+"{id}/panic", s.adminPanic)
	mux.HandleFunc("DELETE "+adminapi.PathServer+"{id}", s.adminRemove)
	mux.HandleFunc("POST "+adminapi.PathServer+"{id}/allow-takeover", s.adminAllowTakeover)
	s.handleAdminRecordings(mux)
	return s.requireToken(s.cfg.AdminToken, mux, func(w http.ResponseWriter) {
		writeJSON(w, http.StatusUnauthorized, adminapi.Error{Error: "missing or wrong admin token"})
	})
}

func (s *Server) serverView(n nodeView) adminapi.Server {
	v := adminapi.Server{
		ID: n.ID, Name: n.Name, Hostname: hostname(n.URL, n.Name), URL: n.URL, Role: n.Role, Source: n.Source,
		State: n.State, Online: n.Online, Status: fleet.Offline,
		Meetings: n.Load.Meetings, Participants: n.Load.Participants, Users: n.Load.Participants, LargestMeeting: n.Load.LargestMeeting,
		Videos: n.Load.Video, Load: s.cfg.Policy.Load(n.Node, n.Reserved), CPUPercent: n.Load.CPUPercent,
		LoadMultiplier: n.LoadMultiplier, Tags: n.Tags, BBBVersion: n.Load.BBBVersion, AgentVersion: n.AgentVersion,
		Healthy: n.Reason == "", Reason: n.Reason, ReasonClass: string(fleet.ReasonClass(n.Reason)),
	}
	if v.Tags == nil {
		v.Tags = []string{}
	}
	if n.Online {
		v.Status = fleet.Online
	}
	if !n.LastReportAt.IsZero() {
		age := s.cfg.Clock().Sub(n.LastReportAt).Seconds()
		v.LastReportAgeSeconds = &age
	}
	return v
}

// hostname is the host of a node's URL, with the port when it has one, so
// that two servers on one address stay apart.
func hostname(apiURL, fallback string) string {
	if u, err := url.Parse(apiURL); err == nil && u.Host != "" {
		return u.Host
	}
	return fallback
}

func (s *Server) adminList(w http.ResponseWriter, r *http.Request) {
	writeNodeList(w, s.reg, s.reg.idsByName(nil), s.serverView)
	s.collector.after()
}

// listChunk is how many nodes writeNodeList copies at a time.
const listChunk = 256

// writeNodeList answers 200 with the JSON array of view of each node of
// ids (idsByName), as writeJSON would encode the whole array, but copying
// listChunk nodes at a time: the array of 10,000 servers is 4.6 MB of
// JSON, and the fleet's copy and the encoded array at once grew a
// balancer's RSS by 14 to 18 MiB. A node removed meanwhile is left out.
// What it still allocates, ~1 KB a node, is garbage at the end: a caller
// runs the transientCollector.
func writeNodeList[V any](w http.ResponseWriter, reg *registry, ids []string, view func(nodeView) V) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 32<<10)
	bw.WriteByte('[')
	first := true
	for chunk := range slices.Chunk(ids, listChunk) {
		for _, n := range reg.views(chunk) {
			b, err := json.Marshal(view(n))
			if err != nil {
				continue // a view of plain fields: never happens
			}
			if !first {
				bw.WriteByte(',')
			}
			first = false
			if _, err := bw.Write(b); err != nil {
				return // the client went away
			}
		}
	}
	bw.WriteString("]\n")
	bw.Flush()
}

func (s *Server) lookup(w http.ResponseWriter, r *http.Request) (nodeView, bool) {
	id := r.PathValue("id")
	if n, ok := s.reg.find(id); ok {
		return n, true
	}
	writeJSON(w, http.StatusNotFound, adminapi.Error{Error: fmt.Sprintf("no server with id or name %q (bbb-balancer servers list shows them)", id)})
	return nodeView{}, false
}

func (s *Server) adminGet(w http.ResponseWriter, r *http.Request) {
	if n, ok := s.lookup(w, r); ok {
		writeJSON(w, http.StatusOK, s.serverView(n))
	}
}

func (s *Server) adminAdd(w http.ResponseWriter, r *http.Request) {
	var req adminapi.AddServerRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, adminapi.Error{Error: "request body is not the expected JSON: " + err.Error()})
		return
	}
	apiURL, err := bbb.APIURL(req.URL)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, adminapi.Error{Error: err.Error()})
		return
	}
	if req.Secret == "" {
		writeJSON(w, http.StatusBadRequest, adminapi.Error{Error: "the server's secret is empty: give its securitySalt (bbb-conf --secret on the server prints it)"})
		return
	}
	if req.LoadMultiplier < 0 {
		writeJSON(w, http.StatusBadRequest, adminapi.Error{Error: "load multiplier must not be negative"})
		return
	}
	n := records.Node{Name: hostname(apiURL, apiURL), URL: apiURL, Secret: req.Secret, Role: fleet.RoleBBB, Tags: req.Tags,
		LoadMultiplier: req.LoadMultiplier, State: fleet.Enabled, Source: records.SourcePoll, ReportInterval: s.cfg.PollInterval,
		CreatedAt: s.cfg.Clock()}
	// Adding a node again changes what is given and keeps the rest
	// (servers update changes tags and multiplier alone).
	if old, ok := s.reg.byNodeName(n.Name); ok {
		if req.Tags == nil {
			n.Tags = old.Tags
		}
		if req.LoadMultiplier == 0 {
			n.LoadMultiplier = old.LoadMultiplier
		}
	}
	stored, err := s.store.UpsertNode(r.Context(), n)
	if errors.Is(err, store.ErrConflict) {
		writeJSON(w, http.StatusConflict, adminapi.Error{Error: err.Error()})
		return
	}
	if err != nil {
		s.log.Error("admin add server", "url", apiURL, "err", err)
		writeJSON(w, http.StatusInternalServerError, adminapi.Error{Error: "the balancer's database did not answer: " + err.Error()})
		return
	}
	s.reg.put(stored)
	s.log.Info("server added by an operator", "node", stored.Name, "id", stored.ID)
	// Poll it now, so that the answer says at once whether the node
	// answers with that secret (its reason when it does not); a client
	// that goes away does not cut the poll short.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), s.cfg.NodeTimeout)
	s.pollNode(ctx, stored)
	cancel()
	view, ok := s.reg.view(stored.ID)
	if !ok {
		view = nodeView{Node: stored}
	}
	writeJSON(w, http.StatusOK, s.serverView(view))
}

// adminUpdate changes a node's tags or load multiplier.
func (s *Server) adminUpdate(w http.ResponseWriter, r *http.Request) {
	n, ok := s.lookup(w, r)
	if !ok {
		return
	}
	var req adminapi.UpdateServerRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, adminapi.Error{Error: "request body is not the expected JSON: " + err.Error()})
		return
	}
	updated := n.Node
	if req.LoadMultiplier != nil {
		if *req.LoadMultiplier <= 0 {
			writeJSON(w, http.StatusBadRequest, adminapi.Error{Error: "load multiplier must be positive (1 = normal, 2 = counts double)"})
			return
		}
		updated.LoadMultiplier = *req.LoadMultiplier
	}
	if req.Tags != nil {
		updated.Tags = *req.Tags
	}
	stored, err := s.store.UpsertNode(r.Context(), updated)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, adminapi.Error{Error: "the balancer's database did not answer: " + err.Error()})
		return
	}
	s.reg.put(stored)
	s.log.Info("server updated by an operator", "node", n.Name, "tags", stored.Tags, "load_multiplier", stored.LoadMultiplier)
	n.Node = stored
	writeJSON(w, http.StatusOK, s.serverView(n))
}

func (s *Server) adminSetState(w http.ResponseWriter, r *http.Request) {
	n, ok := s.lookup(w, r)
	if !ok {
		return
	}
	var req adminapi.SetStateRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, adminapi.Error{Error: "request body is not the expected JSON: " + err.Error()})
		return
	}
	st, err := fleet.ParseAdminState(string(req.State))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, adminapi.Error{Error: err.Error()})
		return
	}
	updated, err := s.store.SetNodeState(r.Context(), n.ID, st)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, adminapi.Error{Error: "the balancer's database did not answer: " + err.Error()})
		return
	}
	s.reg.put(updated)
	s.log.Info("server state set by an operator", "node", n.Name, "state", st)
	n.Node = updated
	writeJSON(w, http.StatusOK, s.serverView(n))
}

// adminPanic disables the node and ends every meeting on it.
func (s *Server) adminPanic(w http.ResponseWriter, r *http.Request) {
	n, ok := s.lookup(w, r)
	if !ok {
		return
	}
	resp, status, err := s.panicNode(r.Context(), n, true)
	if err != nil {
		writeJSON(w, status, adminapi.Error{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// panicNode disables the node (unless disable is false) and ends every
// meeting on it; on failure it returns the HTTP status to answer.
func (s *Server) panicNode(ctx context.Context, n nodeView, disable bool) (adminapi.PanicResponse, int, error) {
	if disable {
		updated, err := s.store.SetNodeState(ctx, n.ID, fleet.Disabled)
		if err != nil {
			return adminapi.PanicResponse{}, http.StatusInternalServerError, fmt.Errorf("the balancer's database did not answer: %w", err)
		}
		s.reg.put(updated)
		n.Node = updated
	}
	s.log.Warn("panic: ending every meeting on the server", "node", n.Name)
	resp := adminapi.PanicResponse{Ended: []string{}}
	meetings, err := s.nodeMeetings(ctx, n.Node, s.cfg.NodeTimeout)
	if err != nil {
		return resp, http.StatusBadGateway, fmt.Errorf("the server is disabled, but its meetings could not be listed: %w", err)
	}
	c, err := s.nodeClient(n.Node)
	if err != nil {
		return resp, http.StatusInternalServerError, err
	}
	for _, m := range meetings {
		if m.IsBreakout {
			continue // ends with its parent
		}
		endCtx, cancel := context.WithTimeout(ctx, s.cfg.NodeTimeout)
		err := c.End(endCtx, m.MeetingID, m.ModeratorPW)
		cancel()
		if err != nil && !errors.Is(err, bbb.ErrNotFound) {
			resp.Failed = append(resp.Failed, m.MeetingID)
			continue
		}
		resp.Ended = append(resp.Ended, m.MeetingID)
		_ = s.store.DeleteMeeting(ctx, m.MeetingID, n.ID)
	}
	resp.Server = s.serverView(n)
	return resp, http.StatusOK, nil
}

func (s *Server) adminRemove(w http.ResponseWriter, r *http.Request) {
	n, ok := s.lookup(w, r)
	if !ok {
		return
	}
	if err := s.store.DeleteNode(r.Context(), n.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		writeJSON(w, http.StatusInternalServerError, adminapi.Error{Error: "the balancer's database did not answer: " + err.Error()})
		return
	}
	s.reg.remove(n.ID)
	s.log.Info("server removed by an operator", "node", n.Name)
	writeJSON(w, http.StatusOK, s.serverView(n))
}

// pollNode polls one operator-added node's getMeetings.
func (s *Server) pollNode(ctx context.Context, n records.Node) {
	defer s.logHealth(n.ID)
	meetings, err := s.nodeMeetings(ctx, n, s.cfg.NodeTimeout)
	if err != nil {
		s.log.Debug("poll failed", "node", n.Name, "err", err)
		reason := fleet.BBBReason(err, s.cfg.NodeTimeout)
		if errors.Is(err, bbb.ErrChecksum) {
			// A BBB older than 2.4 refuses any checksum but sha1.
			if r := versionTooOld(s.nodeVersion(ctx, n), s.cfg.NodeAlgorithm); r != "" {
				reason = r
			}
		}
		s.reg.pollFailed(n.ID, reason)
		return
	}
	at := s.cfg.Clock()
	load := fleet.CountMeetings(meetings)
	load.BBBHealthy = true
	// The API root says which BBB runs: asked once, then now and then (an
	// upgrade).
	load.BBBVersion = n.Load.BBBVersion
	if load.BBBVersion == "" || rand.IntN(askVersionEvery) == 0 {
		load.BBBVersion = cmp.Or(s.nodeVersion(ctx, n), load.BBBVersion)
	}
	s.reg.polled(n.ID, at, load)
	if err := s.store.RecordPoll(ctx, n.ID, at, load); err != nil {
		s.log.Warn("recording a poll", "node", n.Name, "err", err)
	}
	s.prune(ctx, n.ID, fleet.MeetingIDs(meetings), at.Add(-s.cfg.NodeTimeout))
	if n.State == fleet.Cordoned && load.Meetings == 0 {
		s.disableIfEmpty(n)
	}
}

// askVersionEvery is how many polls of a node ask its version once, on average.
const askVersionEvery = 100

// nodeVersion is the BBB version a node's API root reports, "" when it does
// not answer.
func (s *Server) nodeVersion(ctx context.Context, n records.Node) string {
	c, err := s.nodeClient(n)
	if err != nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.NodeTimeout)
	defer cancel()
	root, err := c.Root(ctx)
	if err != nil {
		return ""
	}
	return root.BBBVersion
}

// versionTooOld is the health reason of a BBB of that version refusing
// checksums of the algorithm: BBB before 2.4 takes sha1 only. It is "" when
// the version is newer, or unknown.
func versionTooOld(version string, alg bbb.Algorithm) string {
	if alg == bbb.SHA1 {
		return ""
	}
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		return ""
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil || major > 2 || major == 2 && minor >= 4 {
		return ""
	}
	return fmt.Sprintf("version: BBB %s takes only sha1 checksums, not %s (bbb-balancer serve --node-checksum sha1)", version, alg)
}

// logHealth logs the changes of nodes' health reasons (of ids only, when
// given) since it last did: a WARN with the reason when a node becomes
// unhealthy or its reason changes, an INFO when it is healthy again. Polls
// and the poll ticker call it, so a change is said once, not per poll.
func (s *Server) logHealth(ids ...string) {
	for _, c := range s.reg.healthChanges(ids...) {
		if c.reason == "" {
			s.log.Info("node healthy again", "node", c.node, "was", c.was)
			continue
		}
		args := []any{"node", c.node, "reason", c.reason, "class", fleet.ReasonClass(c.reason)}
		if c.was != "" {
			args = append(args, "was", c.was)
		}
		s.log.Warn("node unhealthy", args...)
	}
}

// disableIfEmpty turns a cordoned node with no meetings into a disabled
// one. A report says "no meetings" for the moment it was measured, which
// may be before a create the balancer just placed there, so the node's
// placements must be gone too.
func (s *Server) disableIfEmpty(n records.Node) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if placed, err := s.store.NodeMeetings(ctx, n.ID); err != nil || placed > 0 {
		return
	}
	ok, err := s.store.SetNodeStateIf(ctx, n.ID, fleet.Cordoned, fleet.Disabled)
	if err != nil {
		s.log.Warn("disabling an empty cordoned node", "node", n.Name, "err", err)
		return
	}
	if ok {
		if updated, err := s.store.Node(ctx, n.ID); err == nil {
			s.reg.put(updated)
		}
		s.log.Info("cordoned node has no meetings left: disabled", "node", n.Name)
	}
}
