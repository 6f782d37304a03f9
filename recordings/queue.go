package recordings

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // registers "sqlite"
)

// Row states.
const (
	StateQueued      = "queued"
	StateShipping    = "shipping"
	StateShipped     = "shipped" // at the destination, not (yet) indexed
	StateIndexed     = "indexed"
	StateFailed      = "failed" // retried at NextTry
	StateQuarantined = "quarantined"
)

// QueueFile is the queue's file name in the agent's state directory.
const QueueFile = "recordings.db"

// Row is one (record ID, format) of the queue.
type Row struct {
	RecordID    string    `json:"record_id"`
	Format      string    `json:"format"`
	Dir         string    `json:"dir"`
	State       string    `json:"state"`
	Attempts    int       `json:"attempts"`
	LastError   string    `json:"last_error,omitempty"`
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256,omitempty"`
	Fingerprint string    `json:"fingerprint"`
	Location    string    `json:"location,omitempty"`
	ShippedAt   time.Time `json:"shipped_at,omitzero"`
	NextTry     time.Time `json:"next_try,omitzero"`
	DeletedAt   time.Time `json:"deleted_at,omitzero"` // the local copy
	Freed       int64     `json:"freed,omitempty"`     // bytes the local delete freed
}

// Queue is the durable ship queue: SQLite in the state directory, every
// change one transaction, synchronous=FULL, so a kill -9 or a power cut
// loses nothing that a call returned.
type Queue struct {
	db *sql.DB
}

const schema = `CREATE TABLE IF NOT EXISTS recordings (
	record_id   TEXT NOT NULL,
	format      TEXT NOT NULL,
	dir         TEXT NOT NULL,
	state       TEXT NOT NULL,
	attempts    INTEGER NOT NULL DEFAULT 0,
	last_error  TEXT NOT NULL DEFAULT '',
	size        INTEGER NOT NULL DEFAULT 0,
	sha256      TEXT NOT NULL DEFAULT '',
	fingerprint TEXT NOT NULL DEFAULT '',
	location    TEXT NOT NULL DEFAULT '',
	shipped_at  INTEGER NOT NULL DEFAULT 0,
	next_try    INTEGER NOT NULL DEFAULT 0,
	deleted_at  INTEGER NOT NULL DEFAULT 0,
	freed       INTEGER NOT NULL DEFAULT 0,
	failed_at   INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (record_id, format)
)`

// OpenQueue opens (creating it if need be) the queue in stateDir. Rows a
// crash left in shipping go back to queued.
func OpenQueue(ctx context.Context, stateDir string) (*Queue, error) {
	if err := os.MkdirAll(stateDir, 0o750); err != nil {
		return nil, fmt.Errorf("recordings queue: %w", err)
	}
	path := filepath.Join(stateDir, QueueFile)
	db, _ := sql.Open("sqlite", path+"?_busy_timeout=5000&_synchronous=FULL&_journal_mode=WAL&_txlock=immediate")
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("recordings queue %s: %w", path, err)
	}
	if _, err := db.ExecContext(ctx, `UPDATE recordings SET state = ? WHERE state = ?`, StateQueued, StateShipping); err != nil {
		db.Close()
		return nil, fmt.Errorf("recordings queue %s: %w", path, err)
	}
	return &Queue{db: db}, nil
}

// Close closes the database.
func (q *Queue) Close() error { return q.db.Close() }

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

const rowColumns = `record_id, format, dir, state, attempts, last_error, size, sha256, fingerprint, location, shipped_at, next_try, deleted_at, freed`

type scanner interface{ Scan(...any) error }

func scanRow(s scanner) (Row, error) {
	var r Row
	var shipped, next, deleted int64
	err := s.Scan(&r.RecordID, &r.Format, &r.Dir, &r.State, &r.Attempts, &r.LastError, &r.Size, &r.SHA256,
		&r.Fingerprint, &r.Location, &shipped, &next, &deleted, &r.Freed)
	r.ShippedAt, r.NextTry, r.DeletedAt = fromNano(shipped), fromNano(next), fromNano(deleted)
	return r, err
}

