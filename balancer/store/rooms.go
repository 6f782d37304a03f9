package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"
)

// Room is a meeting opened through links rather than a front-end: one link
// for moderators, one for participants. Only the hashes of the links'
// tokens are stored.
type Room struct {
	ID               string
	Name             string
	MeetingID        string
	ModeratorHash    string
	ViewerHash       string
	Record           bool
	MaxParticipants  int
	WaitForModerator bool
	CreatedAt        time.Time
}

// TokenHash is how a room link's token is stored: SHA-256 in hex. The
// tokens are 256 random bits, so no slow hash is needed.
func TokenHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

const roomColumns = `id, name, meeting_id, moderator_hash, viewer_hash, record, max_participants, wait_for_moderator, created_at`

func scanRoom(sc scanner) (Room, error) {
	var r Room
	var record, wait, created int64
	var maxp int64
	if err := sc.Scan(&r.ID, &r.Name, &r.MeetingID, &r.ModeratorHash, &r.ViewerHash, &record, &maxp, &wait, &created); err != nil {
		return Room{}, err
	}
	r.Record, r.WaitForModerator, r.MaxParticipants, r.CreatedAt = record != 0, wait != 0, int(maxp), fromMillis(created)
	return r, nil
}

// CreateRoom stores a new room; an empty ID or MeetingID is generated.
func (s *Store) CreateRoom(ctx context.Context, r Room) (Room, error) {
	if r.ID == "" {
		r.ID = newID()
	}
	if r.MeetingID == "" {
		r.MeetingID = "room-" + r.ID
	}
	if r.ModeratorHash == "" || r.ViewerHash == "" || r.ModeratorHash == r.ViewerHash {
		return Room{}, fmt.Errorf("store: create room %q: the two link hashes must be set and differ", r.Name)
	}
	_, err := s.exec(ctx, s.db, `INSERT INTO rooms (`+roomColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.Name, r.MeetingID, r.ModeratorHash, r.ViewerHash, boolInt(r.Record), int64(r.MaxParticipants),
		boolInt(r.WaitForModerator), millis(r.CreatedAt))
	if err != nil {
		return Room{}, fmt.Errorf("store: create room %q: %w", r.Name, err)
	}
	return r, nil
}

// Rooms lists the rooms, oldest first.
func (s *Store) Rooms(ctx context.Context) ([]Room, error) {
	rows, err := s.query(ctx, s.rdb, `SELECT `+roomColumns+` FROM rooms ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("store: list rooms: %w", err)
	}
	defer rows.Close()
	var out []Room
	for rows.Next() {
		r, err := scanRoom(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list rooms: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list rooms: %w", err)
	}
	return out, nil
}

// Room returns a room by ID.
func (s *Store) Room(ctx context.Context, id string) (Room, error) {
	r, err := scanRoom(s.queryRow(ctx, s.db, `SELECT `+roomColumns+` FROM rooms WHERE id = ?`, id))
	if err != nil {
		return Room{}, fmt.Errorf("store: room %q: %w", id, notFound(err))
	}
	return r, nil
}

// RoomByToken finds the room a link's token opens and says whether it is
// the moderator link. ErrNotFound for an unknown (or rotated) token.
func (s *Store) RoomByToken(ctx context.Context, token string) (Room, bool, error) {
	h := TokenHash(token)
	r, err := scanRoom(s.queryRow(ctx, s.db, `SELECT `+roomColumns+` FROM rooms WHERE moderator_hash = ? OR viewer_hash = ?`, h, h))
	if err != nil {
		return Room{}, false, fmt.Errorf("store: room by link: %w", notFound(err))
	}
	return r, r.ModeratorHash == h, nil
}

// SetRoomHashes replaces a room's link hashes (rotation: the old links stop working).
func (s *Store) SetRoomHashes(ctx context.Context, id, moderatorHash, viewerHash string) (Room, error) {
	r, err := scanRoom(s.queryRow(ctx, s.db, `UPDATE rooms SET moderator_hash = ?, viewer_hash = ? WHERE id = ? RETURNING `+roomColumns,
		moderatorHash, viewerHash, id))
	if err != nil {
		return Room{}, fmt.Errorf("store: rotate room %q links: %w", id, notFound(err))
	}
	return r, nil
}

// DeleteRoom deletes a room; its links stop working. A meeting it started
// runs on until it ends.
func (s *Store) DeleteRoom(ctx context.Context, id string) error {
	res, err := s.exec(ctx, s.db, `DELETE FROM rooms WHERE id = ?`, id)
	if err == nil {
		var n int64
		if n, err = res.RowsAffected(); err == nil && n == 0 {
			err = ErrNotFound
		}
	}
	if err != nil {
		return fmt.Errorf("store: delete room %q: %w", id, err)
	}
	return nil
}
