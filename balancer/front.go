package balancer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/bbb-agent/bbb-agent/balancer/placement"
	"github.com/bbb-agent/bbb-agent/balancer/records"
	"github.com/bbb-agent/bbb-agent/balancer/store"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/fleet"
)

// Messages keys the balancer adds to BBB's own.
const (
	keyServerTagUnavailable = "serverTagUnavailable"
	keyNoServer             = "noServerAvailable"
	keyServerUnavailable    = "serverUnavailable"
)

// apiRequest is a BBB API call whose checksum has been verified.
type apiRequest struct {
	call string
	// query is the raw query string without the checksum: what gets
	// re-signed for the node, byte for byte.
	query       string
	params      url.Values
	method      string
	body        []byte
	contentType string
}

// callMethods says which HTTP methods each call accepts, as BBB does: join,
// publishRecordings, deleteRecordings and getRecordingTextTracks by GET only,
// insertDocument and putRecordingTextTrack by POST only, the rest by either.
var callMethods = map[string]string{
	bbb.CallCreate: "GET POST", bbb.CallIsMeetingRunning: "GET POST", bbb.CallEnd: "GET POST",
	bbb.CallGetMeetingInfo: "GET POST", bbb.CallGetMeetings: "GET POST", bbb.CallGetRecordings: "GET POST",
	bbb.CallUpdateRecordings: "GET POST", bbb.CallJoin: "GET", bbb.CallPublishRecordings: "GET",
	bbb.CallDeleteRecordings: "GET", bbb.CallInsertDocument: "POST", bbb.CallPutRecordingTextTrack: "POST",
	bbb.CallGetRecordingTextTracks: "GET", bbb.CallSendChatMessage: "GET POST",
}

// meetingCalls name one meeting by meetingID.
var meetingCalls = map[string]bool{
	bbb.CallCreate: true, bbb.CallJoin: true, bbb.CallEnd: true,
	bbb.CallIsMeetingRunning: true, bbb.CallGetMeetingInfo: true, bbb.CallInsertDocument: true,
	bbb.CallSendChatMessage: true,
}

// Bounds of a BBB API query: BBB's own web server refuses far less; longer
// content goes in a POST body.
const (
	maxQueryBytes  = 64 << 10
	maxQueryParams = 10_000
)

// apiPrefix is where the BBB API front lives.
const apiPrefix = "/bigbluebutton/api"

// serveAPI is the BBB API front at /bigbluebutton/api/.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	call := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, apiPrefix), "/")
	label := call
	if call == "" {
		label = "root"
	} else if _, known := callMethods[call]; !known {
		label = "unsupported"
	}
	rec := &resultRecorder{ResponseWriter: w}
	switch {
	case len(r.URL.RawQuery) > maxQueryBytes:
		label = "unsupported"
		writeFailed(rec, bbb.NewError(bbb.KeyRequestTooLarge, fmt.Sprintf("The query string is longer than %d bytes: send long content as a POST body.", maxQueryBytes)))
	case strings.Count(r.URL.RawQuery, "&") >= maxQueryParams:
		label = "unsupported"
		writeFailed(rec, bbb.NewError(bbb.KeyValidationError, fmt.Sprintf("The query has more than %d parameters.", maxQueryParams)))
	default:
		s.handleAPI(rec, r, call)
	}
	s.metrics.apiRequests.WithLabelValues(label, rec.result()).Inc()
	s.metrics.apiLatency.WithLabelValues(label).Observe(time.Since(start).Seconds())
}

func (s *Server) handleAPI(w *resultRecorder, r *http.Request, call string) {
	if call == "" {
		writeXML(w, bbb.RootResponse{ReturnCode: bbb.ReturnSuccess, Version: "2.0", APIVersion: "2.0"})
		return
	}
	req, apiErr := s.parseAPIRequest(w, r, call)
	if apiErr != nil {
		writeFailed(w, apiErr)
		return
	}
	ctx := r.Context()
	switch call {
	case bbb.CallCreate:
		s.takeRecordingReady(ctx, r, req)
		s.create(ctx, w, req)
	case bbb.CallJoin:
		s.join(ctx, w, r, req)
	case bbb.CallGetMeetings:
		s.getMeetings(ctx, w)
	case bbb.CallEnd, bbb.CallIsMeetingRunning, bbb.CallGetMeetingInfo, bbb.CallInsertDocument, bbb.CallSendChatMessage:
		s.forwardMeetingCall(ctx, w, req)
	case bbb.CallGetRecordings, bbb.CallPublishRecordings, bbb.CallUpdateRecordings, bbb.CallDeleteRecordings:
		s.recordingCall(ctx, w, r, req)
	case bbb.CallGetRecordingTextTracks, bbb.CallPutRecordingTextTrack:
		s.textTracks(ctx, w, req)
	}
}

