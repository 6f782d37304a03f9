package balancer

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bbb-agent/bbb-agent/agentapi"
	"github.com/bbb-agent/bbb-agent/balancer/adminapi"
	"github.com/bbb-agent/bbb-agent/balancer/records"
	"github.com/bbb-agent/bbb-agent/balancer/store"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/fleet"
)

// caller is who an agent API request speaks for: the holder of the fleet's
// agent token (bootstrap), or one node by its own credential.
type caller struct {
	bootstrap bool
	node      records.Node // with a node credential
}

type agentHandlerFunc func(w http.ResponseWriter, r *http.Request, c caller)

// agentHandler serves /agent/v1/.
func (s *Server) agentHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+agentapi.PathRegister, s.agentAuth(s.agentRegister))
	mux.HandleFunc("POST "+agentapi.PathReport, s.agentAuth(s.agentReport))
	mux.HandleFunc("GET "+agentapi.PathReportStream, s.agentAuth(s.agentReportStream))
	for _, p := range []string{agentapi.PathCordon, agentapi.PathDrain} {
		mux.HandleFunc("POST "+p, s.agentAuth(s.agentSetState(fleet.Cordoned)))
	}
	for _, p := range []string{agentapi.PathEnable, agentapi.PathUndrain} {
		mux.HandleFunc("POST "+p, s.agentAuth(s.agentSetState(fleet.Enabled)))
	}
	mux.HandleFunc("POST "+agentapi.PathDeregister, s.agentAuth(s.agentDeregister))
	mux.HandleFunc("POST "+agentapi.PathRotate, s.agentAuth(s.agentRotate))
	mux.HandleFunc("POST "+agentapi.PathRecording, s.agentAuth(s.agentRecording))
	mux.HandleFunc("GET "+agentapi.PathPing, s.agentAuth(func(w http.ResponseWriter, _ *http.Request, _ caller) {
		w.WriteHeader(http.StatusNoContent)
	}))
	return mux
}

// agentAuth finds who the request speaks for: the agent token, or a node
// credential (looked up by its hash, in memory and then in the store for a
// node another replica registered a moment ago).
func (s *Server) agentAuth(next agentHandlerFunc) http.HandlerFunc {
	want := []byte(s.cfg.AgentToken)
	return func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if ok && subtle.ConstantTimeCompare([]byte(got), want) == 1 {
			next(w, r, caller{bootstrap: true})
			return
		}
		if ok && got != "" {
			hash := credentialKey(got) // on the stack: every agent request asks
			n, found := s.reg.byCredential(&hash)
			if !found {
				if stored, err := s.store.NodeByCredential(r.Context(), string(hash[:])); err == nil {
					s.reg.put(stored)
					n, found = stored, true
				}
			}
			if found {
				next(w, r, caller{node: n})
				return
			}
		}
		s.agentRefused(w, http.StatusUnauthorized, agentapi.CodeUnauthorized,
			"missing or wrong credential: send the node's own credential, or the agent token to register a new node")
	}
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

// speaksFor checks that the caller may act for the node named name and
// returns that node. The agent token speaks only for nodes registered before
// node credentials (migration), with a warning once per node.
func (s *Server) speaksFor(w http.ResponseWriter, r *http.Request, c caller, name string) (records.Node, bool) {
	if !c.bootstrap {
		if c.node.Name != name {
			s.agentRefused(w, http.StatusForbidden, agentapi.CodeForbidden,
				fmt.Sprintf("this credential belongs to node %q: a node may act only for itself, not for %q", c.node.Name, name))
			return records.Node{}, false
		}
		n, ok := s.reg.byNodeName(name)
		if ok && (n.ID != c.node.ID || n.CredentialHash != c.node.CredentialHash) {
			// The name was removed and registered again, or taken over.
			s.agentRefused(w, http.StatusUnauthorized, agentapi.CodeUnauthorized, fmt.Sprintf("this credential no longer belongs to node %q", name))
			return records.Node{}, false
		}
		return n, ok || s.unknownNode(w, name)
	}
	n, ok := s.reg.byNodeName(name)
	if !ok {
		if stored, err := s.store.NodeByName(r.Context(), name); err == nil {
			s.reg.put(stored)
			n, ok = stored, true
		}
	}
	if !ok {
		return n, s.unknownNode(w, name)
	}
	if n.CredentialHash != "" {
		s.agentRefused(w, http.StatusForbidden, agentapi.CodeForbidden,
			fmt.Sprintf("node %q has its own credential: the agent token only registers new nodes; send the node credential kept in the agent's state directory", name))
		return records.Node{}, false
	}
	s.warnLegacy(n.Name)
	return n, true
}

