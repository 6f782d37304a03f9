package store

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRecordingTokens(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, _ backend) {
		ctx := context.Background()
		now := time.UnixMilli(1_800_000_000_000)
		if err := s.IssueRecordingToken(ctx, "h1", "rec-1", "presentation", now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct{ hash, id, format string }{{"h1", "rec-2", "presentation"}, {"h1", "rec-1", "video"}, {"nope", "rec-1", "presentation"}} {
			if err := s.UseRecordingToken(ctx, c.hash, c.id, c.format, now); !errors.Is(err, ErrNotFound) {
				t.Errorf("%+v: %v, want ErrNotFound", c, err)
			}
		}
		// Of concurrent uses, one succeeds.
		var ok atomic.Int32
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				switch err := s.UseRecordingToken(ctx, "h1", "rec-1", "presentation", now); {
				case err == nil:
					ok.Add(1)
				case !errors.Is(err, ErrNotFound):
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if ok.Load() != 1 {
			t.Errorf("%d uses of a one-use token succeeded", ok.Load())
		}
		// Expiry, and pruning.
		if err := s.IssueRecordingToken(ctx, "h2", "rec-1", "presentation", now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := s.UseRecordingToken(ctx, "h2", "rec-1", "presentation", now.Add(time.Hour)); !errors.Is(err, ErrNotFound) {
			t.Errorf("an expired token: %v", err)
		}
		if err := s.PruneRecordingTokens(ctx, now.Add(2*time.Hour)); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := s.queryRow(ctx, s.db, `SELECT COUNT(*) FROM recording_tokens`).Scan(&n); err != nil || n != 0 {
			t.Errorf("after the prune: %d tokens, %v", n, err)
		}
	})
}