// parseAPIRequest checks the method, size, checksum and encoding of a call.
func (s *Server) parseAPIRequest(w http.ResponseWriter, r *http.Request, call string) (*apiRequest, *bbb.APIError) {
	methods, known := callMethods[call]
	if !known {
		return nil, bbb.UnsupportedError(call)
	}
	if !strings.Contains(methods, r.Method) {
		return nil, bbb.NewError(bbb.KeyUnsupportedRequest, fmt.Sprintf("The %s call does not accept HTTP %s (use %s).", call, r.Method, strings.ReplaceAll(methods, " ", " or ")))
	}
	req := &apiRequest{call: call, method: r.Method, contentType: r.Header.Get("Content-Type")}
	if r.Method == http.MethodPost {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, bbb.NewError(bbb.KeyRequestTooLarge, fmt.Sprintf("The request body is larger than %d bytes.", s.cfg.MaxBodyBytes))
		}
		if err != nil {
			return nil, bbb.NewError(bbb.KeyValidationError, "The request body could not be read.")
		}
		req.body = body
	}
	query, err := s.verifier.Verify(call, r.URL.RawQuery)
	if err != nil {
		return nil, bbb.ChecksumError()
	}
	req.query = query
	params, err := url.ParseQuery(query)
	if err != nil {
		return nil, bbb.NewError(bbb.KeyValidationError, "The query string is not valid URL encoding.")
	}
	for k, vals := range params {
		if len(vals) > 1 {
			return nil, bbb.NewError(bbb.KeyValidationError, fmt.Sprintf("The parameter %q is given more than once.", k))
		}
		if !utf8.ValidString(k) || !utf8.ValidString(vals[0]) {
			return nil, bbb.NewError(bbb.KeyValidationError, "Parameters must be UTF-8 text.")
		}
	}
	req.params = params
	if meetingCalls[call] {
		if e := bbb.ValidateMeetingID(params.Get("meetingID")); e != nil {
			return nil, e
		}
	}
	return req, nil
}

// create places the meeting (or finds where it is) and forwards the call.
func (s *Server) create(ctx context.Context, w *resultRecorder, req *apiRequest) {
	meetingID := req.params.Get("meetingID")
	tags := placement.ParseServerTag(req.params.Get("meta_server-tag"))
	excluded := map[string]bool{}
	for attempt := 0; attempt < 3; attempt++ {
		node, fresh, apiErr := s.placeMeeting(ctx, meetingID, tags, excluded)
		if apiErr != nil {
			writeFailed(w, apiErr)
			return
		}
		body, err := s.forward(ctx, node, req, s.cfg.NodeTimeout)
		s.fleetMeetings.drop(node.ID)
		if err == nil && !s.refusedChecksum(node, req.call, body) {
			writeRaw(w, body)
			return
		}
		if err != nil {
			s.log.Warn("create: node did not answer", "node", node.Name, "meeting", meetingID, "err", err)
		}
		if !fresh {
			writeFailed(w, bbb.NewError(keyServerUnavailable, "The server hosting this meeting did not answer; try again."))
			return
		}
		// A meeting placed just now goes to the next best node instead.
		s.reg.meetings.forget(meetingID, node.ID)
		if derr := s.store.DeleteMeeting(ctx, meetingID, node.ID); derr != nil {
			s.log.Error("create: forgetting a failed placement", "meeting", meetingID, "err", derr)
			break
		}
		excluded[node.ID] = true
	}
	writeFailed(w, bbb.NewError(keyNoServer, "No server could take the meeting; try again later."))
}