// Enqueue records a finished format. A new one is queued; a known one
// whose fingerprint changed (a rebuild, a format re-published) is queued
// again from scratch, unless it is shipping now: the worker then sees the
// change and ships it again. It reports whether the row changed.
func (q *Queue) Enqueue(ctx context.Context, f Found) (bool, error) {
	res, err := q.db.ExecContext(ctx, `INSERT INTO recordings (record_id, format, dir, state, fingerprint, size)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (record_id, format) DO UPDATE SET
			dir = excluded.dir, fingerprint = excluded.fingerprint, size = excluded.size,
			state = CASE WHEN state = 'shipping' THEN state ELSE 'queued' END,
			attempts = 0, last_error = '', next_try = 0, deleted_at = 0, freed = 0
		WHERE fingerprint <> excluded.fingerprint`,
		f.RecordID, f.Format, f.Dir, StateQueued, f.Fingerprint, f.Size)
	if err != nil {
		return false, fmt.Errorf("recordings queue: enqueue %s/%s: %w", f.RecordID, f.Format, err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// enqueueMissing records a format BBB announced but whose directory has
// no metadata.xml, unless the row exists: the worker quarantines it.
func (q *Queue) enqueueMissing(ctx context.Context, f Found) error {
	_, err := q.exec(ctx, "enqueue", `INSERT INTO recordings (record_id, format, dir, state) VALUES (?, ?, ?, 'queued')
		ON CONFLICT (record_id, format) DO NOTHING`, f.RecordID, f.Format, f.Dir)
	return err
}

// rebuilt queues a row again whose files changed while it shipped.
func (q *Queue) rebuilt(ctx context.Context, r Row) error {
	_, err := q.exec(ctx, "rebuilt", `UPDATE recordings SET state = 'queued', fingerprint = 'changed', next_try = 0
		WHERE record_id = ? AND format = ?`, r.RecordID, r.Format)
	return err
}

// claim takes the next row due for shipping and marks it shipping.
func (q *Queue) claim(ctx context.Context, now time.Time) (Row, bool, error) {
	tx, err := q.db.BeginTx(ctx, nil)
	if err != nil {
		return Row{}, false, fmt.Errorf("recordings queue: %w", err)
	}
	defer tx.Rollback()
	r, err := scanRow(tx.QueryRowContext(ctx, `SELECT `+rowColumns+` FROM recordings
		WHERE state IN ('queued', 'failed') AND next_try <= ? ORDER BY next_try, record_id, format LIMIT 1`, now.UnixNano()))
	if errors.Is(err, sql.ErrNoRows) {
		return Row{}, false, nil
	}
	if err != nil {
		return Row{}, false, fmt.Errorf("recordings queue: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE recordings SET state = 'shipping' WHERE record_id = ? AND format = ?`, r.RecordID, r.Format); err != nil {
		return Row{}, false, fmt.Errorf("recordings queue: %w", err)
	}
	r.State = StateShipping
	return r, true, tx.Commit()
}

// due returns up to limit rows in state whose next_try has come.
func (q *Queue) due(ctx context.Context, state string, now time.Time, limit int) ([]Row, error) {
	return q.query(ctx, `WHERE state = ? AND next_try <= ? ORDER BY next_try LIMIT ?`, state, now.UnixNano(), limit)
}

func (q *Queue) query(ctx context.Context, where string, args ...any) ([]Row, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT `+rowColumns+` FROM recordings `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("recordings queue: %w", err)
	}
	defer rows.Close()
	var out []Row
	for rows.Next() {
		r, err := scanRow(rows)
		if err != nil {
			return nil, fmt.Errorf("recordings queue: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// List returns every row, by record ID and format.
func (q *Queue) List(ctx context.Context) ([]Row, error) {
	return q.query(ctx, `ORDER BY record_id, format`)
}

// Get returns one row.
func (q *Queue) Get(ctx context.Context, recordID, format string) (Row, bool, error) {
	rows, err := q.query(ctx, `WHERE record_id = ? AND format = ?`, recordID, format)
	if err != nil || len(rows) == 0 {
		return Row{}, false, err
	}
	return rows[0], true, nil
}

func (q *Queue) exec(ctx context.Context, what, query string, args ...any) (int64, error) {
	res, err := q.db.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, fmt.Errorf("recordings queue: %s: %w", what, err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// shipped records the destination's confirmation of the content with
// fingerprint fp. When the row's fingerprint changed meanwhile (a notify
// saw a rebuild), the row is queued again instead.
func (q *Queue) shipped(ctx context.Context, r Row, fp, location, sum string, size int64, now time.Time) (bool, error) {
	n, err := q.exec(ctx, "shipped", `UPDATE recordings SET state = 'shipped', location = ?, sha256 = ?, size = ?,
		shipped_at = ?, last_error = '', next_try = 0 WHERE record_id = ? AND format = ? AND fingerprint = ?`,
		location, sum, size, now.UnixNano(), r.RecordID, r.Format, fp)
	if err != nil || n > 0 {
		return n > 0, err
	}
	_, err = q.exec(ctx, "requeue", `UPDATE recordings SET state = 'queued', next_try = 0 WHERE record_id = ? AND format = ?`, r.RecordID, r.Format)
	return false, err
}

// setFingerprint records the content a worker is about to ship.
func (q *Queue) setFingerprint(ctx context.Context, r Row, dir, fp string, size int64) error {
	_, err := q.exec(ctx, "fingerprint", `UPDATE recordings SET dir = ?, fingerprint = ?, size = ? WHERE record_id = ? AND format = ?`,
		dir, fp, size, r.RecordID, r.Format)
	return err
}

func (q *Queue) failed(ctx context.Context, r Row, state string, cause error, now, next time.Time) error {
	_, err := q.exec(ctx, "failed", `UPDATE recordings SET state = ?, attempts = attempts + 1, last_error = ?, next_try = ?, failed_at = ?
		WHERE record_id = ? AND format = ?`, state, cause.Error(), unixNano(next), unixNano(now), r.RecordID, r.Format)
	return err
}

// requeue puts a row back without counting an attempt (shutdown, rebuild).
func (q *Queue) requeue(ctx context.Context, r Row) error {
	_, err := q.exec(ctx, "requeue", `UPDATE recordings SET state = 'queued' WHERE record_id = ? AND format = ? AND state = 'shipping'`,
		r.RecordID, r.Format)
	return err
}

func (q *Queue) indexed(ctx context.Context, r Row) error {
	_, err := q.exec(ctx, "indexed", `UPDATE recordings SET state = 'indexed', last_error = '', next_try = 0
		WHERE record_id = ? AND format = ? AND state = 'shipped' AND shipped_at = ?`, r.RecordID, r.Format, unixNano(r.ShippedAt))
	return err
}

func (q *Queue) indexFailed(ctx context.Context, r Row, cause error, now, next time.Time) error {
	_, err := q.exec(ctx, "index failed", `UPDATE recordings SET last_error = ?, next_try = ?, failed_at = ?, attempts = attempts + 1
		WHERE record_id = ? AND format = ? AND state = 'shipped'`, "index: "+cause.Error(), unixNano(next), unixNano(now), r.RecordID, r.Format)
	return err
}

// indexLater asks for the index of a shipped row again at next, without
// counting an attempt (the fleet could not take it yet).
func (q *Queue) indexLater(ctx context.Context, r Row, next time.Time) error {
	_, err := q.exec(ctx, "index later", `UPDATE recordings SET next_try = ? WHERE record_id = ? AND format = ? AND state = 'shipped'`,
		unixNano(next), r.RecordID, r.Format)
	return err
}

// deletable returns confirmed rows shipped at or before cutoff whose local
// copy is still there; withIndex, only those the fleet has been told about
// (the local metadata.xml is what the index needs).
func (q *Queue) deletable(ctx context.Context, cutoff time.Time, withIndex bool) ([]Row, error) {
	states := `('shipped', 'indexed')`
	if withIndex {
		states = `('indexed')`
	}
	return q.query(ctx, `WHERE state IN `+states+` AND deleted_at = 0 AND shipped_at > 0 AND shipped_at <= ?`, cutoff.UnixNano())
}

func (q *Queue) markDeleted(ctx context.Context, r Row, freed int64, now time.Time) error {
	_, err := q.exec(ctx, "deleted", `UPDATE recordings SET deleted_at = ?, freed = ? WHERE record_id = ? AND format = ? AND fingerprint = ?`,
		now.UnixNano(), freed, r.RecordID, r.Format, r.Fingerprint)
	return err
}

// Retry makes every row of a recording that is failed, quarantined or
// waiting due now, with its attempts reset ("recordings retry ID" and
// "recordings ship ID"). It returns how many rows it touched.
func (q *Queue) Retry(ctx context.Context, recordID string) (int, error) {
	n, err := q.exec(ctx, "retry", `UPDATE recordings SET state = 'queued', attempts = 0, next_try = 0, fingerprint =
		CASE WHEN state = 'quarantined' THEN '' ELSE fingerprint END
		WHERE record_id = ? AND state IN ('queued', 'failed', 'quarantined')`, recordID)
	if err != nil {
		return 0, err
	}
	m, err := q.exec(ctx, "retry", `UPDATE recordings SET next_try = 0 WHERE record_id = ? AND state = 'shipped'`, recordID)
	return int(n + m), err
}

// counts returns the number of rows per state.
func (q *Queue) counts(ctx context.Context) (map[string]int, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT state, count(*) FROM recordings GROUP BY state`)
	if err != nil {
		return nil, fmt.Errorf("recordings queue: %w", err)
	}
	defer rows.Close()
	m := map[string]int{}
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			return nil, err
		}
		m[s] = n
	}
	return m, rows.Err()
}

// lastFailure is the most recent error of a row still failing, and when.
func (q *Queue) lastFailure(ctx context.Context) (Row, time.Time, bool, error) {
	var at int64
	rows, err := q.query(ctx, `WHERE last_error <> '' AND state IN ('failed', 'quarantined', 'shipped') ORDER BY failed_at DESC LIMIT 1`)
	if err != nil || len(rows) == 0 {
		return Row{}, time.Time{}, false, err
	}
	r := rows[0]
	err = q.db.QueryRowContext(ctx, `SELECT failed_at FROM recordings WHERE record_id = ? AND format = ?`, r.RecordID, r.Format).Scan(&at)
	return r, fromNano(at), err == nil, err
}

func (q *Queue) freed(ctx context.Context) (int64, error) {
	var n sql.NullInt64
	err := q.db.QueryRowContext(ctx, `SELECT sum(freed) FROM recordings`).Scan(&n)
	return n.Int64, err
}

// nextDue is the earliest next_try of a waiting row (zero if none).
func (q *Queue) nextDue(ctx context.Context, withIndex bool) (time.Time, error) {
	states := `('queued', 'failed')`
	if withIndex {
		states = `('queued', 'failed', 'shipped')`
	}
	var n sql.NullInt64
	err := q.db.QueryRowContext(ctx, `SELECT min(next_try) FROM recordings WHERE state IN `+states).Scan(&n)
	if err != nil {
		return time.Time{}, fmt.Errorf("recordings queue: %w", err)
	}
	if !n.Valid {
		return time.Time{}, nil
	}
	return time.Unix(0, n.Int64), nil
}
