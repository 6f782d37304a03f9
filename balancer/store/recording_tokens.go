package store

import (
	"context"
	"fmt"
	"time"
)

// PruneRecordingTokens forgets the one-use tokens that expired before now.
func (s *Store) PruneRecordingTokens(ctx context.Context, now time.Time) error {
	if _, err := s.exec(ctx, s.db, `DELETE FROM recording_tokens WHERE expires_at < ?`, millis(now)); err != nil {
		return fmt.Errorf("store: prune recording tokens: %w", err)
	}
	return nil
}

// IssueRecordingToken remembers a one-use playback link's token (by its
// hash) for one format of a recording until expires.
func (s *Store) IssueRecordingToken(ctx context.Context, tokenHash, recordID, format string, expires time.Time) error {
	_, err := s.exec(ctx, s.db, `INSERT INTO recording_tokens (token_hash, record_id, format, expires_at) VALUES (?, ?, ?, ?)`,
		tokenHash, recordID, format, millis(expires))
	if err != nil {
		return fmt.Errorf("store: issue a recording token for %q: %w", recordID, err)
	}
	return nil
}

// UseRecordingToken spends a one-use token for one format of a recording:
// it succeeds once, before the token expires; a second use, an expired or
// unknown token, or one for another recording or format is ErrNotFound.
func (s *Store) UseRecordingToken(ctx context.Context, tokenHash, recordID, format string, now time.Time) error {
	res, err := s.exec(ctx, s.db, `UPDATE recording_tokens SET used_at = ?
		WHERE token_hash = ? AND record_id = ? AND format = ? AND used_at = 0 AND expires_at > ?`,
		millis(now), tokenHash, recordID, format, millis(now))
	if err != nil {
		return fmt.Errorf("store: use a recording token for %q: %w", recordID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("store: use a recording token for %q: %w", recordID, err)
	}
	if n != 1 {
		return ErrNotFound
	}
	return nil
}