// placeMeeting returns the node for a create: the meeting's node when it
// still runs there, else a new one. fresh says the placement is new.
func (s *Server) placeMeeting(ctx context.Context, meetingID string, tags placement.TagRequest, excluded map[string]bool) (records.Node, bool, *bbb.APIError) {
	// A meeting this replica has not seen placed is most likely new (create
	// is called again for running meetings too, and those the meeting cache
	// knows): claim it at once, one write instead of a read and a write. A
	// claim that finds the meeting placed already goes on as a lookup would.
	var pickErr *bbb.APIError
	if _, known := s.reg.meetings.get(meetingID); !known && len(excluded) == 0 {
		d, apiErr := s.pick(tags, nil)
		if apiErr == nil {
			claimed, won, err := s.store.ClaimMeeting(ctx, records.Meeting{MeetingID: meetingID, NodeID: d.Node.ID, PlacedAt: s.cfg.Clock()})
			if err != nil {
				return records.Node{}, false, s.storeError("placing a meeting", err)
			}
			return s.settleClaim(ctx, claimed, won, d.Node, tags, excluded)
		}
		pickErr = apiErr // no node to pick: the meeting may still run on one
	}
	existing, err := s.store.Meeting(ctx, meetingID)
	switch {
	case err == nil:
		return s.placeExisting(ctx, existing, tags, excluded)
	case errors.Is(err, store.ErrNotFound):
		if pickErr != nil {
			return records.Node{}, false, pickErr
		}
		d, apiErr := s.pick(tags, excluded)
		if apiErr != nil {
			return records.Node{}, false, apiErr
		}
		claimed, won, err := s.store.ClaimMeeting(ctx, records.Meeting{MeetingID: meetingID, NodeID: d.Node.ID, PlacedAt: s.cfg.Clock()})
		if err != nil {
			return records.Node{}, false, s.storeError("placing a meeting", err)
		}
		return s.settleClaim(ctx, claimed, won, d.Node, tags, excluded)
	default:
		return records.Node{}, false, s.storeError("looking up a meeting", err)
	}
}

// settleClaim settles a claim: a claim another placement won (another
// replica, or a placement this replica had not seen) goes on as a placed
// meeting when this replica knows the winner's node, and otherwise answers
// as placed does.
func (s *Server) settleClaim(ctx context.Context, claimed records.Meeting, won bool, picked records.Node, tags placement.TagRequest, excluded map[string]bool) (records.Node, bool, *bbb.APIError) {
	if !won {
		if _, _, ok := s.reg.node(claimed.NodeID); ok {
			return s.placeExisting(ctx, claimed, tags, excluded)
		}
	}
	return s.placed(claimed, picked, "new")
}

// placeExisting places a meeting that is placed already: on its node while
// that node is online, not excluded, and enabled or still running it;
// otherwise it moves to a picked node.
func (s *Server) placeExisting(ctx context.Context, existing records.Meeting, tags placement.TagRequest, excluded map[string]bool) (records.Node, bool, *bbb.APIError) {
	if n, online, ok := s.reg.node(existing.NodeID); ok && online && !excluded[n.ID] {
		if n.State == fleet.Enabled || s.stillRunning(ctx, n, existing.MeetingID) {
			s.reg.meetings.put(existing.MeetingID, n.ID)
			s.metrics.placements.WithLabelValues("existing").Inc()
			return n, false, nil
		}
	}
	d, apiErr := s.pick(tags, excluded)
	if apiErr != nil {
		return records.Node{}, false, apiErr
	}
	moved, err := s.store.MoveMeeting(ctx, existing.MeetingID, existing.NodeID, d.Node.ID, s.cfg.Clock())
	if err != nil {
		return records.Node{}, false, s.storeError("moving a meeting", err)
	}
	return s.placed(moved, d.Node, "moved")
}

