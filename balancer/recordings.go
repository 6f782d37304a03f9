package balancer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bbb-agent/bbb-agent/agentapi"
	"github.com/bbb-agent/bbb-agent/balancer/store"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/prometheus/client_golang/prometheus"
)

// RecordingsConfig is the recordings part of Config.
type RecordingsConfig struct {
	// Storage is where recordings' files are: "" (index only),
	// dir:/var/bigbluebutton or s3://bucket/prefix.
	Storage string
	// S3Endpoint is an S3-compatible server's URL (path-style addressing).
	S3Endpoint string
	// Spool is a directory of Scalelite-format tars to import; "" for none.
	Spool string
	// SpoolInterval is how often the spool is looked at (default 10 s).
	SpoolInterval time.Duration
	// Replica names this replica's claim directory in the spool (default
	// the host name); it must be stable across restarts and unique among
	// replicas sharing the spool.
	Replica string
	// Retention, when positive, deletes recordings that long after they
	// ended, everywhere.
	Retention time.Duration
	// CallbackInterval is how often due recording-ready callbacks are sent
	// (default 10 s).
	CallbackInterval time.Duration
	// CallbackBackoff is the wait after a callback's first failed attempt,
	// doubled per attempt up to 6 h (default 30 s).
	CallbackBackoff time.Duration
	// PlaybackURL is the scheme and host of playback links; "" answers with
	// the API request's own.
	PlaybackURL string
	// Protected makes every newly indexed recording protected: playable
	// only through getRecordings' one-use links (protected.go).
	Protected bool
	// PlayerDir, when set, is served at /playback/presentation/2.3/: the
	// bbb-playback package's files (/var/bigbluebutton/playback/presentation/2.3).
	PlayerDir string
}

// recordingsState is the Server's recordings part.
type recordingsState struct {
	// files is the recordings storage; filesMu serializes its changes.
	files   recordingFiles
	filesMu sync.Mutex
	// importMu serializes the import passes of this replica (the
	// periodic one and an operator's import).
	importMu sync.Mutex
	// spoolRetries holds the backoff of tars whose import failed.
	spoolMu      sync.Mutex
	spoolRetries map[string]spoolRetry
	// callbacks counts callback attempts by outcome.
	callbacks *prometheus.CounterVec
}

// initRecordings checks the recordings settings and opens the storage.
func (s *Server) initRecordings(ctx context.Context) error {
	c := &s.cfg.Recordings
	files, err := openRecordingFiles(ctx, *c)
	if err != nil {
		return err
	}
	if _, isDir := files.(dirFiles); c.Spool != "" && !isDir {
		return fmt.Errorf("--recordings-spool %s needs --recordings-storage dir:DIR to unpack the tars into", c.Spool)
	}
	if c.SpoolInterval <= 0 {
		c.SpoolInterval = 10 * time.Second
	}
	if c.CallbackInterval <= 0 {
		c.CallbackInterval = 10 * time.Second
	}
	if c.Replica == "" {
		c.Replica, _ = os.Hostname()
	}
	if !safeName(c.Replica) {
		c.Replica = "replica"
	}
	s.rec = recordingsState{files: files, spoolRetries: map[string]spoolRetry{},
		callbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bbb_balancer_recording_callbacks_total",
			Help: "Recording-ready callback attempts by result: delivered, retry, gone (404/410).",
		}, []string{"result"}),
	}
	return nil
}

// registerRecordingMetrics adds the recordings' metrics to the registry.
func (s *Server) registerRecordingMetrics() {
	for _, result := range []string{"delivered", "retry", "gone"} {
		s.rec.callbacks.WithLabelValues(result) // 0 from the start, not absent
	}
	s.metrics.reg.MustRegister(s.rec.callbacks)
}

// startRecordings starts the spool importer beside Run.
func (s *Server) startRecordings(ctx context.Context) {
	if s.cfg.Recordings.Spool != "" {
		s.bg.Go(func() { s.runSpool(ctx) })
	}
	s.bg.Go(func() { s.runCallbacks(ctx) })
	if s.cfg.Recordings.Retention > 0 {
		s.bg.Go(func() { s.runRetention(ctx) })
	}
}

// BBB's messages for the recording calls.
const (
	keyMissingParamRecordID = "missingParamRecordID"
	keyMissingParamPublish  = "missingParamPublish"
	msgNoRecordings         = "There are no recordings for the meeting(s)."
)

