package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/bbb-agent/bbb-agent/recordings"
)

// Recordings is the recordings shipper as the agent uses it
// (recordings.Shipper): the backlog for the report, the status and the
// drain, and the operators' commands through the admin socket.
type Recordings interface {
	Backlog(ctx context.Context) (recordings.Backlog, error)
	Scan(ctx context.Context) (int, error)
	Notify(ctx context.Context, recordID, format string) error
	List(ctx context.Context) ([]recordings.Row, error)
	Retry(ctx context.Context, recordID string) (int, error)
	Stats() recordings.Stats
}

// RecordingsStatus is the recordings part of `bbb-agent status`.
type RecordingsStatus struct {
	// Storage is where recordings go: none, spool:DIR, s3://BUCKET/PREFIX.
	Storage string             `json:"storage"`
	Backlog recordings.Backlog `json:"backlog"`
	// Shipped, Failed and BytesShipped count since the agent started.
	Shipped      uint64 `json:"shipped"`
	Failed       uint64 `json:"failed"`
	BytesShipped uint64 `json:"bytes_shipped"`
	// Error is why the backlog could not be read, if it could not.
	Error string `json:"error,omitempty"`
	// DrainWaits says whether a drain waits for the backlog.
	DrainWaits bool `json:"drain_waits"`
}

// recordingsTimeout bounds reading the backlog, so that a slow disk never
// holds the report loop for long.
const recordingsTimeout = 10 * time.Second

// measureRecordings reads the recordings backlog into the status and
// returns it; ok is false without recordings or when it cannot be read.
// During a drain it scans when the drain starts and whenever BBB finished
// processing a recording since the last measurement, so that a format BBB
// published without the hook telling us is queued before the node leaves
// (the periodic scan may be minutes away).
func (a *Agent) measureRecordings(ctx context.Context) (recordings.Backlog, bool) {
	r := a.deps.Recordings
	if r == nil {
		return recordings.Backlog{}, false
	}
	cctx, cancel := context.WithTimeout(ctx, recordingsTimeout)
	defer cancel()
	b, err := r.Backlog(cctx)
	if d := a.drain; d != nil && err == nil && (a.recScannedFor != d || b.Processing < a.recProcessing) {
		a.recScannedFor = d
		if n, serr := r.Scan(cctx); serr != nil {
			a.log.Warn("recordings: scan during the drain", "err", serr)
		} else if n > 0 {
			b, err = r.Backlog(cctx)
		}
	}
	if err == nil {
		a.recProcessing = b.Processing
	}
	st := r.Stats()
	a.mu.Lock()
	defer a.mu.Unlock()
	rs := a.status.Recordings
	if rs == nil {
		rs = &RecordingsStatus{Storage: a.cfg.RecordingsStorage, DrainWaits: a.cfg.DrainWaitRecordings}
		a.status.Recordings = rs
	}
	rs.Shipped, rs.Failed, rs.BytesShipped = st.Shipped, st.Failed, st.BytesShipped
	if err != nil {
		a.log.Warn("recordings: reading the backlog", "err", err)
		rs.Error = err.Error()
		return b, false
	}
	rs.Backlog, rs.Error = b, ""
	return b, true
}

// recordingsLeft is what a drain still waits for: BBB processing, and
// formats not yet shipped (and indexed). It says nothing to wait for when
// the drain does not wait for recordings.
func (a *Agent) recordingsLeft(m *measurement) (processing, shipping int, wait bool) {
	if !a.cfg.DrainWaitRecordings || a.deps.Recordings == nil {
		return 0, 0, false
	}
	if !m.recOK {
		return 0, 0, true // unknown: wait for a reading, within the deadline
	}
	b := m.rec
	processing = b.Processing
	if !b.KeptLocally {
		shipping = b.Pending() - b.Processing
	}
	return processing, shipping, processing+shipping > 0
}

// drainMessage is the sd_notify STATUS and the log line of a drain's wait:
// "draining: 0 meetings, 2 recordings processing, 1 shipping".
func drainMessage(meetings, processing, shipping int, withRecordings bool) string {
	if !withRecordings {
		return fmt.Sprintf("draining: %s left", meetingCount(meetings))
	}
	return fmt.Sprintf("draining: %s, %d recordings processing, %d shipping", meetingCount(meetings), processing, shipping)
}

// recordingRequest names one recording (and optionally a format) on the
// admin socket.
type recordingRequest struct {
	RecordID string `json:"record_id"`
	Format   string `json:"format,omitempty"`
}

// RecordingsAnswer is the admin socket's answer to the recordings
// commands.
type RecordingsAnswer struct {
	Rows    []recordings.Row `json:"rows,omitempty"`
	Touched int              `json:"touched"` // rows queued or made due
}

// Paths of the recordings admin API.
const (
	adminRecordings = "/v1/recordings"
	adminNotify     = "/v1/recordings/notify"
	adminShip       = "/v1/recordings/ship"
	adminRetry      = "/v1/recordings/retry"
	adminBackfill   = "/v1/recordings/backfill"
)

