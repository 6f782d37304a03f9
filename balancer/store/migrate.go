package store

import (
	"context"
	"fmt"
	"time"
)

// migrations are the schema's versions: migrations[i] takes a database from
// version i to i+1. A released entry never changes; a change is a new entry.
// The column types (TEXT, BIGINT, DOUBLE PRECISION) mean the same in both
// dialects, so one list of statements serves both.
var migrations = [][]string{
	{ // 1: nodes and meeting placements
		`CREATE TABLE nodes (
			id                 TEXT PRIMARY KEY,
			name               TEXT NOT NULL UNIQUE,
			url                TEXT UNIQUE, -- NULL for a node without a BBB API (TURN)
			secret             TEXT NOT NULL,
			role               TEXT NOT NULL,
			tags               TEXT NOT NULL DEFAULT '[]', -- JSON array
			load_multiplier    DOUBLE PRECISION NOT NULL DEFAULT 1,
			state              TEXT NOT NULL CHECK (state IN ('enabled', 'cordoned', 'disabled')),
			source             TEXT NOT NULL,
			agent_version      TEXT NOT NULL DEFAULT '',
			report_interval_ms BIGINT NOT NULL DEFAULT 0,
			created_at         BIGINT NOT NULL,          -- Unix ms
			last_report_at     BIGINT NOT NULL DEFAULT 0, -- Unix ms, 0: never
			last_seq           BIGINT NOT NULL DEFAULT 0,
			load_json          TEXT NOT NULL DEFAULT '{}' -- fleet.Load as JSON
		)`,
		`CREATE TABLE meetings (
			meeting_id TEXT PRIMARY KEY,
			node_id    TEXT NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
			placed_at  BIGINT NOT NULL -- Unix ms
		)`,
		// Placements by node (cascade, PruneMeetings) and newer than a
		// report (PlacedSince).
		`CREATE INDEX meetings_node_placed ON meetings (node_id, placed_at)`,
	},
	{ // 2: what a TURN node offers
		`ALTER TABLE nodes ADD COLUMN turn_uris TEXT NOT NULL DEFAULT '[]'`, // JSON array
	},
	{ // 3: node identity: the hash of each node's own credential, an operator's
		// leave to take a node over, and the row the write probe touches.
		`ALTER TABLE nodes ADD COLUMN credential_hash TEXT NOT NULL DEFAULT ''`,   // hex SHA-256; '' for nodes registered before credentials
		`ALTER TABLE nodes ADD COLUMN takeover_allowed BIGINT NOT NULL DEFAULT 0`, // 1: the next --takeover registration may take the name
		`CREATE TABLE write_probe (
			id         BIGINT PRIMARY KEY,
			written_at BIGINT NOT NULL -- Unix ms
		)`,
	},
	{ // 4: rooms: links that open a meeting without a front-end (rooms.go)
		`CREATE TABLE rooms (
			id                 TEXT PRIMARY KEY,
			name               TEXT NOT NULL,
			meeting_id         TEXT NOT NULL UNIQUE,
			moderator_hash     TEXT NOT NULL UNIQUE, -- SHA-256 hex of the moderator link's token
			viewer_hash        TEXT NOT NULL UNIQUE, -- SHA-256 hex of the participant link's token
			record             BIGINT NOT NULL DEFAULT 0,
			max_participants   BIGINT NOT NULL DEFAULT 0,
			wait_for_moderator BIGINT NOT NULL DEFAULT 0,
			created_at         BIGINT NOT NULL -- Unix ms
		)`,
	},
	{ // 5: recordings: the index, its metadata for filters, the recording-ready callbacks
		`CREATE TABLE recordings (
			record_id           TEXT PRIMARY KEY,
			meeting_id          TEXT NOT NULL, -- the front-end's (external) meeting ID
			internal_meeting_id TEXT NOT NULL,
			name                TEXT NOT NULL,
			is_breakout         BIGINT NOT NULL DEFAULT 0,
			state               TEXT NOT NULL CHECK (state IN ('processing', 'processed', 'published', 'unpublished', 'deleted')),
			start_time          BIGINT NOT NULL, -- Unix ms, as BBB gives it
			end_time            BIGINT NOT NULL,
			participants        BIGINT NOT NULL DEFAULT 0,
			raw_size            BIGINT NOT NULL DEFAULT 0,
			size                BIGINT NOT NULL DEFAULT 0, -- the formats' sizes added up
			protected           BIGINT NOT NULL DEFAULT 0,
			meta                TEXT NOT NULL DEFAULT '{}', -- JSON object, key → value
			formats             TEXT NOT NULL DEFAULT '[]', -- JSON array of store.RecordingFormat
			node                TEXT NOT NULL DEFAULT '',
			created_at          BIGINT NOT NULL, -- Unix ms
			updated_at          BIGINT NOT NULL
		)`,
		`CREATE INDEX recordings_meeting_start ON recordings (meeting_id, start_time)`,
		`CREATE INDEX recordings_start ON recordings (start_time, record_id)`,
		`CREATE INDEX recordings_state_start ON recordings (state, start_time)`,
		// One row per metadata key, lower-cased, for getRecordings' meta_ filters.
		`CREATE TABLE recording_meta (
			record_id TEXT NOT NULL REFERENCES recordings (record_id) ON DELETE CASCADE,
			key       TEXT NOT NULL,
			value     TEXT NOT NULL,
			PRIMARY KEY (record_id, key)
		)`,
		`CREATE INDEX recording_meta_key_value ON recording_meta (key, value)`,
		// Recording-ready callbacks: remembered at create (meeting_id set,
		// record_id ''), queued per recording once it is indexed.
		`CREATE TABLE recording_callbacks (
			meeting_id  TEXT NOT NULL,
			record_id   TEXT NOT NULL DEFAULT '',
			url         TEXT NOT NULL,
			secret      TEXT NOT NULL, -- which balancer secret the front-end signed its create with (a hash, never the secret)
			state       TEXT NOT NULL CHECK (state IN ('waiting', 'queued', 'delivered', 'failed')),
			attempts    BIGINT NOT NULL DEFAULT 0,
			next_at     BIGINT NOT NULL DEFAULT 0, -- Unix ms
			last_error  TEXT NOT NULL DEFAULT '',
			created_at  BIGINT NOT NULL,
			PRIMARY KEY (meeting_id, record_id)
		)`,
		`CREATE INDEX recording_callbacks_due ON recording_callbacks (state, next_at)`,
	},
	{ // 6: protected recordings' one-use playback links
		`CREATE TABLE recording_tokens (
			token_hash TEXT PRIMARY KEY, -- SHA-256 hex of the link's token
			record_id  TEXT NOT NULL,
			format     TEXT NOT NULL,
			expires_at BIGINT NOT NULL, -- Unix ms
			used_at    BIGINT NOT NULL DEFAULT 0 -- Unix ms, 0: not used
		)`,
		`CREATE INDEX recording_tokens_expires ON recording_tokens (expires_at)`,
	},
	// 7: the replicas' meeting -> node caches read the placements made
	// since their last refresh (MeetingsPlacedSince).
	{`CREATE INDEX meetings_placed ON meetings (placed_at)`},
	// 8: the replicas' registries read only the nodes changed since their
	// last refresh (NodesChangedSince): every write of a node row sets its
	// change marker (changeMark), a deletion leaves a tombstone. The
	// dialects' halves are in dialectMigrations.
	{
		`ALTER TABLE nodes ADD COLUMN changed BIGINT NOT NULL DEFAULT 0`,
		`CREATE INDEX nodes_changed ON nodes (changed)`,
		`CREATE TABLE node_tombstones (
			id         TEXT PRIMARY KEY,
			changed    BIGINT NOT NULL,
			deleted_at BIGINT NOT NULL -- Unix ms
		)`,
		`CREATE INDEX node_tombstones_changed ON node_tombstones (changed)`,
	},
	// 9: a report (or poll) marks its row in a column of its own, reported,
	// with the same markers: a replica's refresh then leaves out the rows
	// whose last write was one of its own flushes (NodeChanges' skip),
	// while a change of anything else (changed) is always read.
	{
		`ALTER TABLE nodes ADD COLUMN reported BIGINT NOT NULL DEFAULT 0`,
		`CREATE INDEX nodes_reported ON nodes (reported)`,
	},
	// 10: on SQLite a report's writer moves the change counter on itself
	// (takeReportMark), once a transaction; the trigger that did it for
	// every row goes (dialectMigrations). Nothing changes on PostgreSQL.
	{},
	// 11: on SQLite a node's report moves out of nodes into a narrow row
	// of node_reports (dialectMigrations): a flush rewrites 2,000 short
	// rows in a few hundred pages, not 2,000 whole node rows all over the
	// nodes table (measured at 10,000 nodes: 40-43 -> 27-28 ms a flush).
	// Nothing changes on PostgreSQL, whose flush is one statement, and
	// whose replicas of the version before keep reading and writing the
	// columns there during a rolling upgrade.
	{},
}