// placed settles a claim or move: when another replica won, its node is used.
func (s *Server) placed(m records.Meeting, picked records.Node, result string) (records.Node, bool, *bbb.APIError) {
	s.reg.meetings.put(m.MeetingID, m.NodeID)
	if m.NodeID != picked.ID {
		n, _, ok := s.reg.node(m.NodeID)
		if !ok {
			return records.Node{}, false, bbb.NewError(keyServerUnavailable, "The meeting was just placed on a server this balancer does not know yet; try again.")
		}
		s.metrics.placements.WithLabelValues("existing").Inc()
		return n, false, nil
	}
	s.reg.reserve(picked.ID)
	s.metrics.placements.WithLabelValues(result).Inc()
	return picked, true, nil
}

func (s *Server) pick(tags placement.TagRequest, excluded map[string]bool) (placement.Decision, *bbb.APIError) {
	d, err := s.reg.pick(s.cfg.Policy, tags, excluded)
	switch {
	case errors.Is(err, placement.ErrTagUnavailable):
		s.metrics.placements.WithLabelValues("failed").Inc()
		return d, bbb.NewError(keyServerTagUnavailable, fmt.Sprintf("No server with tag %q is available.", strings.Join(tags.Tags, ";")))
	case err != nil:
		s.metrics.placements.WithLabelValues("failed").Inc()
		return d, bbb.NewError(keyNoServer, "No server is available to take the meeting.")
	}
	if d.OverCeiling {
		s.metrics.placements.WithLabelValues("over_ceiling").Inc()
		s.ceilingWarn.warn(s, d.Node.Name)
	}
	if d.Fallback {
		s.metrics.placements.WithLabelValues("tag_fallback").Inc()
	}
	return d, nil
}

// stillRunning asks a cordoned or disabled node whether the meeting is
// running there; when the node cannot say, the meeting is assumed to run,
// so that a repeated create never splits one meeting over two nodes.
func (s *Server) stillRunning(ctx context.Context, n records.Node, meetingID string) bool {
	c, err := s.nodeClient(n)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.NodeTimeout)
	defer cancel()
	running, err := c.IsMeetingRunning(ctx, meetingID)
	return err != nil || running
}

// join answers 302 to the meeting's node, re-signed with the node's secret.
func (s *Server) join(ctx context.Context, w *resultRecorder, r *http.Request, req *apiRequest) {
	node, apiErr := s.meetingNode(ctx, req.params.Get("meetingID"))
	if apiErr != nil {
		if apiErr.MessageKey == bbb.KeyNotFound {
			apiErr = bbb.NewError(bbb.KeyInvalidMeetingIdentifier, "The meeting ID that you supplied did not match any existing meetings.")
		}
		writeFailed(w, apiErr)
		return
	}
	if strings.EqualFold(req.params.Get("redirect"), "false") {
		body, err := s.forward(ctx, node, req, s.cfg.NodeTimeout)
		if err != nil || s.refusedChecksum(node, req.call, body) {
			writeFailed(w, bbb.NewError(keyServerUnavailable, "The server hosting this meeting did not answer; try again."))
			return
		}
		writeRaw(w, body)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, s.nodeURL(node, bbb.CallJoin, req.query), http.StatusFound)
}

// meetingNode finds the online node a meeting runs on.
func (s *Server) meetingNode(ctx context.Context, meetingID string) (records.Node, *bbb.APIError) {
	// The cache answers without the database, also while it is down; a
	// cached node that is offline may have lost the meeting to another
	// node, so the store is asked then.
	if id, ok := s.reg.meetings.get(meetingID); ok {
		if n, online, ok := s.reg.node(id); ok && online {
			return n, nil
		}
	}
	m, err := s.store.Meeting(ctx, meetingID)
	if errors.Is(err, store.ErrNotFound) {
		return records.Node{}, bbb.NotFoundError()
	}
	if err != nil {
		return records.Node{}, s.storeError("looking up a meeting", err)
	}
	s.reg.meetings.put(meetingID, m.NodeID)
	n, online, ok := s.reg.node(m.NodeID)
	if !ok || !online {
		return records.Node{}, bbb.NotFoundError()
	}
	return n, nil
}

