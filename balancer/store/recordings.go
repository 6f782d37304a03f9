package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bbb-agent/bbb-agent/agentapi"
)

// Recording states, as BBB names them.
const (
	RecordingProcessing  = "processing"
	RecordingProcessed   = "processed"
	RecordingPublished   = "published"
	RecordingUnpublished = "unpublished"
	RecordingDeleted     = "deleted"
)

// Recording is one recording of the index: every format shipped for one
// record ID.
type Recording struct {
	RecordID          string
	MeetingID         string // the front-end's meeting ID
	InternalMeetingID string
	Name              string
	IsBreakout        bool
	State             string
	StartTime         int64 // Unix ms
	EndTime           int64 // Unix ms
	Participants      int
	RawSize           int64
	Size              int64 // the formats' sizes added up
	Protected         bool
	Meta              map[string]string
	Formats           []RecordingFormat // sorted by type
	Node              string            // the node that shipped it last
	CreatedAt         time.Time
	UpdatedAt         time.Time
}

// RecordingFormat is one shipped format and where its files are.
type RecordingFormat struct {
	agentapi.RecordingFormat
	Node      string    `json:"node,omitempty"`
	Storage   string    `json:"storage,omitempty"`
	Location  string    `json:"location,omitempty"`
	SHA256    string    `json:"sha256,omitempty"`
	ShippedAt time.Time `json:"shipped_at,omitzero"`
}

// Format returns the recording's format of that type.
func (r Recording) Format(typ string) (RecordingFormat, bool) {
	i := slices.IndexFunc(r.Formats, func(f RecordingFormat) bool { return f.Type == typ })
	if i < 0 {
		return RecordingFormat{}, false
	}
	return r.Formats[i], true
}

// StateOf maps a metadata.xml state to the index's: the video format's
// "available" is published.
func StateOf(m agentapi.RecordingMetadata) string {
	switch m.State {
	case RecordingUnpublished, RecordingDeleted, RecordingProcessing, RecordingProcessed:
		return m.State
	case RecordingPublished, "available":
		return RecordingPublished
	}
	if m.Published {
		return RecordingPublished
	}
	return RecordingUnpublished
}

const recordingColumns = `record_id, meeting_id, internal_meeting_id, name, is_breakout, state, start_time, end_time,
	participants, raw_size, size, protected, meta, formats, node, created_at, updated_at`

func scanRecording(sc scanner) (Recording, error) {
	var (
		r                    Recording
		breakout, protected  int64
		meta, formats        string
		createdAt, updatedAt int64
	)
	err := sc.Scan(&r.RecordID, &r.MeetingID, &r.InternalMeetingID, &r.Name, &breakout, &r.State, &r.StartTime, &r.EndTime,
		&r.Participants, &r.RawSize, &r.Size, &protected, &meta, &formats, &r.Node, &createdAt, &updatedAt)
	if err != nil {
		return Recording{}, err
	}
	r.IsBreakout, r.Protected = breakout != 0, protected != 0
	r.CreatedAt, r.UpdatedAt = fromMillis(createdAt), fromMillis(updatedAt)
	if err := json.Unmarshal([]byte(meta), &r.Meta); err != nil {
		return Recording{}, fmt.Errorf("recording %q: metadata: %w", r.RecordID, err)
	}
	if err := json.Unmarshal([]byte(formats), &r.Formats); err != nil {
		return Recording{}, fmt.Errorf("recording %q: formats: %w", r.RecordID, err)
	}
	return r, nil
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// UpsertRecording indexes one shipped format of a recording (the agent
// API's contract; the spool importer sends one call per format). A new
// recording is inserted whole. For a known one only the shipped formats are
// replaced: the state (an operator's publish or unpublish), the metadata
// (an operator's updateRecordings) and the other formats stay. A re-ship of
// content already indexed changes nothing. created says the recording is
// new; changed that the index changed.
func (s *Store) UpsertRecording(ctx context.Context, node string, m agentapi.RecordingMetadata, at time.Time) (created, changed bool, err error) {
	if m.RecordID == "" {
		return false, false, errors.New("store: upsert recording: empty record ID")
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		created, changed, err = s.upsertRecordingTx(ctx, tx, node, m, at)
		return err
	})
	if err != nil {
		return false, false, fmt.Errorf("store: upsert recording %q: %w", m.RecordID, err)
	}
	return created, changed, nil
}

func incomingFormats(node string, m agentapi.RecordingMetadata) []RecordingFormat {
	fs := make([]RecordingFormat, 0, len(m.Formats))
	for _, f := range m.Formats {
		fs = append(fs, RecordingFormat{RecordingFormat: f, Node: node, Storage: m.Storage, Location: m.Location,
			SHA256: m.SHA256, ShippedAt: m.ShippedAt.UTC()})
	}
	return fs
}

