package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/bbb-agent/bbb-agent/balancer/records"
)

const meetingColumns = `meeting_id, node_id, placed_at`

func scanMeeting(sc scanner) (records.Meeting, error) {
	var (
		m        records.Meeting
		placedAt int64
	)
	if err := sc.Scan(&m.MeetingID, &m.NodeID, &placedAt); err != nil {
		return records.Meeting{}, err
	}
	m.PlacedAt = fromMillis(placedAt)
	return m, nil
}

// claimAttempts bounds ClaimMeeting's cheap attempts: an insert that does
// nothing on a conflict, then a read of the placement it lost to. Each
// fails only when that placement is deleted between the two statements
// (its meeting ended and the node forgot it); the last attempt cannot fail
// that way (claimLocking).
const claimAttempts = 3

// claimRaced, when set (tests), runs with "lost" after a claim's insert
// lost to a placement and before the claim reads it, and with "vanished"
// after that read found none.
var claimRaced func(stage string)

// ClaimMeeting places the meeting on m.NodeID at m.PlacedAt unless it is
// placed already, and returns the placement as it stands and whether this
// call made it. Of concurrent claims for one meeting, from any number of
// processes, exactly one wins and all return its placement. An unknown node
// is ErrNotFound.
func (s *Store) ClaimMeeting(ctx context.Context, m records.Meeting) (records.Meeting, bool, error) {
	if m.MeetingID == "" {
		return records.Meeting{}, false, errors.New("store: claim meeting: empty meeting ID")
	}
	for range claimAttempts - 1 {
		// INSERT ... SELECT inserts nothing for an unknown node, where a
		// plain INSERT would fail on the foreign key.
		got, err := scanMeeting(s.queryRow(ctx, s.db, `INSERT INTO meetings (`+meetingColumns+`)
			SELECT CAST(? AS TEXT), id, CAST(? AS BIGINT) FROM nodes WHERE id = ?
			ON CONFLICT (meeting_id) DO NOTHING
			RETURNING `+meetingColumns, m.MeetingID, millis(m.PlacedAt), m.NodeID))
		if err == nil {
			return got, true, nil
		}
		if err = notFound(err); !errors.Is(err, ErrNotFound) {
			return records.Meeting{}, false, fmt.Errorf("store: claim meeting %q: %w", m.MeetingID, err)
		}
		if claimRaced != nil {
			claimRaced("lost")
		}
		got, err = s.meeting(ctx, m.MeetingID)
		if err == nil {
			return got, false, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return records.Meeting{}, false, fmt.Errorf("store: claim meeting %q: %w", m.MeetingID, err)
		}
		// Neither inserted nor there: the node is unknown, or the winning
		// placement was deleted in between.
		if claimRaced != nil {
			claimRaced("vanished")
		}
		if err := s.nodeExists(ctx, m.NodeID); err != nil {
			return records.Meeting{}, false, fmt.Errorf("store: claim meeting %q: node %q: %w", m.MeetingID, m.NodeID, err)
		}
	}
	return s.claimLocking(ctx, m)
}

// claimLocking is ClaimMeeting's last attempt, when meetings of this ID
// keep being placed and deleted around it (many creates and ends of one
// meeting at once): one statement that inserts the placement or, on a
// conflict, takes the row as it stands, locked, by updating it to itself.
// It always answers, but writes a row version on a lost claim, which the
// cheap attempts do not. A placement equal to m (same node, same
// millisecond) counts as made by this call: either way the meeting is
// placed as this call would have placed it.
func (s *Store) claimLocking(ctx context.Context, m records.Meeting) (records.Meeting, bool, error) {
	got, err := scanMeeting(s.queryRow(ctx, s.db, `INSERT INTO meetings (`+meetingColumns+`)
		SELECT CAST(? AS TEXT), id, CAST(? AS BIGINT) FROM nodes WHERE id = ?
		ON CONFLICT (meeting_id) DO UPDATE SET placed_at = meetings.placed_at
		RETURNING `+meetingColumns, m.MeetingID, millis(m.PlacedAt), m.NodeID))
	if err = notFound(err); err != nil {
		if errors.Is(err, ErrNotFound) { // no such node: the select gave no row
			err = fmt.Errorf("node %q: %w", m.NodeID, err)
		}
		return records.Meeting{}, false, fmt.Errorf("store: claim meeting %q: %w", m.MeetingID, err)
	}
	return got, got.NodeID == m.NodeID && millis(got.PlacedAt) == millis(m.PlacedAt), nil
}