// dialectMigrations are the statements of a version that differ between the
// dialects, by version and dialect; they run after that version's
// migrations entry.
var dialectMigrations = map[int]map[string][]string{
	8: {
		// SQLite: the marker is a counter one row holds; a statement's
		// rows all take its value + 1 (changeMark), and the triggers move
		// it on. SQLite has one writer at a time, so markers commit in
		// order.
		sqliteDialect: {
			`CREATE TABLE node_changes (id BIGINT PRIMARY KEY, last BIGINT NOT NULL)`,
			`INSERT INTO node_changes (id, last) VALUES (1, 0)`,
			`CREATE TRIGGER node_changes_insert AFTER INSERT ON nodes BEGIN
				UPDATE node_changes SET last = NEW.changed WHERE id = 1 AND last < NEW.changed;
			END`,
			`CREATE TRIGGER node_changes_update AFTER UPDATE OF changed ON nodes BEGIN
				UPDATE node_changes SET last = NEW.changed WHERE id = 1 AND last < NEW.changed;
			END`,
			`CREATE TRIGGER node_changes_tombstone AFTER INSERT ON node_tombstones BEGIN
				UPDATE node_changes SET last = NEW.changed WHERE id = 1 AND last < NEW.changed;
			END`,
		},
		// PostgreSQL: the marker is the writing transaction's ID
		// (changeMark), which needs nothing more.
	},
	9: {
		sqliteDialect: {
			`CREATE TRIGGER node_changes_report AFTER UPDATE OF reported ON nodes BEGIN
				UPDATE node_changes SET last = NEW.reported WHERE id = 1 AND last < NEW.reported;
			END`,
		},
	},
	10: {
		sqliteDialect: {`DROP TRIGGER node_changes_report`},
	},
	11: {
		sqliteDialect: {
			`CREATE TABLE node_reports (
				id             TEXT PRIMARY KEY REFERENCES nodes (id) ON DELETE CASCADE,
				last_report_at BIGINT NOT NULL DEFAULT 0, -- Unix ms, 0: never
				last_seq       BIGINT NOT NULL DEFAULT 0,
				load_json      TEXT NOT NULL DEFAULT '{}', -- fleet.Load (appendLoad)
				reported       BIGINT NOT NULL DEFAULT 0
			) WITHOUT ROWID`,
			`INSERT INTO node_reports (id, last_report_at, last_seq, load_json, reported)
				SELECT id, last_report_at, last_seq, load_json, reported FROM nodes`,
			`CREATE INDEX node_reports_reported ON node_reports (reported)`,
			`DROP INDEX nodes_reported`,
			`ALTER TABLE nodes DROP COLUMN reported`,
			`ALTER TABLE nodes DROP COLUMN load_json`,
			`ALTER TABLE nodes DROP COLUMN last_seq`,
			`ALTER TABLE nodes DROP COLUMN last_report_at`,
		},
	},
}