func (s *Store) upsertRecordingTx(ctx context.Context, tx *sql.Tx, node string, m agentapi.RecordingMetadata, at time.Time) (bool, bool, error) {
	now := millis(at)
	r := Recording{
		RecordID: m.RecordID, MeetingID: m.ExternalID, InternalMeetingID: m.MeetingID, Name: m.Name,
		IsBreakout: m.Breakout, State: StateOf(m), StartTime: m.StartTime.UnixMilli(), EndTime: m.EndTime.UnixMilli(),
		Participants: m.Participants, RawSize: m.RawSize, Meta: m.Meta, Formats: incomingFormats(node, m), Node: node,
	}
	if r.Meta == nil {
		r.Meta = map[string]string{}
	}
	if m.StartTime.IsZero() {
		r.StartTime = 0
	}
	if m.EndTime.IsZero() {
		r.EndTime = 0
	}
	sortFormats(r.Formats)
	r.Size = formatsSize(r.Formats)
	metaJSON, _ := json.Marshal(r.Meta)
	formatsJSON, _ := json.Marshal(r.Formats)
	res, err := tx.ExecContext(ctx, s.q(`INSERT INTO recordings (`+recordingColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?)
		ON CONFLICT (record_id) DO NOTHING`),
		r.RecordID, r.MeetingID, r.InternalMeetingID, r.Name, boolInt(r.IsBreakout), r.State, r.StartTime, r.EndTime,
		r.Participants, r.RawSize, r.Size, string(metaJSON), string(formatsJSON), node, now, now)
	if err != nil {
		return false, false, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return false, false, err
	} else if n == 1 {
		return true, true, s.writeMetaTx(ctx, tx, r.RecordID, r.Meta)
	}

	lock := ""
	if s.dialect == postgresDialect {
		lock = " FOR UPDATE"
	}
	old, err := scanRecording(tx.QueryRowContext(ctx, s.q(`SELECT `+recordingColumns+` FROM recordings WHERE record_id = ?`+lock), m.RecordID))
	if err != nil {
		return false, false, err
	}
	formats := slices.Clone(old.Formats)
	for _, f := range r.Formats {
		i := slices.IndexFunc(formats, func(o RecordingFormat) bool { return o.Type == f.Type })
		switch {
		case i < 0:
			formats = append(formats, f)
		case sameShipment(formats[i], f):
		case f.ShippedAt.Before(formats[i].ShippedAt):
			// An older shipment arriving late never replaces a newer one.
		default:
			formats[i] = f
		}
	}
	sortFormats(formats)
	if slices.EqualFunc(formats, old.Formats, sameShipment) {
		return false, false, nil
	}
	formatsJSON, _ = json.Marshal(formats)
	_, err = tx.ExecContext(ctx, s.q(`UPDATE recordings SET formats = ?, size = ?, raw_size = ?, node = ?, updated_at = ?
		WHERE record_id = ?`), string(formatsJSON), formatsSize(formats), max(old.RawSize, r.RawSize), node, now, m.RecordID)
	return false, err == nil, err
}

// sameShipment says two formats are the same content from the same place.
func sameShipment(a, b RecordingFormat) bool {
	aj, _ := json.Marshal(a)
	bj, _ := json.Marshal(b)
	return string(aj) == string(bj)
}

func sortFormats(fs []RecordingFormat) {
	slices.SortFunc(fs, func(a, b RecordingFormat) int { return strings.Compare(a.Type, b.Type) })
}

func formatsSize(fs []RecordingFormat) int64 {
	var n int64
	for _, f := range fs {
		n += f.Size
	}
	return n
}

// writeMetaTx replaces the filter rows of a recording's metadata.
func (s *Store) writeMetaTx(ctx context.Context, tx *sql.Tx, recordID string, meta map[string]string) error {
	if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM recording_meta WHERE record_id = ?`), recordID); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, k := range slices.Sorted(maps.Keys(meta)) {
		lk := strings.ToLower(k)
		if seen[lk] {
			continue
		}
		seen[lk] = true
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO recording_meta (record_id, key, value) VALUES (?, ?, ?)`),
			recordID, lk, meta[k]); err != nil {
			return err
		}
	}
	return nil
}

// inTx runs f in a write transaction and commits it.
func (s *Store) inTx(ctx context.Context, f func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil) // SQLite: BEGIN IMMEDIATE
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := f(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// Recording returns one recording of the index.
func (s *Store) Recording(ctx context.Context, recordID string) (Recording, error) {
	r, err := scanRecording(s.queryRow(ctx, s.rdb, `SELECT `+recordingColumns+` FROM recordings WHERE record_id = ?`, recordID))
	if err != nil {
		return Recording{}, fmt.Errorf("store: recording %q: %w", recordID, notFound(err))
	}
	return r, nil
}

// MetaFilter is one meta_ filter of getRecordings: the key (compared
// without case) and the value, exact or with a % wildcard at its start,
// its end or both.
type MetaFilter struct {
	Key, Value string
}

// RecordingQuery is a getRecordings query, BBB 2.6's rules.
type RecordingQuery struct {
	// RecordIDs are prefixes of record IDs; when given, MeetingIDs are
	// ignored, as bbb-web does.
	RecordIDs  []string
	MeetingIDs []string
	// States are the wanted states; nil means any.
	States []string
	// Meta filters are ANDed.
	Meta []MetaFilter
	// Offset and Limit page the answer; Limit 0 means no limit.
	Offset, Limit int
}

// Recordings answers a query, newest first (start time, then record ID,
// both descending), and the number of recordings that match without
// paging.
func (s *Store) Recordings(ctx context.Context, q RecordingQuery) ([]Recording, int, error) {
	where, args := s.recordingWhere(q)
	var total int
	if err := s.rdb.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM recordings r`+where), args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("store: count recordings: %w", err)
	}
	if total == 0 || q.Offset >= total {
		return nil, total, nil
	}
	query := `SELECT ` + recordingColumns + ` FROM recordings r` + where + ` ORDER BY start_time DESC, record_id DESC`
	if q.Limit > 0 {
		query += ` LIMIT ? OFFSET ?`
		args = append(args, q.Limit, q.Offset)
	} else if q.Offset > 0 {
		query += ` LIMIT ? OFFSET ?`
		args = append(args, total, q.Offset)
	}
	rows, err := s.rdb.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, 0, fmt.Errorf("store: list recordings: %w", err)
	}
	defer rows.Close()
	var out []Recording
	for rows.Next() {
		r, err := scanRecording(rows)
		if err != nil {
			return nil, 0, fmt.Errorf("store: list recordings: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("store: list recordings: %w", err)
	}
	return out, total, nil
}

// recordingWhere builds the WHERE clause of a query. Lists travel as one
// JSON parameter each.
func (s *Store) recordingWhere(q RecordingQuery) (string, []any) {
	var (
		conds []string
		args  []any
	)
	list := func(v []string) string {
		b, _ := json.Marshal(v)
		return string(b)
	}
	switch {
	case len(q.RecordIDs) > 0:
		conds = append(conds, `EXISTS (SELECT 1 FROM `+s.jsonElements(true)+` p
			WHERE substr(r.record_id, 1, length(p.value)) = p.value)`)
		args = append(args, list(q.RecordIDs))
	case len(q.MeetingIDs) > 0:
		conds = append(conds, `r.meeting_id IN (SELECT value FROM `+s.jsonElements(true)+`)`)
		args = append(args, list(q.MeetingIDs))
	}
	if q.States != nil {
		// A literal list of the known states (at most five): the planners
		// then use the (state, start_time) index and its order.
		var marks []string
		for _, st := range []string{RecordingProcessing, RecordingProcessed, RecordingPublished, RecordingUnpublished, RecordingDeleted} {
			if slices.Contains(q.States, st) {
				marks = append(marks, "?")
				args = append(args, st)
			}
		}
		if len(marks) == 0 {
			conds = append(conds, `1 = 0`)
		} else {
			conds = append(conds, `r.state IN (`+strings.Join(marks, ", ")+`)`)
		}
	}
	// The first exact filter drives the query through the (key, value)
	// index; the others are probes by primary key.
	driver := slices.IndexFunc(q.Meta, func(f MetaFilter) bool { return !strings.Contains(f.Value, "%") })
	for i, f := range q.Meta {
		match, margs := s.metaMatch(f.Value)
		if i == driver {
			conds = append(conds, `r.record_id IN (SELECT m.record_id FROM recording_meta m WHERE m.key = ? AND `+match+`)`)
		} else {
			conds = append(conds, `EXISTS (SELECT 1 FROM recording_meta m WHERE m.record_id = r.record_id AND m.key = ? AND `+match+`)`)
		}
		args = append(append(args, strings.ToLower(f.Key)), margs...)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// metaMatch is the condition on m.value for a filter value: % at the start
// means "ends with", at the end "starts with", at both "contains".
// Comparisons are case-sensitive in both dialects.
func (s *Store) metaMatch(v string) (string, []any) {
	prefix := strings.HasPrefix(v, "%")
	suffix := len(v) > 1 && strings.HasSuffix(v, "%")
	core := v
	if prefix {
		core = core[1:]
	}
	if suffix {
		core = core[:len(core)-1]
	}
	n := utf8.RuneCountInString(core)
	switch {
	case prefix && suffix:
		if s.dialect == postgresDialect {
			return `strpos(m.value, ?) > 0`, []any{core}
		}
		return `instr(m.value, ?) > 0`, []any{core}
	case prefix:
		return `length(m.value) >= ? AND substr(m.value, length(m.value) - ? + 1) = ?`, []any{n, n, core}
	case suffix:
		return `substr(m.value, 1, ?) = ?`, []any{n, core}
	}
	return `m.value = ?`, []any{v}
}

// SetRecordingState moves recordings to a state (publish, unpublish,
// delete) and returns the ones found as they were before. Deleted
// recordings are left alone unless the new state is deleted too.
func (s *Store) SetRecordingState(ctx context.Context, recordIDs []string, state string, at time.Time) ([]Recording, error) {
	var before []Recording
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		before = before[:0]
		for _, id := range recordIDs {
			r, err := s.lockRecordingTx(ctx, tx, id)
			if errors.Is(err, ErrNotFound) || err == nil && r.State == RecordingDeleted && state != RecordingDeleted {
				continue
			}
			if err != nil {
				return err
			}
			before = append(before, r)
			if r.State == state {
				continue
			}
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE recordings SET state = ?, updated_at = ? WHERE record_id = ?`),
				state, millis(at), id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: set recordings %v %s: %w", recordIDs, state, err)
	}
	return before, nil
}

func (s *Store) lockRecordingTx(ctx context.Context, tx *sql.Tx, id string) (Recording, error) {
	lock := ""
	if s.dialect == postgresDialect {
		lock = " FOR UPDATE"
	}
	r, err := scanRecording(tx.QueryRowContext(ctx, s.q(`SELECT `+recordingColumns+` FROM recordings WHERE record_id = ?`+lock), id))
	return r, notFound(err)
}

// UpdateRecordingMeta sets metadata entries on recordings that are not
// deleted; an empty value deletes the key (keys compare without case). It
// returns how many recordings it found.
func (s *Store) UpdateRecordingMeta(ctx context.Context, recordIDs []string, updates []MetaFilter, at time.Time) (int, error) {
	found := 0
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		found = 0
		for _, id := range recordIDs {
			r, err := s.lockRecordingTx(ctx, tx, id)
			if errors.Is(err, ErrNotFound) || err == nil && r.State == RecordingDeleted {
				continue
			}
			if err != nil {
				return err
			}
			found++
			meta := maps.Clone(r.Meta)
			if meta == nil {
				meta = map[string]string{}
			}
			for _, u := range updates {
				for k := range meta {
					if strings.EqualFold(k, u.Key) {
						delete(meta, k)
					}
				}
				if u.Value != "" {
					meta[u.Key] = u.Value
				}
			}
			b, _ := json.Marshal(meta)
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE recordings SET meta = ?, updated_at = ? WHERE record_id = ?`),
				string(b), millis(at), id); err != nil {
				return err
			}
			if err := s.writeMetaTx(ctx, tx, id, meta); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: update recordings %v: %w", recordIDs, err)
	}
	return found, nil
}

// SetRecordingProtected sets or clears a recording's protection.
func (s *Store) SetRecordingProtected(ctx context.Context, recordID string, protected bool, at time.Time) error {
	_, err := s.exec(ctx, s.db, `UPDATE recordings SET protected = ?, updated_at = ? WHERE record_id = ?`,
		boolInt(protected), millis(at), recordID)
	if err != nil {
		return fmt.Errorf("store: protect recording %q: %w", recordID, err)
	}
	return nil
}

// RecordingStats counts the indexed recordings that are not deleted and
// their bytes.
func (s *Store) RecordingStats(ctx context.Context) (count int, bytes int64, err error) {
	err = s.queryRow(ctx, s.rdb, `SELECT COUNT(*), COALESCE(SUM(size), 0) FROM recordings WHERE state <> 'deleted'`).Scan(&count, &bytes)
	if err != nil {
		return 0, 0, fmt.Errorf("store: count recordings: %w", err)
	}
	return count, bytes, nil
}

// ExpiredRecordings lists up to limit recordings, not deleted, that ended
// before before.
func (s *Store) ExpiredRecordings(ctx context.Context, before time.Time, limit int) ([]string, error) {
	rows, err := s.query(ctx, s.rdb, `SELECT record_id FROM recordings
		WHERE state <> 'deleted' AND end_time > 0 AND end_time < ? ORDER BY end_time LIMIT ?`, millis(before), limit)
	if err != nil {
		return nil, fmt.Errorf("store: expired recordings: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("store: expired recordings: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: expired recordings: %w", err)
	}
	return ids, nil
}
