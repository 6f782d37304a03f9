package store

import (
	"context"
	"database/sql"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// pingAfterIdle is how long a pooled PostgreSQL connection may sit unused
// before it is pinged on its next use. A server restart (a fast shutdown
// cuts every session with 57P01 admin_shutdown) takes longer than this, so
// a connection idle across one is found dead by the ping, which
// database/sql answers by taking another connection, instead of by the
// caller's query failing. Under load connections are reused sooner and
// skip the ping.
const pingAfterIdle = 100 * time.Millisecond

// openPostgres opens the PostgreSQL pool. Besides the idle ping, a session
// the server ends (a FATAL error such as 57P01 admin_shutdown or 57P02
// crash_shutdown on any connection) makes every connection last used
// before it ping on its next use: after a restart no pooled connection
// fails a call once.
func openPostgres(dsn string) *Store {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// Reported by the first use (the migration), as sql.Open does.
		db, _ := sql.Open("pgx", dsn)
		return &Store{dialect: postgresDialect, db: db, rdb: db}
	}
	var endedAt atomic.Int64 // UnixNano of the last session the server ended
	cfg.OnPgError = func(_ *pgconn.PgConn, e *pgconn.PgError) bool {
		if e.Severity == "FATAL" || e.Severity == "PANIC" {
			endedAt.Store(time.Now().UnixNano())
			return false // the session is gone: close the connection
		}
		return true
	}
	db := stdlib.OpenDB(*cfg, stdlib.OptionShouldPing(func(_ context.Context, p stdlib.ShouldPingParams) bool {
		return p.IdleDuration > pingAfterIdle || time.Now().Add(-p.IdleDuration).UnixNano() <= endedAt.Load()
	}))
	db.SetMaxOpenConns(postgresMaxConns)
	db.SetMaxIdleConns(postgresMaxConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return &Store{dialect: postgresDialect, db: db, rdb: db}
}