func (s *Server) unknownNode(w http.ResponseWriter, name string) bool {
	s.agentRefused(w, http.StatusNotFound, agentapi.CodeUnknownNode, fmt.Sprintf("node %q is not registered: register first", name))
	return false
}

// warnLegacy warns once per node (and replica) that it uses the agent token.
func (s *Server) warnLegacy(name string) {
	if _, done := s.legacyWarned.LoadOrStore(name, true); !done {
		s.log.Warn("node uses the fleet's agent token instead of its own credential: upgrade its bbb-agent (it then receives a node credential at its next registration)",
			"node", name)
	}
}

// newCredential makes a node credential: 32 random bytes, base64url.
func newCredential() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// credentialHash is what the store keeps of a credential: hex SHA-256.
func credentialHash(cred string) string {
	key := credentialKey(cred)
	return string(key[:])
}

// credentialKey is credentialHash in an array.
func credentialKey(cred string) (key [sha256.Size * 2]byte) {
	// A credential's bytes are copied on the stack: []byte(cred) would
	// allocate for any longer than 32 bytes (ours are 43), on every agent
	// request.
	var buf [128]byte
	sum := sha256.Sum256(append(buf[:0], cred...))
	hex.Encode(key[:], sum[:])
	return key
}

func (s *Server) agentRegister(w http.ResponseWriter, r *http.Request, c caller) {
	var req agentapi.RegisterRequest
	if !s.decodeAgentJSON(w, r, &req) {
		return
	}
	n, field, err := s.nodeFromRegistration(req)
	if err != nil {
		s.agentBadRequest(w, field, err.Error())
		return
	}
	if !c.bootstrap && c.node.Name != n.Name {
		s.agentRefused(w, http.StatusForbidden, agentapi.CodeForbidden,
			fmt.Sprintf("this credential belongs to node %q: it cannot register %q", c.node.Name, n.Name))
		return
	}
	if err := s.checkNode(r.Context(), n); err != nil {
		s.log.Warn("registration refused: the node's BBB API does not answer with the given URL and secret", "node", n.Name, "url", n.URL, "err", err)
		s.agentRefused(w, http.StatusUnprocessableEntity, agentapi.CodeNodeCheck, err.Error())
		return
	}
	stored, cred, err := s.registerNode(r.Context(), c, n, req)
	var conflict *conflictError
	switch {
	case errors.As(err, &conflict):
		s.log.Warn("registration refused: another node holds the name or URL", "node", n.Name, "url", n.URL, "holder", conflict.holder)
		s.agentRefused(w, http.StatusConflict, agentapi.CodeNodeConflict, conflict.msg)
		return
	case errors.Is(err, store.ErrConflict):
		s.agentRefused(w, http.StatusConflict, agentapi.CodeNodeConflict, err.Error())
		return
	case err != nil:
		s.log.Error("agent register", "node", n.Name, "err", err)
		agentError(w, http.StatusInternalServerError, agentapi.CodeInternal, "the balancer's database did not answer; retry")
		return
	}
	s.reg.put(stored)
	s.reg.registered(stored.ID)
	s.log.Info("node registered", "node", stored.Name, "id", stored.ID, "url", stored.URL, "role", stored.Role, "state", stored.State,
		"credential_issued", cred != "")
	writeJSON(w, http.StatusOK, agentapi.RegisterResponse{NodeID: stored.ID, State: stored.State, Credential: cred})
}

// conflictError refuses a registration that another node's identity holds;
// msg names the holder and the fix.
type conflictError struct {
	holder string
	msg    string
}