// forwardMeetingCall sends a call about one meeting to its node.
func (s *Server) forwardMeetingCall(ctx context.Context, w *resultRecorder, req *apiRequest) {
	meetingID := req.params.Get("meetingID")
	node, apiErr := s.meetingNode(ctx, meetingID)
	if apiErr != nil {
		if req.call == bbb.CallIsMeetingRunning && apiErr.MessageKey == bbb.KeyNotFound {
			writeXML(w, bbb.IsMeetingRunningResponse{ReturnCode: bbb.ReturnSuccess, Running: false})
			return
		}
		writeFailed(w, apiErr)
		return
	}
	body, err := s.forward(ctx, node, req, s.cfg.NodeTimeout)
	if err != nil || s.refusedChecksum(node, req.call, body) {
		if err != nil {
			s.log.Warn("node did not answer", "call", req.call, "node", node.Name, "err", err)
		}
		writeFailed(w, bbb.NewError(keyServerUnavailable, "The server hosting this meeting did not answer; try again."))
		return
	}
	if req.call == bbb.CallEnd {
		s.fleetMeetings.drop(node.ID)
		err := bbb.DecodeResponse(req.call, body, nil)
		if err == nil || errors.Is(err, bbb.ErrNotFound) {
			s.reg.meetings.forget(meetingID, node.ID)
			if derr := s.store.DeleteMeeting(ctx, meetingID, node.ID); derr != nil {
				s.log.Error("end: forgetting the placement", "meeting", meetingID, "err", derr)
			}
		}
	}
	writeRaw(w, body)
}

// getMeetings asks every online BBB node in parallel; a node that is down or
// slow is left out instead of failing the call.
func (s *Server) getMeetings(ctx context.Context, w *resultRecorder) {
	nodes := s.reg.onlineBBB()
	if s.cfg.GetMeetingsMaxAge > 0 {
		// From each node's answer kept for the bound (getmeetings.go).
		k := s.fleetMeetingsAnswer(ctx, nodes)
		w.outcome = bbb.ReturnSuccess // a node left out does not fail the call
		w.Header().Set("Content-Type", "text/xml;charset=utf-8")
		w.Header().Set("Content-Length", strconv.Itoa(k.size))
		w.WriteHeader(http.StatusOK)
		_ = k.writeTo(w)
		return
	}
	// GetMeetingsMaxAge < 0: every call asks every node.
	results := make([][]bbb.Meeting, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ms, err := s.nodeMeetings(ctx, n.record(), s.cfg.GetMeetingsTimeout)
			if err != nil {
				s.log.Warn("getMeetings: leaving a node out", "node", n.Name, "err", err)
				return
			}
			results[i] = ms
		}()
	}
	wg.Wait()
	resp := bbb.GetMeetingsResponse{ReturnCode: bbb.ReturnSuccess}
	for _, ms := range results {
		resp.Meetings = append(resp.Meetings, ms...)
	}
	if len(resp.Meetings) == 0 {
		resp.MessageKey, resp.Message = bbb.KeyNoMeetings, "no meetings were found on this server"
	}
	writeXML(w, resp)
}

func (s *Server) nodeMeetings(ctx context.Context, n records.Node, timeout time.Duration) ([]bbb.Meeting, error) {
	c, err := s.nodeClient(n)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return c.GetMeetings(ctx)
}

func (s *Server) nodeClient(n records.Node) (*bbb.Client, error) {
	return bbb.NewClient(n.URL, n.Secret, bbb.WithAlgorithm(s.cfg.NodeAlgorithm), bbb.WithHTTPClient(s.nodeHTTP))
}

// nodeURL is the signed URL of a call on a node.
func (s *Server) nodeURL(n records.Node, call, query string) string {
	return n.URL + call + "?" + bbb.SignQuery(s.cfg.NodeAlgorithm, call, query, n.Secret)
}

// forward sends the request to the node re-signed and returns the node's
// XML answer (SUCCESS or FAILED alike). An error means the node did not
// give a BBB answer at all.
func (s *Server) forward(ctx context.Context, n records.Node, req *apiRequest, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var body io.Reader
	if req.body != nil {
		body = bytes.NewReader(req.body)
	}
	hreq, err := http.NewRequestWithContext(ctx, req.method, s.nodeURL(n, req.call, req.query), body)
	if err != nil {
		return nil, err
	}
	if req.contentType != "" {
		hreq.Header.Set("Content-Type", req.contentType)
	}
	resp, err := s.nodeHTTP.Do(hreq)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL carries the node's checksum
		}
		return nil, fmt.Errorf("%s %s: %w", req.call, n.Name, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, bbb.DefaultMaxResponseBytes))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the answer: %w", req.call, n.Name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s: HTTP %s", req.call, n.Name, resp.Status)
	}
	if err := bbb.DecodeResponse(req.call, data, nil); err != nil && !errors.As(err, new(*bbb.APIError)) {
		return nil, fmt.Errorf("%s %s: %w", req.call, n.Name, err)
	}
	return data, nil
}

