package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Callback states: waiting for the meeting's recordings (the create's
// remembered URL, record ID ""), queued for one recording, delivered, or
// failed for good (the receiver answered 404 or 410).
const (
	CallbackWaiting   = "waiting"
	CallbackQueued    = "queued"
	CallbackDelivered = "delivered"
	CallbackFailed    = "failed"
)

// Callback is one recording-ready callback.
type Callback struct {
	MeetingID string // the front-end's meeting ID
	RecordID  string
	URL       string
	// SecretID names the balancer secret the front-end signed its create
	// with (a hash, never the secret itself).
	SecretID  string
	State     string
	Attempts  int
	NextAt    time.Time
	LastError string
}

const callbackColumns = `meeting_id, record_id, url, secret, state, attempts, next_at, last_error`

func scanCallback(sc scanner) (Callback, error) {
	var (
		c      Callback
		nextAt int64
	)
	err := sc.Scan(&c.MeetingID, &c.RecordID, &c.URL, &c.SecretID, &c.State, &c.Attempts, &nextAt, &c.LastError)
	c.NextAt = fromMillis(nextAt)
	return c, err
}

// RememberCallback keeps a create's recording-ready URL for the meeting's
// future recordings; a later create replaces it.
func (s *Store) RememberCallback(ctx context.Context, meetingID, url, secretID string, at time.Time) error {
	_, err := s.exec(ctx, s.db, `INSERT INTO recording_callbacks (meeting_id, record_id, url, secret, state, created_at)
		VALUES (?, '', ?, ?, 'waiting', ?)
		ON CONFLICT (meeting_id, record_id) DO UPDATE SET url = excluded.url, secret = excluded.secret`,
		meetingID, url, secretID, millis(at))
	if err != nil {
		return fmt.Errorf("store: remember the recording-ready URL of meeting %q: %w", meetingID, err)
	}
	return nil
}

// QueueCallback queues the callback of a newly indexed recording when its
// meeting asked for one; once per recording, whatever the retries.
func (s *Store) QueueCallback(ctx context.Context, meetingID, recordID string, at time.Time) (bool, error) {
	res, err := s.exec(ctx, s.db, `INSERT INTO recording_callbacks (meeting_id, record_id, url, secret, state, next_at, created_at)
		SELECT meeting_id, ?, url, secret, 'queued', ?, ? FROM recording_callbacks
		WHERE meeting_id = ? AND record_id = ''
		ON CONFLICT (meeting_id, record_id) DO NOTHING`, recordID, millis(at), millis(at), meetingID)
	var n int64
	if err == nil {
		n, err = res.RowsAffected()
	}
	if err != nil {
		return false, fmt.Errorf("store: queue the callback of recording %q: %w", recordID, err)
	}
	return n == 1, nil
}

// ClaimCallbacks takes up to limit queued callbacks that are due at now and
// holds them for lease: another replica claims them only after that. Of
// concurrent claimers, one gets each callback.
func (s *Store) ClaimCallbacks(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Callback, error) {
	var out []Callback
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		out = out[:0]
		rows, err := tx.QueryContext(ctx, s.q(`UPDATE recording_callbacks SET next_at = ?
			WHERE state = 'queued' AND next_at <= ? AND (meeting_id, record_id) IN (
				SELECT meeting_id, record_id FROM recording_callbacks WHERE state = 'queued' AND next_at <= ? ORDER BY next_at LIMIT ?)
			RETURNING `+callbackColumns), millis(now.Add(lease)), millis(now), millis(now), limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			c, err := scanCallback(rows)
			if err != nil {
				return err
			}
			out = append(out, c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("store: claim callbacks: %w", err)
	}
	return out, nil
}

// FinishCallback records an attempt: the new state, and when queued again
// the time of the next attempt.
func (s *Store) FinishCallback(ctx context.Context, c Callback, state string, next time.Time, lastError string) error {
	_, err := s.exec(ctx, s.db, `UPDATE recording_callbacks SET state = ?, attempts = attempts + 1, next_at = ?, last_error = ?
		WHERE meeting_id = ? AND record_id = ?`, state, millis(next), lastError, c.MeetingID, c.RecordID)
	if err != nil {
		return fmt.Errorf("store: callback of recording %q: %w", c.RecordID, err)
	}
	return nil
}

// Callbacks lists the callbacks of a recording, or every queued one when
// recordID is "".
func (s *Store) Callbacks(ctx context.Context, recordID string) ([]Callback, error) {
	q, args := `SELECT `+callbackColumns+` FROM recording_callbacks WHERE record_id = ?`, []any{recordID}
	if recordID == "" {
		q, args = `SELECT `+callbackColumns+` FROM recording_callbacks WHERE state = 'queued'`, nil
	}
	rows, err := s.query(ctx, s.rdb, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: callbacks: %w", err)
	}
	defer rows.Close()
	var out []Callback
	for rows.Next() {
		c, err := scanCallback(rows)
		if err != nil {
			return nil, fmt.Errorf("store: callbacks: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: callbacks: %w", err)
	}
	return out, nil
}

// CallbackBacklog counts the callbacks queued and not delivered yet.
func (s *Store) CallbackBacklog(ctx context.Context) (int, error) {
	var n int
	if err := s.queryRow(ctx, s.rdb, `SELECT COUNT(*) FROM recording_callbacks WHERE state = 'queued'`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count queued callbacks: %w", err)
	}
	return n, nil
}