func (e *conflictError) Error() string { return e.msg }

// registerNode makes or updates the node n for the caller c and returns it
// with the new credential, if this registration issued one.
func (s *Server) registerNode(ctx context.Context, c caller, n records.Node, req agentapi.RegisterRequest) (records.Node, string, error) {
	existing, err := s.store.NodeByName(ctx, n.Name)
	if errors.Is(err, store.ErrNotFound) {
		if !c.bootstrap {
			// The node was removed since: its credential went with it.
			return records.Node{}, "", fmt.Errorf("%w: node %q was removed; register it again with the agent token", store.ErrConflict, n.Name)
		}
		return s.createNode(ctx, n, req)
	}
	if err != nil {
		return records.Node{}, "", err
	}
	var cred string
	switch {
	case !c.bootstrap && c.node.ID == existing.ID:
		// The node itself; but a second server holding its credential (an
		// image cloned after registration) must not move it while it runs.
		if offline, _ := s.offlineFor(existing); !offline && !sameAddress(existing, n) {
			return records.Node{}, "", s.cloneConflict(existing, n)
		}
	case c.bootstrap && existing.CredentialHash == "" && sameAddress(existing, n):
		// A node registered before credentials (or added by an operator
		// with this URL), registered again from its own address: it gets a
		// credential if its agent keeps one.
		if req.NodeCredential {
			cred = newCredential()
		} else {
			s.warnLegacy(n.Name)
		}
	default:
		why, ok := s.takeoverAllowed(existing, n, req)
		if !ok {
			return records.Node{}, "", s.nameConflict(existing)
		}
		s.log.Warn("node taken over by a new agent", "node", n.Name, "old_url", existing.URL, "new_url", n.URL, "why", why)
		cred = newCredential()
	}
	n.Source = records.SourceAgent
	stored, err := s.store.UpsertNode(ctx, n)
	if err != nil {
		return records.Node{}, "", s.urlConflict(ctx, n, err)
	}
	if cred != "" {
		if stored, err = s.store.SetNodeCredential(ctx, stored.ID, credentialHash(cred)); err != nil {
			return records.Node{}, "", err
		}
	}
	return stored, cred, nil
}

// createNode makes a node under a name nobody holds.
func (s *Server) createNode(ctx context.Context, n records.Node, req agentapi.RegisterRequest) (records.Node, string, error) {
	var cred string
	if req.NodeCredential {
		cred = newCredential()
		n.CredentialHash = credentialHash(cred)
	} else {
		s.warnLegacy(n.Name)
	}
	stored, err := s.store.CreateNode(ctx, n)
	if errors.Is(err, store.ErrConflict) {
		if adopted, aerr := s.adoptNode(ctx, n); aerr == nil {
			return adopted, cred, nil
		}
		if holder, herr := s.store.NodeByName(ctx, n.Name); herr == nil {
			return records.Node{}, "", s.nameConflict(holder) // registered a moment ago
		}
		return records.Node{}, "", s.urlConflict(ctx, n, err)
	}
	return stored, cred, err
}

// adoptNode lets an agent take over a node an operator added by URL (a
// fleet migrating to agents node by node): the node keeps its ID and
// state, is renamed to the agent's node name and takes its credential.
func (s *Server) adoptNode(ctx context.Context, n records.Node) (records.Node, error) {
	nodes, err := s.store.Nodes(ctx)
	if err != nil {
		return records.Node{}, err
	}
	for _, old := range nodes {
		if old.URL == n.URL && old.Source == records.SourcePoll {
			if err := s.store.RenameNode(ctx, old.ID, n.Name); err != nil {
				return records.Node{}, err
			}
			s.reg.remove(old.ID)
			s.log.Info("agent adopts an operator-added node", "node", n.Name, "was", old.Name)
			stored, err := s.store.UpsertNode(ctx, n)
			if err == nil && n.CredentialHash != "" {
				stored, err = s.store.SetNodeCredential(ctx, stored.ID, n.CredentialHash)
			}
			return stored, err
		}
	}
	return records.Node{}, store.ErrNotFound
}