// migrateLockKey is the PostgreSQL advisory lock that serializes the
// migrations of replicas starting at once.
const migrateLockKey = 0x62626261_6c616e63 // "bbbalanc"

// migrate brings the schema to len(migrations) in one transaction, or
// refuses a database that a newer binary has migrated further.
func (s *Store) migrate(ctx context.Context) error {
	err := s.migrateTx(ctx, len(migrations))
	if err != nil {
		return fmt.Errorf("store: migrate %s database: %w", s.dialect, err)
	}
	return nil
}

// migrateTx brings the schema to version target (len(migrations) but in
// tests of a migration, which start from the version before it).
func (s *Store) migrateTx(ctx context.Context, target int) error {
	tx, err := s.db.BeginTx(ctx, nil) // on SQLite, BEGIN IMMEDIATE holds off other processes
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if s.dialect == postgresDialect {
		if _, err := tx.ExecContext(ctx, s.q(`SELECT pg_advisory_xact_lock(?)`), int64(migrateLockKey)); err != nil {
			return err
		}
	}
	_, err = tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    BIGINT PRIMARY KEY,
		applied_at BIGINT NOT NULL -- Unix ms
	)`)
	if err != nil {
		return err
	}
	var version int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&version); err != nil {
		return err
	}
	if version > len(migrations) {
		return fmt.Errorf("database schema version %d is newer than this bbb-balancer (%d): upgrade bbb-balancer",
			version, len(migrations))
	}
	for v := version + 1; v <= target; v++ {
		for _, stmt := range migrations[v-1] {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("version %d: %w", v, err)
			}
		}
		for _, stmt := range dialectMigrations[v][s.dialect] {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("version %d (%s): %w", v, s.dialect, err)
			}
		}
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`),
			v, time.Now().UnixMilli())
		if err != nil {
			return fmt.Errorf("version %d: %w", v, err)
		}
	}
	return tx.Commit()
}