// MoveMeeting places the meeting on toNodeID at at if it is on fromNodeID
// (compare-and-swap), and returns the placement as it then stands: concurrent
// movers all return the one move that happened. A meeting without placement,
// or an unknown toNodeID, is ErrNotFound.
func (s *Store) MoveMeeting(ctx context.Context, meetingID, fromNodeID, toNodeID string, at time.Time) (records.Meeting, error) {
	got, err := scanMeeting(s.queryRow(ctx, s.db, `UPDATE meetings SET node_id = ?, placed_at = ?
		WHERE meeting_id = ? AND node_id = ? AND EXISTS (SELECT 1 FROM nodes WHERE id = ?)
		RETURNING `+meetingColumns, toNodeID, millis(at), meetingID, fromNodeID, toNodeID))
	if err = notFound(err); errors.Is(err, ErrNotFound) {
		got, err = s.meeting(ctx, meetingID)
		if err == nil && got.NodeID == fromNodeID && fromNodeID != toNodeID {
			err = fmt.Errorf("node %q: %w", toNodeID, ErrNotFound)
		}
	}
	if err != nil {
		return records.Meeting{}, fmt.Errorf("store: move meeting %q from node %q to %q: %w", meetingID, fromNodeID, toNodeID, err)
	}
	return got, nil
}

// Meeting returns the meeting's placement.
func (s *Store) Meeting(ctx context.Context, meetingID string) (records.Meeting, error) {
	m, err := scanMeeting(s.queryRow(ctx, s.rdb, `SELECT `+meetingColumns+` FROM meetings WHERE meeting_id = ?`, meetingID))
	if err != nil {
		return records.Meeting{}, fmt.Errorf("store: meeting %q: %w", meetingID, notFound(err))
	}
	return m, nil
}

// meeting reads a placement through the writer, so that it sees the write
// that just lost a race.
func (s *Store) meeting(ctx context.Context, meetingID string) (records.Meeting, error) {
	m, err := scanMeeting(s.queryRow(ctx, s.db, `SELECT `+meetingColumns+` FROM meetings WHERE meeting_id = ?`, meetingID))
	return m, notFound(err)
}

// DeleteMeeting deletes the meeting's placement if it is on nodeID. A
// placement that is gone or elsewhere is no error.
func (s *Store) DeleteMeeting(ctx context.Context, meetingID, nodeID string) error {
	_, err := s.exec(ctx, s.db, `DELETE FROM meetings WHERE meeting_id = ? AND node_id = ?`, meetingID, nodeID)
	if err != nil {
		return fmt.Errorf("store: delete meeting %q on node %q: %w", meetingID, nodeID, err)
	}
	return nil
}

// PruneMeetings deletes the placements on nodeID placed before placedBefore
// whose meeting is not in keep (the meetings a poll or report found running),
// and returns how many it deleted. Newer placements stay: the node may not
// have seen their create yet.
//
// Most prunings find nothing to delete (a node's reports repeat its set), so
// the placements are read first, on a reading connection, and only the stale
// ones are deleted: no write transaction when there are none. The delete
// repeats the node and age conditions, so a placement made between the read
// and the delete (a meeting re-placed on this or another node) stays.
func (s *Store) PruneMeetings(ctx context.Context, nodeID string, keep []string, placedBefore time.Time) (int, error) {
	stale, err := s.stalePlacements(ctx, nodeID, keep, placedBefore)
	if err != nil || len(stale) == 0 {
		return 0, err
	}
	ids, err := json.Marshal(stale)
	if err != nil {
		return 0, fmt.Errorf("store: prune meetings on node %q: %w", nodeID, err)
	}
	res, err := s.exec(ctx, s.db, `DELETE FROM meetings
		WHERE node_id = ? AND placed_at < ?
		AND meeting_id IN (SELECT value FROM `+s.jsonElements(true)+`)`, nodeID, millis(placedBefore), string(ids))
	var n int64
	if err == nil {
		n, err = res.RowsAffected()
	}
	if err != nil {
		return 0, fmt.Errorf("store: prune meetings on node %q: %w", nodeID, err)
	}
	return int(n), nil
}