// sameAddress says whether n is where old is: the same BBB API URL, or for
// a TURN node the same URIs.
func sameAddress(old, n records.Node) bool {
	if old.Role != n.Role {
		return false
	}
	if n.Role == fleet.RoleTURN {
		return slices.Equal(old.TURNURIs, n.TURNURIs)
	}
	return old.URL == n.URL
}

// takeoverAllowed says whether the registration n may take the name from
// the node old, and why: an operator allowed it and the agent asks for it,
// or old has been offline longer than TakeoverAfter and the newcomer proves
// old's BBB secret.
func (s *Server) takeoverAllowed(old, n records.Node, req agentapi.RegisterRequest) (string, bool) {
	if req.Takeover && old.TakeoverAllowed {
		return "allowed by an operator (servers allow-takeover)", true
	}
	offline, since := s.offlineFor(old)
	if offline && since > s.cfg.TakeoverAfter && old.Role == fleet.RoleBBB && old.Secret != "" &&
		subtle.ConstantTimeCompare([]byte(old.Secret), []byte(n.Secret)) == 1 {
		return fmt.Sprintf("offline for %s (more than %s) and the same BBB secret", since.Round(time.Second), s.cfg.TakeoverAfter), true
	}
	return "", false
}

// offlineFor says whether the node is offline now and since how long (since
// its last report, or its creation if it never reported).
func (s *Server) offlineFor(n records.Node) (bool, time.Duration) {
	if live, _, ok := s.reg.node(n.ID); ok {
		n = live // this replica's newest report
	}
	n = s.reg.withDefaults(n)
	now := s.cfg.Clock()
	if n.Liveness(now, s.cfg.MissedReports) == fleet.Online {
		return false, now.Sub(n.LastReportAt)
	}
	last := n.LastReportAt
	if last.IsZero() {
		last = n.CreatedAt
	}
	return true, now.Sub(last)
}

// holderState says how long the node holding a name or URL has been
// online or offline, for a refusal's message.
func (s *Server) holderState(n records.Node) string {
	if live, _, ok := s.reg.node(n.ID); ok {
		n = live // this replica's newest report
	}
	offline, since := s.offlineFor(n)
	switch {
	case !offline:
		return fmt.Sprintf("online, last report %s ago", since.Round(time.Second))
	case n.LastReportAt.IsZero():
		return fmt.Sprintf("offline: registered %s ago and never reported", since.Round(time.Second))
	}
	return fmt.Sprintf("offline for %s", since.Round(time.Second))
}

// nameConflict refuses a registration of holder's name by another identity.
func (s *Server) nameConflict(holder records.Node) error {
	where := holder.URL
	if where == "" {
		where = strings.Join(holder.TURNURIs, " ")
	}
	state := s.holderState(holder)
	return &conflictError{holder: holder.Name, msg: fmt.Sprintf(
		"node %q is already registered by another agent (at %s, %s) and this agent cannot prove it is that node: "+
			"if this is another server (a cloned image, a copied agent.yaml), give it its own --node-name; "+
			"if it replaces that node, run `bbb-balancer servers remove %s`, or `bbb-balancer servers allow-takeover %s` "+
			"and start this agent with --takeover; a node offline for more than %s is taken over without asking by an agent with the same BBB secret",
		holder.Name, where, state, holder.Name, holder.Name, s.cfg.TakeoverAfter)}
}

// cloneConflict refuses a registration with a node's own credential that
// would move the node while it still reports from elsewhere.
func (s *Server) cloneConflict(holder, n records.Node) error {
	return &conflictError{holder: holder.Name, msg: fmt.Sprintf(
		"node %q is online at %s and this registration, with its credential, names %s: two servers hold one node's credential "+
			"(an image cloned after registration?); give the copy its own --node-name and delete its %s, "+
			"or stop the node at %s: once it is offline its agent may move it",
		holder.Name, holder.URL, n.URL, "node-credential file", holder.URL)}
}

