package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	// Database drivers, registered as "pgx" and "sqlite".
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"
)

// Errors that callers check with errors.Is.
var (
	// ErrNotFound: no such node or meeting placement.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the change clashes with another record, e.g. a node URL
	// already registered under another name.
	ErrConflict = errors.New("conflict")
)

// The dialects, as Dialect reports them.
const (
	sqliteDialect   = "sqlite"
	postgresDialect = "postgres"
)

// SQLite settings.
const (
	sqliteFile        = "balancer.db" // under the data directory
	sqliteBusyTimeout = 5 * time.Second
	// sqliteWriterCacheKiB is the writing connection's page cache (SQLite's
	// default is 2,000 KiB). At 10,000 nodes, with their loads in the
	// stored array format (appendLoad), the pages a flush touches
	// (node_reports and its index on reported) are about 1.9 MiB; a flush
	// ran as fast with 3 MiB as with 6 (and a fifth slower with 2). Each
	// connection's cache is its own (pagecache.go), a page in a 4 KiB
	// allocation and its header in another.
	sqliteWriterCacheKiB = 3 << 10
	// sqliteReaderCacheKiB is each reading connection's page cache; the
	// readers' queries are short, and the OS caches the file.
	sqliteReaderCacheKiB = 512
	// sqliteCheckpointPages is the WAL's size, in pages, that starts a
	// checkpoint (SQLite's default is 1,000 pages).
	sqliteCheckpointPages = 10_000
	// sqliteWriterLifetime and sqliteReaderIdle bound what a connection
	// keeps of the pages its cache let go. modernc's page cache binding
	// keeps its bookkeeping of every page the cache evicted (some 150
	// bytes of Go heap each) until the connection asks for that page again
	// or closes. A reader's goes when another connection's write makes
	// SQLite drop its cache, so only an idle reader keeps it; the writer's
	// grows to every page it ever wrote, the whole database in time (6 MB
	// of heap at 40,000 pages), and each commit walks it. Closing the
	// connections bounds both; a new one costs an open and a cold cache.
	sqliteWriterLifetime = 10 * time.Minute
	sqliteReaderIdle     = time.Minute
)

// postgresMaxConns bounds one replica's connections; several replicas share
// the server's max_connections (100 by default).
const postgresMaxConns = 16

// Store is the balancer's database. It is safe for concurrent use.
type Store struct {
	dialect string
	// db runs the writes, and the reads that must see the latest write
	// (the answers of ClaimMeeting and MoveMeeting). On SQLite it is one
	// connection, so this process's writers queue in Go instead of
	// contending for the database lock.
	db *sql.DB
	// rdb runs plain reads: on SQLite a pool of read-only connections that
	// WAL lets run beside the writer; on PostgreSQL the same pool as db.
	rdb *sql.DB
	// stmts holds SQLite's prepared statements by stmtKey (see queryRow).
	stmts sync.Map
}

// stmtKey names a prepared statement: its pool and its query.
type stmtKey struct {
	db    *sql.DB
	query string
}

// Open opens the database named by dsn and migrates it to this binary's
// schema. dsn is a postgres:// or postgresql:// URL for PostgreSQL, or
// sqlite:PATH or a plain file path for SQLite (the parent directory is
// created).
func Open(ctx context.Context, dsn string) (*Store, error) {
	dialect, target, err := parseDSN(dsn)
	if err != nil {
		return nil, err
	}
	var s *Store
	switch dialect {
	case postgresDialect:
		s = openPostgres(target)
	default:
		s, err = openSQLite(ctx, target)
		if err != nil {
			return nil, err
		}
	}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// DefaultDataDir is where the embedded database lives unless configured.
const DefaultDataDir = "/var/lib/bbb-balancer"

// OpenDataDir opens (creating it if need be) the SQLite database in dir.
func OpenDataDir(ctx context.Context, dir string) (*Store, error) {
	return Open(ctx, "sqlite:"+filepath.Join(dir, sqliteFile))
}

// parseDSN tells the dialect and what its driver opens: the URL itself for
// PostgreSQL, the file path for SQLite.
func parseDSN(dsn string) (dialect, target string, err error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return postgresDialect, dsn, nil
	}
	path, isSQLite := strings.CutPrefix(dsn, "sqlite:")
	if !isSQLite {
		// Only the scheme is shown: the rest of a URL may hold a password.
		if scheme, _, ok := strings.Cut(dsn, "://"); ok {
			return "", "", fmt.Errorf("store: unsupported database URL scheme %q: want postgres://, postgresql://, sqlite:PATH or a file path", scheme)
		}
	}
	switch {
	case path == "":
		return "", "", errors.New("store: empty database path")
	case strings.ContainsAny(path, "?#"):
		return "", "", fmt.Errorf("store: SQLite path %q: must not contain ? or #", path)
	}
	return sqliteDialect, path, nil
}