// refusedChecksum says whether a node's answer to a call the balancer signed
// with the node's secret is checksumError. That error is the node's, never
// the front-end's (whose checksum the balancer checked): the node is marked
// unhealthy, so placement avoids it until it registers again, and the log
// says so once.
func (s *Server) refusedChecksum(n records.Node, call string, body []byte) bool {
	if !errors.Is(bbb.DecodeResponse(call, body, nil), bbb.ErrChecksum) {
		return false
	}
	if s.reg.markUnhealthy(n.ID, "checksumError") {
		s.log.Error("node refused the balancer's checksum: its BBB secret is not the one registered; it takes no new meetings until its agent registers again with the right secret",
			"node", n.Name, "url", n.URL, "call", call)
	}
	return true
}

// ceilingWarning rate-limits the warning that every eligible node is over
// the CPU ceiling: once per ceilingWarnEvery, with the count in between.
type ceilingWarning struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

const ceilingWarnEvery = time.Minute

func (c *ceilingWarning) warn(s *Server, node string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := s.cfg.Clock()
	if !c.last.IsZero() && now.Sub(c.last) < ceilingWarnEvery {
		c.suppressed++
		return
	}
	s.log.Warn("every eligible node is over the CPU ceiling; placing on the least loaded", "node", node,
		"placements_over_ceiling_since_last_warning", c.suppressed)
	c.last, c.suppressed = now, 0
}

// withBodyTimeout bounds the time a request may take to send its body, so
// that a client trickling bytes cannot hold a connection.
func (s *Server) withBodyTimeout(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.cfg.BodyReadTimeout)) // a deadline is wall-clock time
		next.ServeHTTP(w, r)
	})
}

// withCleanAPIPaths answers a BBB API path that is not in clean form
// (create/../getMeetings, a doubled slash) with a BBB error instead of the
// mux's redirect: a front-end must not be sent to another call.
func (s *Server) withCleanAPIPaths(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if strings.HasPrefix(p, apiPrefix) && p != apiPrefix+"/" && path.Clean(p) != p {
			rec := &resultRecorder{ResponseWriter: w}
			writeFailed(rec, bbb.NewError(bbb.KeyUnsupportedRequest, "The API path is not in clean form: call /bigbluebutton/api/<call>."))
			s.metrics.apiRequests.WithLabelValues("unsupported", rec.result()).Inc()
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) storeError(what string, err error) *bbb.APIError {
	s.log.Error("store: "+what, "err", err)
	return bbb.NewError(bbb.KeyInternalError, "The balancer's database did not answer; try again.")
}

// resultRecorder remembers the outcome of a call for the metrics.
type resultRecorder struct {
	http.ResponseWriter
	outcome string
}

func (r *resultRecorder) result() string {
	if r.outcome == "" {
		return "redirect"
	}
	return r.outcome
}

func writeXML(w *resultRecorder, v any) {
	body, err := bbb.MarshalResponse(v)
	if err != nil {
		body, _ = bbb.MarshalResponse(bbb.FailedResponse(bbb.NewError(bbb.KeyInternalError, "The response could not be encoded.")))
	}
	writeRaw(w, body)
}

func writeFailed(w *resultRecorder, e *bbb.APIError) {
	writeXML(w, bbb.FailedResponse(e))
}

// writeRaw writes an XML answer (ours or a node's) with HTTP 200, as BBB does
// for errors too.
func writeRaw(w *resultRecorder, body []byte) {
	w.outcome = bbb.ReturnSuccess
	if bytes.Contains(body, []byte("<returncode>FAILED</returncode>")) {
		w.outcome = bbb.ReturnFailed
	}
	w.Header().Set("Content-Type", "text/xml;charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}