// urlConflict words a URL held by another node like nameConflict.
func (s *Server) urlConflict(ctx context.Context, n records.Node, err error) error {
	if !errors.Is(err, store.ErrConflict) {
		return err
	}
	for _, other := range s.reg.snapshot() {
		if other.URL != "" && other.URL == n.URL && other.Name != n.Name {
			state := s.holderState(other.Node)
			return &conflictError{holder: other.Name, msg: fmt.Sprintf(
				"the URL %s is already registered to node %q (%s): one BBB server is one node; "+
					"if %q is gone, run `bbb-balancer servers remove %s` first",
				n.URL, other.Name, state, other.Name, other.Name)}
		}
	}
	return err
}

// checkNode calls a BBB node's API as the balancer will: the root, and a
// getMeetings signed with the given secret. A TURN node has no API.
func (s *Server) checkNode(ctx context.Context, n records.Node) error {
	if n.Role != fleet.RoleBBB {
		return nil
	}
	c, err := s.nodeClient(n)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.NodeTimeout)
	defer cancel()
	if _, err := c.Root(ctx); err != nil {
		return fmt.Errorf("the BBB API at %s does not answer (%v): check --bbb-url and that BBB runs", n.URL, err)
	}
	_, err = c.GetMeetings(ctx)
	switch {
	case errors.Is(err, bbb.ErrChecksum):
		return fmt.Errorf("the BBB API at %s refused the checksum of a getMeetings signed with the given secret (checksumError): "+
			"the secret is wrong; give the node's own (bbb-conf --secret) as --bbb-secret", n.URL)
	case err != nil:
		return fmt.Errorf("the BBB API at %s did not answer a signed getMeetings (%v): check --bbb-url and --bbb-secret", n.URL, err)
	}
	return nil
}

// Bounds of what a registration may say.
const (
	maxNodeName       = 253
	maxTags           = 64
	maxTagLen         = 128
	maxLoadMultiplier = 100
)

func (s *Server) nodeFromRegistration(req agentapi.RegisterRequest) (records.Node, string, error) {
	if req.Node == "" {
		return records.Node{}, "node", errors.New("node name is empty")
	}
	if len(req.Node) > maxNodeName || strings.ContainsFunc(req.Node, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return records.Node{}, "node", fmt.Errorf("node name must be at most %d printable characters", maxNodeName)
	}
	role, err := fleet.ParseRole(req.Role)
	if err != nil {
		return records.Node{}, "role", err
	}
	if len(req.Tags) > maxTags || slices.ContainsFunc(req.Tags, func(t string) bool { return len(t) > maxTagLen }) {
		return records.Node{}, "tags", fmt.Errorf("at most %d tags of at most %d characters", maxTags, maxTagLen)
	}
	if !finite(req.LoadMultiplier) || req.LoadMultiplier < 0 || req.LoadMultiplier > maxLoadMultiplier {
		return records.Node{}, "load_multiplier", fmt.Errorf("load_multiplier must be between 0 (default 1) and %d", maxLoadMultiplier)
	}
	if !finite(req.ReportIntervalSeconds) || req.ReportIntervalSeconds < 0 || req.ReportIntervalSeconds > 3600 {
		return records.Node{}, "report_interval_seconds", errors.New("report_interval_seconds must be between 0 and 3600")
	}
	n := records.Node{Name: req.Node, Role: role, Tags: req.Tags, LoadMultiplier: req.LoadMultiplier,
		Source: records.SourceAgent, AgentVersion: req.AgentVersion, State: fleet.Enabled, CreatedAt: s.cfg.Clock(),
		ReportInterval: time.Duration(req.ReportIntervalSeconds * float64(time.Second))}
	if role == fleet.RoleBBB {
		if u, err := url.Parse(strings.TrimSpace(req.URL)); err == nil && u.User != nil {
			return records.Node{}, "url", errors.New("the URL carries a user name or password: give the BBB server URL alone; the BBB secret authenticates the balancer")
		}
		if n.URL, err = bbb.APIURL(req.URL); err != nil {
			return records.Node{}, "url", err
		}
		if req.Secret == "" {
			return records.Node{}, "secret", errors.New("BBB secret is empty")
		}
		n.Secret = req.Secret
	}
	if role == fleet.RoleTURN {
		if len(req.TURNURIs) == 0 {
			return records.Node{}, "turn_uris", errors.New("a TURN node must say what it offers: turn_uris is empty")
		}
		for _, u := range req.TURNURIs {
			if !strings.HasPrefix(u, "turn:") && !strings.HasPrefix(u, "turns:") && !strings.HasPrefix(u, "stun:") {
				return records.Node{}, "turn_uris", fmt.Errorf("turn_uris: %q is not a stun:, turn: or turns: URI", u)
			}
		}
		n.TURNURIs = req.TURNURIs
	}
	return n, "", nil
}

