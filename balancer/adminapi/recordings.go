package adminapi

import (
	"context"
	"net/http"
)

// Paths of the recordings part of the admin API.
const (
	// PathRecordingsStatus answers RecordingsStatus.
	PathRecordingsStatus = "/admin/v1/recordings/status"
	// PathRecordingsImport takes an ImportRequest.
	PathRecordingsImport = "/admin/v1/recordings/import"
)

// RecordingsStatus is the recordings' summary in `bbb-balancer status`.
type RecordingsStatus struct {
	// Recordings and Bytes count the indexed recordings that are not deleted.
	Recordings int   `json:"recordings"`
	Bytes      int64 `json:"recordings_bytes"`
	// SpoolWaiting counts the tars in the spool not imported yet (waiting
	// or being retried), SpoolFailed those in failed/; both -1 without a
	// spool.
	SpoolWaiting int `json:"spool_waiting"`
	SpoolFailed  int `json:"spool_failed"`
	// CallbacksQueued counts the recording-ready callbacks not delivered yet.
	CallbacksQueued int `json:"callbacks_queued"`
}

// ImportRequest names Scalelite-format tars, as absolute paths on the
// balancer's host, to import now.
type ImportRequest struct {
	Tars []string `json:"tars"`
}

// ImportResult is one tar's outcome.
type ImportResult struct {
	Tar string `json:"tar"`
	// Result is "imported", "failed" (Reason says why; the tar is in the
	// spool's failed/) or "retrying" (a passing failure; the importer
	// retries it with backoff).
	Result string `json:"result"`
	Reason string `json:"reason,omitempty"`
}

// Import results.
const (
	ImportImported = "imported"
	ImportFailed   = "failed"
	ImportRetrying = "retrying"
)

// RecordingsStatus reads the recordings' summary.
func (c *Client) RecordingsStatus(ctx context.Context) (RecordingsStatus, error) {
	var out RecordingsStatus
	return out, c.do(ctx, http.MethodGet, PathRecordingsStatus, nil, &out)
}

// ImportRecordings imports tars through the balancer's spool importer.
func (c *Client) ImportRecordings(ctx context.Context, req ImportRequest) ([]ImportResult, error) {
	var out []ImportResult
	return out, c.do(ctx, http.MethodPost, PathRecordingsImport, req, &out)
}