func openSQLite(ctx context.Context, path string) (*Store, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("store: cannot create the data directory %s: %w: give a directory the balancer's user may write (--data-dir)", dir, err)
	}
	// SQLite writes its journal beside the file: a directory the balancer
	// cannot write fails later with a bare "readonly database".
	probe, err := os.CreateTemp(dir, ".write-probe-*")
	if err != nil {
		return nil, fmt.Errorf("store: the data directory %s is not writable (%w): fix its owner or mode, or give another --data-dir", dir, err)
	}
	probe.Close()
	os.Remove(probe.Name())
	params := "?_busy_timeout=" + strconv.FormatInt(sqliteBusyTimeout.Milliseconds(), 10) +
		"&_foreign_keys=1&_synchronous=NORMAL"
	// Write transactions take the write lock at BEGIN: a transaction that
	// read first and then asks for the lock could fail at once with
	// SQLITE_BUSY, busy timeout or not.
	//
	// The writer's page cache holds the reports' table whole: a flush of a
	// second's reports rewrites rows all over it. The WAL is checkpointed
	// into the database every sqliteCheckpointPages pages rather than
	// SQLite's 1,000: a flush alone writes about half that many, and a page
	// rewritten every second is then copied into the file once per several
	// flushes, not after each one.
	db, _ := sql.Open("sqlite", path+params+"&_journal_mode=WAL&_txlock=immediate"+
		"&_pragma=cache_size(-"+strconv.Itoa(sqliteWriterCacheKiB)+")&_pragma=wal_autocheckpoint("+strconv.Itoa(sqliteCheckpointPages)+")") // lazy, as above
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(sqliteWriterLifetime)
	db.SetConnMaxIdleTime(0)
	// The first connection creates the file and turns on WAL before any
	// reader opens it.
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	rdb, _ := sql.Open("sqlite", path+params+"&_query_only=1&_pragma=cache_size(-"+strconv.Itoa(sqliteReaderCacheKiB)+")")
	readers := max(4, runtime.GOMAXPROCS(0))
	rdb.SetMaxOpenConns(readers)
	rdb.SetMaxIdleConns(readers)
	rdb.SetConnMaxIdleTime(sqliteReaderIdle)
	return &Store{dialect: sqliteDialect, db: db, rdb: rdb}, nil
}

// Close closes the database.
func (s *Store) Close() error {
	s.stmts.Range(func(_, st any) bool {
		st.(*sql.Stmt).Close()
		return true
	})
	err := s.db.Close()
	if s.rdb != s.db {
		err = errors.Join(err, s.rdb.Close())
	}
	return err
}

// Dialect is "sqlite" or "postgres".
func (s *Store) Dialect() string { return s.dialect }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	err := s.db.PingContext(ctx)
	if err == nil && s.rdb != s.db {
		err = s.rdb.PingContext(ctx)
	}
	if err != nil {
		return fmt.Errorf("store: ping %s: %w", s.dialect, err)
	}
	return nil
}

// CheckWritable writes one row of a probe table: nil when the database
// takes writes now (a full disk, a read-only file or a PostgreSQL standby
// fail it while Ping still answers).
func (s *Store) CheckWritable(ctx context.Context) error {
	_, err := s.exec(ctx, s.db, `INSERT INTO write_probe (id, written_at) VALUES (1, ?)
		ON CONFLICT (id) DO UPDATE SET written_at = excluded.written_at`, time.Now().UnixMilli())
	if err != nil {
		return fmt.Errorf("store: the %s database does not take writes: %w", s.dialect, err)
	}
	return nil
}

// queryRow, query and exec run a query written with ? placeholders (see q)
// on db, which is s.db or s.rdb. On SQLite each query is prepared once per
// connection and kept: the driver would otherwise parse the text again on
// every call, which costs more than running most of these queries. pgx
// keeps its prepared statements itself.
func (s *Store) queryRow(ctx context.Context, db *sql.DB, query string, args ...any) *sql.Row {
	query = s.q(query)
	if st := s.stmt(ctx, db, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return db.QueryRowContext(ctx, query, args...)
}

func (s *Store) query(ctx context.Context, db *sql.DB, query string, args ...any) (*sql.Rows, error) {
	query = s.q(query)
	if st := s.stmt(ctx, db, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return db.QueryContext(ctx, query, args...)
}

func (s *Store) exec(ctx context.Context, db *sql.DB, query string, args ...any) (sql.Result, error) {
	query = s.q(query)
	if st := s.stmt(ctx, db, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return db.ExecContext(ctx, query, args...)
}

// stmt is the SQLite statement for query on db, prepared on first use. It
// is nil on PostgreSQL, and when preparing fails: the unprepared call then
// reports the error.
func (s *Store) stmt(ctx context.Context, db *sql.DB, query string) *sql.Stmt {
	if s.dialect != sqliteDialect {
		return nil
	}
	key := stmtKey{db, query}
	if st, ok := s.stmts.Load(key); ok {
		return st.(*sql.Stmt)
	}
	st, err := db.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	if prev, loaded := s.stmts.LoadOrStore(key, st); loaded {
		st.Close()
		return prev.(*sql.Stmt)
	}
	return st
}

// q rewrites a query written with ? placeholders for the dialect:
// PostgreSQL numbers them $1..$n. No query here has a ? inside a literal.
func (s *Store) q(query string) string {
	if s.dialect != postgresDialect {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// jsonElements is a FROM item with one row per element of the JSON array
// bound to its one placeholder, in a column named value: JSON for objects,
// SQL text for strings. One parameter carries a whole batch, whatever its
// size, and the query text stays the same (prepared once by pgx).
func (s *Store) jsonElements(text bool) string {
	switch {
	case s.dialect != postgresDialect:
		return "json_each(?)"
	case text:
		return "jsonb_array_elements_text(CAST(? AS jsonb))"
	default:
		return "jsonb_array_elements(CAST(? AS jsonb))"
	}
}

// Times are stored as Unix milliseconds, 0 for none.
func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

// notFound turns sql.ErrNoRows into ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}