func (s *Server) agentReport(w http.ResponseWriter, r *http.Request, c caller) {
	// The meeting IDs share the body's buffer (DecodeReportBorrowing),
	// which goes back to its pool when the report is answered: what keeps
	// them longer (pruneAsync) copies them.
	var req agentapi.ReportRequest
	body, ok := s.readAgentBody(w, r, func(b []byte) error { return agentapi.DecodeReportBorrowing(b, &req) })
	if !ok {
		return
	}
	defer putAgentBody(body)
	if field, msg := validateReport(&req); field != "" {
		s.agentBadRequest(w, field, msg)
		return
	}
	if _, ok := s.speaksFor(w, r, c, req.Node); !ok {
		return
	}
	n, err := s.reg.report(req.Node, req.Run, req.Seq, req.Load)
	if errors.Is(err, errSeqBackwards) {
		s.agentBadRequest(w, "seq", fmt.Sprintf("seq %v: a report of this agent run must not go back; a restarted agent sends a new run", err))
		return
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
	case req.MeetingIDs != nil && s.reg.shouldPrune(n.ID, req.MeetingIDs, placedBefore):
		s.pruneAsync(n.ID, agentapi.CloneStrings(req.MeetingIDs), placedBefore)
	}
	if s.leavingReport(r.Context(), n, req) {
		// Removed: the agent's next call finds the node gone, and it ends its drain.
		s.writeReportAnswer(w, fleet.Disabled)
		return
	}
	if n.State == fleet.Cordoned && req.Load.Meetings == 0 {
		s.disableIfEmpty(n)
		n, _, _ = s.reg.node(n.ID)
	}
	s.writeReportAnswer(w, n.State)
}

// reportInline serves a report on its stream's own goroutine when it is
// the usual one, and says whether it did: from the node that the stream's
// credential (hash, its credentialKey) belongs to, known to this replica,
// well formed, in order, and neither cordoned nor leaving. Its effects and
// answer are agentReport's for such a report, without an http.Request.
// Anything else (a refusal, a node another replica registered a moment
// ago, a cordoned or leaving node, whose reports may wait on the database)
// it leaves untouched for agentReport on a worker.
//
// Served here, a report costs no hand-off to a worker and back, two
// wakeups of another thread each (0.05 of a core at 10,000 nodes, measured
// with BenchmarkMemoryProcess). It must stay shallow: the stream's
// goroutine parks in its read between reports with the 4 KiB stack this
// path needs; the whole handler needs 16 KiB, and a stack grown to that for
// every report (the collector shrinks it again while it waits) cost 0.05
// to 0.07 of a core in the collector and 19 KiB a stream.
func (s *Server) reportInline(sr *streamReport, hash *[sha256.Size * 2]byte) bool {
	req := &sr.report
	if agentapi.DecodeReportBorrowing(sr.body, req) != nil || req.Leaving {
		return false
	}
	if field, _ := validateReport(req); field != "" {
		return false
	}
	n, ok := s.reg.reportByCredential(hash, req.Node, req.Run, req.Seq, &req.Load)
	if !ok {
		return false
	}
	s.metrics.reports.Inc()
	s.leaving.stays(n.id)
	if req.MeetingIDs != nil {
		placedBefore := s.cfg.Clock().Add(-n.interval)
		if s.reg.shouldPrune(n.id, req.MeetingIDs, placedBefore) {
			s.pruneAsync(n.id, agentapi.CloneStrings(req.MeetingIDs), placedBefore)
		}
	}
	sr.fw.reset()
	_, _ = sr.fw.Write(s.reportAnswers.body(n.state, s.reg.appendTURNServers(sr.turn[:0])))
	return true
}

