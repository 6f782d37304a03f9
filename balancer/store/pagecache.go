package store

import (
	"modernc.org/sqlite"
	"modernc.org/sqlite/pcache"
)

// pageCacheErr is why SQLite kept its own page cache, nil when every
// connection of this process has a page cache of its own (pcache).
//
// modernc builds SQLite with SQLITE_ENABLE_MEMORY_MANAGEMENT, which makes
// its page cache one pool for the whole process: a page a reading
// connection needs evicts the least recently used page of any connection.
// The writer's pages (the nodes table, rewritten by every flush) are the
// least recently used as soon as a reader reads much (one whole-fleet
// refresh is enough), so every later flush read them back from the file:
// measured at 10,000 nodes, a flush of 2,000 reports took 46-115 ms in a
// balancer against 33 ms in a store alone. With a cache per connection it
// takes 37-38 ms in both, and each page takes its own size instead of an
// 8 KiB allocation.
//
// SQLite takes a page cache only before its first connection, so this runs
// at init. If it fails, SQLite's own cache works as before, only slower.
var pageCacheErr = sqlite.RegisterPageCache(pcache.New())

// PageCacheErr says why the store's SQLite connections share SQLite's
// process-wide page cache (slower flushes at thousands of nodes); nil when
// each has its own, and on PostgreSQL.
func (s *Store) PageCacheErr() error {
	if s.dialect != sqliteDialect {
		return nil
	}
	return pageCacheErr
}