// errNoRecordings answers the recordings commands of an agent that has no
// recordings shipper (role turn).
var errNoRecordings = errors.New("this agent does not handle recordings (role turn)")

// recordingsHandlers adds the recordings admin API to mux.
func (a *Agent) recordingsHandlers(mux *http.ServeMux) {
	handle := func(pattern string, f func(ctx context.Context, r Recordings, req recordingRequest) (RecordingsAnswer, int, error)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, hr *http.Request) {
			rec := a.deps.Recordings
			if rec == nil {
				writeAdmin(w, http.StatusNotFound, adminError{errNoRecordings.Error()})
				return
			}
			var req recordingRequest
			if hr.Method == http.MethodPost && hr.ContentLength != 0 {
				if err := decodeAdmin(hr, &req); err != nil {
					writeAdmin(w, http.StatusBadRequest, adminError{err.Error()})
					return
				}
			}
			ctx, cancel := context.WithTimeout(hr.Context(), 20*time.Second)
			defer cancel()
			ans, code, err := f(ctx, rec, req)
			if err != nil {
				writeAdmin(w, code, adminError{err.Error()})
				return
			}
			writeAdmin(w, http.StatusOK, ans)
		})
	}
	handle("GET "+adminRecordings, func(ctx context.Context, r Recordings, _ recordingRequest) (RecordingsAnswer, int, error) {
		rows, err := r.List(ctx)
		return RecordingsAnswer{Rows: rows, Touched: len(rows)}, http.StatusInternalServerError, err
	})
	handle("POST "+adminNotify, func(ctx context.Context, r Recordings, req recordingRequest) (RecordingsAnswer, int, error) {
		if err := r.Notify(ctx, req.RecordID, req.Format); err != nil {
			return RecordingsAnswer{}, http.StatusUnprocessableEntity, err
		}
		return RecordingsAnswer{Touched: 1}, 0, nil
	})
	handle("POST "+adminShip, func(ctx context.Context, r Recordings, req recordingRequest) (RecordingsAnswer, int, error) {
		// Queue what is published (a format the queue has not seen yet
		// included), then make every row of the recording due now.
		nerr := r.Notify(ctx, req.RecordID, "")
		n, err := r.Retry(ctx, req.RecordID)
		if err != nil {
			return RecordingsAnswer{}, http.StatusInternalServerError, err
		}
		if n == 0 && nerr != nil {
			return RecordingsAnswer{}, http.StatusNotFound, nerr
		}
		return RecordingsAnswer{Touched: n}, 0, nil
	})
	handle("POST "+adminRetry, func(ctx context.Context, r Recordings, req recordingRequest) (RecordingsAnswer, int, error) {
		n, err := r.Retry(ctx, req.RecordID)
		if err != nil {
			return RecordingsAnswer{}, http.StatusInternalServerError, err
		}
		if n == 0 {
			return RecordingsAnswer{}, http.StatusNotFound, fmt.Errorf("recording %q: nothing to retry (unknown to the queue, or shipped already: see bbb-agent recordings list)", req.RecordID)
		}
		return RecordingsAnswer{Touched: n}, 0, nil
	})
	handle("POST "+adminBackfill, func(ctx context.Context, r Recordings, _ recordingRequest) (RecordingsAnswer, int, error) {
		n, err := r.Scan(ctx)
		return RecordingsAnswer{Touched: n}, http.StatusInternalServerError, err
	})
}

// RecordingsList asks the agent for its recordings queue.
func (c *AdminClient) RecordingsList(ctx context.Context) ([]recordings.Row, error) {
	var ans RecordingsAnswer
	err := c.call(ctx, http.MethodGet, adminRecordings, nil, &ans)
	return ans.Rows, err
}

// RecordingsNotify queues a recording BBB has published (the post_publish
// hook); format "" means every published format.
func (c *AdminClient) RecordingsNotify(ctx context.Context, recordID, format string) error {
	return c.call(ctx, http.MethodPost, adminNotify, recordingRequest{RecordID: recordID, Format: format}, &RecordingsAnswer{})
}

// RecordingsShip ships a recording now; it returns how many formats.
func (c *AdminClient) RecordingsShip(ctx context.Context, recordID string) (int, error) {
	var ans RecordingsAnswer
	err := c.call(ctx, http.MethodPost, adminShip, recordingRequest{RecordID: recordID}, &ans)
	return ans.Touched, err
}

// RecordingsRetry retries a recording's failed or quarantined formats now.
func (c *AdminClient) RecordingsRetry(ctx context.Context, recordID string) (int, error) {
	var ans RecordingsAnswer
	err := c.call(ctx, http.MethodPost, adminRetry, recordingRequest{RecordID: recordID}, &ans)
	return ans.Touched, err
}

// RecordingsBackfill scans the recordings directory now and queues every
// format not shipped yet; it returns how many.
func (c *AdminClient) RecordingsBackfill(ctx context.Context) (int, error) {
	var ans RecordingsAnswer
	err := c.call(ctx, http.MethodPost, adminBackfill, nil, &ans)
	return ans.Touched, err
}