// streamCredential is the credentialKey of a stream's node credential, and
// false when the stream has none (the agent token speaks for a node
// registered before credentials: its reports take agentReport's way).
func (s *Server) streamCredential(authorization []string) ([sha256.Size * 2]byte, bool) {
	if len(authorization) != 1 {
		return [sha256.Size * 2]byte{}, false
	}
	got, ok := strings.CutPrefix(authorization[0], "Bearer ")
	if !ok || got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.AgentToken)) == 1 {
		return [sha256.Size * 2]byte{}, false
	}
	return credentialKey(got), true
}

// writeReportAnswer answers a report: the node's desired state and the live
// TURN servers (agentapi.ReportResponse).
func (s *Server) writeReportAnswer(w http.ResponseWriter, state fleet.AdminState) {
	var turn [8]agentapi.TURNServer // a fleet's few; on the stack
	body := s.reportAnswers.body(state, s.reg.appendTURNServers(turn[:0]))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// reportAnswers keeps the encoded answers to reports, by state, for the
// TURN servers they list: every report of the fleet is answered (2,000 a
// second at 10,000 nodes) and the list seldom changes. A list that differs
// from the kept one in anything replaces it at once.
type reportAnswers struct {
	mu     sync.Mutex
	turn   []agentapi.TURNServer
	bodies map[fleet.AdminState][]byte
}

// body is the answer for state and the TURN servers turn, as writeJSON
// would encode it. It keeps a copy of turn, not turn.
func (a *reportAnswers) body(state fleet.AdminState, turn []agentapi.TURNServer) []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.bodies == nil || !slices.EqualFunc(a.turn, turn, func(x, y agentapi.TURNServer) bool {
		return x.Node == y.Node && slices.Equal(x.URIs, y.URIs)
	}) {
		a.turn, a.bodies = append(make([]agentapi.TURNServer, 0, len(turn)), turn...), map[fleet.AdminState][]byte{} // [] in JSON when none
	}
	b, ok := a.bodies[state]
	if !ok {
		b, _ = json.Marshal(agentapi.ReportResponse{State: state, TURNServers: a.turn}) // strings and slices: cannot fail
		b = append(b, '\n')
		a.bodies[state] = b
	}
	return b
}

