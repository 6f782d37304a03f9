package store

import "testing"

// TestPageCacheRegistered: every connection has a page cache of its own
// (pagecache.go); SQLite's process-wide one made readers evict the writer's
// pages.
func TestPageCacheRegistered(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, b backend) {
		if err := s.PageCacheErr(); err != nil {
			t.Fatalf("SQLite kept its process-wide page cache: %v", err)
		}
	})
}