// stalePlacements are the meetings placed on nodeID before placedBefore
// that are not in keep.
func (s *Store) stalePlacements(ctx context.Context, nodeID string, keep []string, placedBefore time.Time) ([]string, error) {
	rows, err := s.query(ctx, s.rdb, `SELECT meeting_id FROM meetings WHERE node_id = ? AND placed_at < ?`, nodeID, millis(placedBefore))
	if err != nil {
		return nil, fmt.Errorf("store: prune meetings on node %q: %w", nodeID, err)
	}
	defer rows.Close()
	var placed []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("store: prune meetings on node %q: %w", nodeID, err)
		}
		placed = append(placed, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: prune meetings on node %q: %w", nodeID, err)
	}
	if len(placed) == 0 {
		return nil, nil
	}
	running := make(map[string]struct{}, len(keep))
	for _, id := range keep {
		running[id] = struct{}{}
	}
	var stale []string
	for _, id := range placed {
		if _, ok := running[id]; !ok {
			stale = append(stale, id)
		}
	}
	return stale, nil
}

// NodeMeetings counts the placements on a node.
func (s *Store) NodeMeetings(ctx context.Context, nodeID string) (int, error) {
	var n int
	if err := s.queryRow(ctx, s.rdb, `SELECT COUNT(*) FROM meetings WHERE node_id = ?`, nodeID).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count meetings on node %q: %w", nodeID, err)
	}
	return n, nil
}

// PlacedSince counts, per node ID, the placements newer than the node's
// LastReportAt and than since: meetings that no report reflects yet. Nodes
// without such placements are absent. since bounds the read to the newest
// placements (an index range, where all of them would be read otherwise):
// the balancer passes the oldest report time an online node can have, as
// only online nodes take meetings.
func (s *Store) PlacedSince(ctx context.Context, since time.Time) (map[string]int, error) {
	// SQLite would rather walk all of meetings_node_placed for the GROUP BY
	// than read the range of meetings_placed: it is told which index to use.
	meetings := "meetings m"
	if s.dialect == sqliteDialect {
		meetings += " INDEXED BY meetings_placed"
	}
	rows, err := s.query(ctx, s.rdb, `SELECT m.node_id, COUNT(*) FROM `+meetings+`
		JOIN `+s.reportRows()+` n ON n.id = m.node_id
		WHERE m.placed_at > ? AND m.placed_at > n.last_report_at
		GROUP BY m.node_id`, millis(since))
	if err != nil {
		return nil, fmt.Errorf("store: count placements since reports: %w", err)
	}
	defer rows.Close()
	placed := make(map[string]int)
	for rows.Next() {
		var (
			id string
			n  int
		)
		if err := rows.Scan(&id, &n); err != nil {
			return nil, fmt.Errorf("store: count placements since reports: %w", err)
		}
		placed[id] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: count placements since reports: %w", err)
	}
	return placed, nil
}

// NewestPlacements gives, for each node holding placements, when the
// newest of them was made (claimed or moved).
func (s *Store) NewestPlacements(ctx context.Context) (map[string]time.Time, error) {
	rows, err := s.query(ctx, s.rdb, `SELECT node_id, MAX(placed_at) FROM meetings GROUP BY node_id`)
	if err != nil {
		return nil, fmt.Errorf("store: newest placements: %w", err)
	}
	defer rows.Close()
	out := make(map[string]time.Time)
	for rows.Next() {
		var (
			id string
			at int64
		)
		if err := rows.Scan(&id, &at); err != nil {
			return nil, fmt.Errorf("store: newest placements: %w", err)
		}
		out[id] = fromMillis(at)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: newest placements: %w", err)
	}
	return out, nil
}

// MeetingsPlacedSince lists the placements made (claimed or moved) at or
// after since: what other replicas changed since a cache last looked.
func (s *Store) MeetingsPlacedSince(ctx context.Context, since time.Time) ([]records.Meeting, error) {
	rows, err := s.query(ctx, s.rdb, `SELECT `+meetingColumns+` FROM meetings WHERE placed_at >= ?`, millis(since))
	if err != nil {
		return nil, fmt.Errorf("store: meetings placed since %s: %w", since.Format(time.RFC3339), err)
	}
	defer rows.Close()
	var out []records.Meeting
	for rows.Next() {
		m, err := scanMeeting(rows)
		if err != nil {
			return nil, fmt.Errorf("store: meetings placed since %s: %w", since.Format(time.RFC3339), err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: meetings placed since %s: %w", since.Format(time.RFC3339), err)
	}
	return out, nil
}