func (s *Server) agentSetState(to fleet.AdminState) agentHandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, c caller) {
		var req agentapi.NodeRequest
		if !s.decodeAgentJSON(w, r, &req) {
			return
		}
		n, ok := s.speaksFor(w, r, c, req.Node)
		if !ok {
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

func (s *Server) agentDeregister(w http.ResponseWriter, r *http.Request, c caller) {
	var req agentapi.NodeRequest
	if !s.decodeAgentJSON(w, r, &req) {
		return
	}
	if _, known := s.reg.byNodeName(req.Node); !known && c.bootstrap {
		// Already gone: deregistering is idempotent.
		writeJSON(w, http.StatusOK, agentapi.StateResponse{State: fleet.Disabled})
		return
	}
	n, ok := s.speaksFor(w, r, c, req.Node)
	if !ok {
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

// agentRotate gives the calling node a new credential; the old one stops
// working at once.
func (s *Server) agentRotate(w http.ResponseWriter, r *http.Request, c caller) {
	var req agentapi.NodeRequest
	if !s.decodeAgentJSON(w, r, &req) {
		return
	}
	if c.bootstrap {
		s.agentRefused(w, http.StatusForbidden, agentapi.CodeForbidden, "only a node credential can be rotated, with that credential")
		return
	}
	n, ok := s.speaksFor(w, r, c, req.Node)
	if !ok {
		return
	}
	cred := newCredential()
	updated, err := s.store.SetNodeCredential(r.Context(), n.ID, credentialHash(cred))
	if err != nil {
		s.log.Error("agent rotate", "node", n.Name, "err", err)
		agentError(w, http.StatusInternalServerError, agentapi.CodeInternal, "the balancer's database did not answer; retry")
		return
	}
	s.reg.put(updated)
	s.log.Info("node credential rotated", "node", n.Name)
	writeJSON(w, http.StatusOK, agentapi.RotateResponse{Credential: cred})
}

// adminAllowTakeover lets the next registration of the node's name with
// --takeover replace its identity (a replaced server, a lost credential).
func (s *Server) adminAllowTakeover(w http.ResponseWriter, r *http.Request) {
	n, ok := s.lookup(w, r)
	if !ok {
		return
	}
	updated, err := s.store.AllowTakeover(r.Context(), n.ID)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, adminapi.Error{Error: "the balancer's database did not answer: " + err.Error()})
		return
	}
	s.reg.put(updated)
	s.log.Warn("an operator allows the takeover of a node: the next agent registering its name with --takeover gets it", "node", n.Name)
	n.Node = updated
	writeJSON(w, http.StatusOK, s.serverView(n))
}

func (s *Server) decodeAgentJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	return s.decodeAgentBody(w, r, func(body []byte) error { return json.Unmarshal(body, v) })
}

// decodeAgentBody reads a request's body and decodes it, or answers 400
// naming the field that is wrong.
func (s *Server) decodeAgentBody(w http.ResponseWriter, r *http.Request, decode func([]byte) error) bool {
	body, ok := s.readAgentBody(w, r, decode)
	if ok {
		putAgentBody(body)
	}
	return ok
}

// readAgentBody is decodeAgentBody, returning the buffer the body was read
// into: what decode made of it may share its memory until putAgentBody.
func (s *Server) readAgentBody(w http.ResponseWriter, r *http.Request, decode func([]byte) error) (*bytes.Buffer, bool) {
	// Read whole into a buffer kept between requests, then decoded: every
	// agent reports every few seconds, and a decoder per request would
	// grow a buffer of its own each time.
	buf := agentBodies.Get().(*bytes.Buffer)
	var body io.Reader = r.Body
	if r.ContentLength < 0 || r.ContentLength > agentapi.MaxBodyBytes {
		// net/http reads no further than a Content-Length; without one,
		// or past the limit, the limit ends the read.
		body = http.MaxBytesReader(w, r.Body, agentapi.MaxBodyBytes)
	}
	_, err := buf.ReadFrom(body)
	if err == nil {
		err = decode(buf.Bytes())
	}
	if err == nil {
		return buf, true
	}
	putAgentBody(buf)
	var typeErr *json.UnmarshalTypeError
	field := "body"
	if errors.As(err, &typeErr) && typeErr.Field != "" {
		field = typeErr.Field
	}
	s.agentBadRequest(w, field, "request body is not the expected JSON: "+err.Error())
	return nil, false
}

// putAgentBody lets a buffer of readAgentBody go back to the pool, unless it
// grew past agentBodyKeep.
func putAgentBody(buf *bytes.Buffer) {
	if buf.Cap() <= agentBodyKeep {
		buf.Reset()
		agentBodies.Put(buf)
	}
}

// agentBodies holds the buffers decodeAgentJSON reads bodies into; one that
// grew past agentBodyKeep (a large request) is left to the collector.
var agentBodies = sync.Pool{New: func() any { return new(bytes.Buffer) }}

const agentBodyKeep = 64 << 10

// agentBadRequest refuses a request that says something impossible, naming
// the field, and counts it.
func (s *Server) agentBadRequest(w http.ResponseWriter, field, msg string) {
	s.metrics.reportErrors.WithLabelValues(agentapi.CodeBadRequest).Inc()
	writeJSON(w, http.StatusBadRequest, agentapi.Error{Error: field + ": " + msg, Code: agentapi.CodeBadRequest, Field: field})
}

// agentRefused refuses a request for who sent it, and counts it.
func (s *Server) agentRefused(w http.ResponseWriter, status int, code, msg string) {
	s.metrics.reportErrors.WithLabelValues(code).Inc()
	agentError(w, status, code, msg)
}

func agentError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, agentapi.Error{Error: msg, Code: code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