// agentRecording indexes one shipped recording format (agentapi.PathRecording).
func (s *Server) agentRecording(w http.ResponseWriter, r *http.Request, c caller) {
	var req agentapi.RecordingRequest
	if !s.decodeAgentJSON(w, r, &req) {
		return
	}
	if req.Recording.RecordID == "" || len(req.Recording.Formats) == 0 {
		agentError(w, http.StatusBadRequest, agentapi.CodeBadRequest, "a recording needs record_id and at least one format")
		return
	}
	if _, ok := s.speaksFor(w, r, c, req.Node); !ok {
		return
	}
	if err := s.indexRecording(r.Context(), req.Node, req.Recording); err != nil {
		agentError(w, http.StatusInternalServerError, agentapi.CodeInternal, "the balancer's database did not answer; retry")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// indexRecording upserts a shipped format and, for a recording new to the
// index, queues its recording-ready callback.
func (s *Server) indexRecording(ctx context.Context, node string, m agentapi.RecordingMetadata) error {
	created, changed, err := s.store.UpsertRecording(ctx, node, m, s.cfg.Clock())
	if err != nil {
		s.log.Error("indexing a recording", "record_id", m.RecordID, "node", node, "err", err)
		return err
	}
	if changed {
		s.log.Info("recording indexed", "record_id", m.RecordID, "node", node, "new", created)
	}
	if created && s.cfg.Recordings.Protected {
		if err := s.store.SetRecordingProtected(ctx, m.RecordID, true, s.cfg.Clock()); err != nil {
			s.log.Error("protecting a new recording", "record_id", m.RecordID, "err", err)
			return err
		}
	}
	if created {
		s.queueCallback(ctx, m.ExternalID, m.RecordID)
	}
	return nil
}

// recordingQuery reads getRecordings' parameters as bbb-web 2.6 does.
func recordingQuery(params url.Values) (store.RecordingQuery, bool, *bbb.APIError) {
	q := store.RecordingQuery{
		RecordIDs:  splitList(params.Get("recordID")),
		MeetingIDs: splitList(params.Get("meetingID")),
		States:     splitList(params.Get("state")),
	}
	switch {
	case len(q.States) == 0:
		q.States = []string{store.RecordingPublished, store.RecordingUnpublished}
	case slices.Contains(q.States, "any"):
		q.States = nil
	}
	for _, m := range bbb.MetaFromValues(params) {
		q.Meta = append(q.Meta, store.MetaFilter{Key: m.Key, Value: m.Value})
	}
	paged := false
	for _, p := range []struct {
		key string
		dst *int
	}{{"offset", &q.Offset}, {"limit", &q.Limit}} {
		v := strings.TrimSpace(params.Get(p.key))
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return q, false, bbb.NewError(bbb.KeyValidationError, fmt.Sprintf("Parameter %s must be a non-negative integer, not %q.", p.key, v))
		}
		*p.dst, paged = n, true
	}
	return q, paged, nil
}

func splitList(v string) []string {
	var out []string
	for part := range strings.SplitSeq(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// getRecordings answers from the index.
func (s *Server) getRecordings(ctx context.Context, w *resultRecorder, r *http.Request, req *apiRequest) {
	q, paged, apiErr := recordingQuery(req.params)
	if apiErr != nil {
		writeFailed(w, apiErr)
		return
	}
	recs, total, err := s.store.Recordings(ctx, q)
	if err != nil {
		writeFailed(w, s.storeError("listing recordings", err))
		return
	}
	base := s.playbackBase(r)
	resp := bbb.GetRecordingsResponse{ReturnCode: bbb.ReturnSuccess, Recordings: make([]bbb.Recording, len(recs))}
	pruned := false
	for i, rec := range recs {
		resp.Recordings[i] = apiRecording(rec, base)
		if !rec.Protected {
			continue
		}
		if !pruned {
			// Expired links are forgotten whenever new ones are handed out.
			if err := s.store.PruneRecordingTokens(ctx, s.cfg.Clock()); err != nil {
				writeFailed(w, s.storeError("issuing a protected recording's link", err))
				return
			}
			pruned = true
		}
		for j := range resp.Recordings[i].Playback {
			pf := &resp.Recordings[i].Playback[j]
			link, err := s.protectedLink(ctx, base, rec.RecordID, pf.Type)
			if err != nil {
				writeFailed(w, s.storeError("issuing a protected recording's link", err))
				return
			}
			pf.URL = link
		}
	}
	if paged {
		resp.TotalElements = &total
	}
	if len(recs) == 0 {
		resp.MessageKey, resp.Message = bbb.KeyNoRecordings, msgNoRecordings
	}
	writeXML(w, resp)
}

// playbackBase is the scheme and host of playback links: --playback-url,
// else the request's own (behind a proxy, X-Forwarded-Proto says the scheme).
func (s *Server) playbackBase(r *http.Request) string {
	if s.cfg.Recordings.PlaybackURL != "" {
		return strings.TrimSuffix(s.cfg.Recordings.PlaybackURL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "https" || p == "http" {
		scheme = p
	}
	return scheme + "://" + r.Host
}

// rebase points a node's link at the balancer's playback host, keeping the
// path and query.
func rebase(link, base string) string {
	u, err := url.Parse(link)
	if err != nil || u.Path == "" {
		return link
	}
	out := base + u.EscapedPath()
	if u.RawQuery != "" {
		out += "?" + u.RawQuery
	}
	return out
}

// apiRecording describes an indexed recording as getRecordings does.
func apiRecording(r store.Recording, base string) bbb.Recording {
	out := bbb.Recording{
		RecordID: r.RecordID, MeetingID: r.MeetingID, InternalMeetingID: r.InternalMeetingID, Name: r.Name,
		IsBreakout: r.IsBreakout, Published: r.State == store.RecordingPublished, State: r.State,
		StartTime: r.StartTime, EndTime: r.EndTime, Participants: r.Participants, RawSize: r.RawSize, Size: r.Size,
	}
	for _, k := range slices.Sorted(maps.Keys(r.Meta)) {
		out.Metadata = append(out.Metadata, bbb.Meta{Key: k, Value: r.Meta[k]})
	}
	for _, f := range r.Formats {
		pf := bbb.PlaybackFormat{
			Type: f.Type, URL: rebase(f.Link, base), ProcessingTime: f.ProcessingTime,
			Length: int(f.Duration / 60000), Size: f.Size,
		}
		if len(f.Preview) > 0 {
			pf.Preview = &bbb.Preview{}
			for _, img := range f.Preview {
				pf.Preview.Images = append(pf.Preview.Images, bbb.Image{Alt: img.Alt, Width: img.Width, Height: img.Height, URL: rebase(img.URL, base)})
			}
		}
		out.Playback = append(out.Playback, pf)
	}
	return out
}

// recordIDsParam reads the recordID list that publish, update and delete need.
func recordIDsParam(req *apiRequest) ([]string, *bbb.APIError) {
	ids := splitList(req.params.Get("recordID"))
	if len(ids) == 0 {
		return nil, bbb.NewError(keyMissingParamRecordID, "You must specify one or more recordID(s).")
	}
	return ids, nil
}

func recordingsNotFound() *bbb.APIError {
	return bbb.NewError(bbb.KeyNotFound, "We could not find recordings")
}

// recordingCall serves the four recording calls of the BBB API.
func (s *Server) recordingCall(ctx context.Context, w *resultRecorder, r *http.Request, req *apiRequest) {
	if req.call == bbb.CallGetRecordings {
		s.getRecordings(ctx, w, r, req)
		return
	}
	ids, apiErr := recordIDsParam(req)
	if apiErr != nil {
		writeFailed(w, apiErr)
		return
	}
	switch req.call {
	case bbb.CallPublishRecordings:
		value := strings.TrimSpace(req.params.Get("publish"))
		if value == "" {
			writeFailed(w, bbb.NewError(keyMissingParamPublish, "You must specify a publish value true or false."))
			return
		}
		publish := strings.EqualFold(value, "true")
		state := store.RecordingUnpublished
		if publish {
			state = store.RecordingPublished
		}
		if s.changeState(ctx, w, ids, state) {
			writeXML(w, bbb.PublishRecordingsResponse{ReturnCode: bbb.ReturnSuccess, Published: publish})
		}
	case bbb.CallDeleteRecordings:
		if s.changeState(ctx, w, ids, store.RecordingDeleted) {
			writeXML(w, bbb.DeleteRecordingsResponse{ReturnCode: bbb.ReturnSuccess, Deleted: true})
		}
	case bbb.CallUpdateRecordings:
		var updates []store.MetaFilter
		for _, m := range bbb.MetaFromValues(req.params) {
			updates = append(updates, store.MetaFilter{Key: m.Key, Value: m.Value})
		}
		n, err := s.store.UpdateRecordingMeta(ctx, ids, updates, s.cfg.Clock())
		if p := strings.TrimSpace(req.params.Get("protect")); err == nil && n > 0 && p != "" {
			err = s.setProtected(ctx, ids, strings.EqualFold(p, "true"))
		}
		switch {
		case err != nil:
			writeFailed(w, s.storeError("updating recordings", err))
		case n == 0:
			writeFailed(w, recordingsNotFound())
		default:
			writeXML(w, bbb.UpdateRecordingsResponse{ReturnCode: bbb.ReturnSuccess, Updated: true})
		}
	}
}

// setProtected sets or clears the protection of the recordings that exist.
func (s *Server) setProtected(ctx context.Context, ids []string, protect bool) error {
	for _, id := range ids {
		if err := s.store.SetRecordingProtected(ctx, id, protect, s.cfg.Clock()); err != nil {
			return err
		}
	}
	return nil
}

// changeState sets the recordings' state and answers an error itself; it
// returns false on one.
func (s *Server) changeState(ctx context.Context, w *resultRecorder, ids []string, state string) bool {
	found, err := s.setRecordingsState(ctx, ids, state)
	switch {
	case errors.Is(err, errStorage):
		writeFailed(w, bbb.NewError(bbb.KeyInternalError, "The recording's files could not be changed; try again."))
		return false
	case err != nil:
		writeFailed(w, s.storeError("changing recordings", err))
		return false
	case found == 0:
		writeFailed(w, recordingsNotFound())
		return false
	}
	return true
}

// errStorage marks a failure of the recordings storage.
var errStorage = errors.New("recordings storage")

// setRecordingsState sets the recordings' state in the index, then makes
// the storage follow, and returns how many recordings it found. Deleted
// recordings are found only by a delete (a retried delete finishes the
// storage's part).
func (s *Server) setRecordingsState(ctx context.Context, ids []string, state string) (int, error) {
	found, err := s.store.SetRecordingState(ctx, ids, state, s.cfg.Clock())
	if err != nil {
		return 0, err
	}
	for _, rec := range found {
		if err := s.syncFiles(ctx, rec.RecordID); err != nil {
			s.log.Error("moving a recording's files", "record_id", rec.RecordID, "state", state, "storage", s.rec.files, "err", err)
			return len(found), fmt.Errorf("%w: %s: %w", errStorage, rec.RecordID, err)
		}
	}
	return len(found), nil
}

// ApplyRetention deletes, through the same path as deleteRecordings, the
// recordings that ended longer than --recordings-retention ago, and returns
// how many it deleted.
func (s *Server) ApplyRetention(ctx context.Context) (int, error) {
	if s.cfg.Recordings.Retention <= 0 {
		return 0, nil
	}
	deleted := 0
	for {
		ids, err := s.store.ExpiredRecordings(ctx, s.cfg.Clock().Add(-s.cfg.Recordings.Retention), 100)
		if err != nil || len(ids) == 0 {
			return deleted, err
		}
		if _, err := s.setRecordingsState(ctx, ids, store.RecordingDeleted); err != nil {
			return deleted, err
		}
		deleted += len(ids)
		s.log.Info("recordings past retention deleted", "count", len(ids))
	}
}

// runRetention applies the retention every interval until ctx ends.
func (s *Server) runRetention(ctx context.Context) {
	t := time.NewTicker(retentionInterval)
	defer t.Stop()
	for {
		if _, err := s.ApplyRetention(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("recordings retention", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// retentionInterval is how often the retention runs.
const retentionInterval = 10 * time.Minute

// syncFiles makes the storage follow the index for one recording. Calls
// are serialized in this process and each reads the state afresh, so the
// files end in the state the index holds last, whatever order concurrent
// publish, unpublish and delete calls ran in.
func (s *Server) syncFiles(ctx context.Context, recordID string) error {
	s.rec.filesMu.Lock()
	defer s.rec.filesMu.Unlock()
	rec, err := s.store.Recording(ctx, recordID)
	if err != nil {
		return err
	}
	return s.rec.files.Sync(ctx, rec)
}
