package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/bbb-agent/bbb-agent/balancer/records"
)

// tombstoneTTL is how long a deleted node's tombstone is kept: far longer
// than a replica goes between refreshes; one that slept longer finds the
// deletion in its next whole-fleet read.
const tombstoneTTL = 24 * time.Hour

// changeMark is the SQL expression every write of a node row (and a
// tombstone) sets its changed column to, so that NodeChanges finds it.
//
// On PostgreSQL it is the writing transaction's ID (64 bits, never wraps).
// Transactions do not commit in the order of their IDs: one with a lower ID
// may commit after one with a higher ID was read. NodeChanges copes by
// starting its next read at the oldest transaction still running when this
// read began (see changeCursor), never at the highest marker it saw.
//
// On SQLite it is one more than the node_changes counter, which triggers
// move on (migration 8). A report's marker (the reported column) is taken
// by its writer, which moves the counter on itself (takeReportMark).
// SQLite has one writer at a time, and a statement reads the counter while
// holding the write lock, so markers commit in order.
func (s *Store) changeMark() string {
	if s.dialect == postgresDialect {
		return `CAST(CAST(pg_current_xact_id() AS TEXT) AS BIGINT)`
	}
	return `(SELECT last + 1 FROM node_changes WHERE id = 1)`
}

// NodeChanges is what NodeChanges found.
type NodeChanges struct {
	// Full says Nodes is the whole fleet: a node not in it is gone.
	Full bool
	// Nodes are the nodes written at or after the cursor (every node, ordered
	// by name, when Full).
	Nodes []records.Node
	// Deleted are the IDs of the nodes deleted at or after the cursor
	// (none when Full). A node may be in both if it was deleted and then
	// written again with the same ID: it exists.
	Deleted []string
	// Next is the cursor for the next call.
	Next int64
}

// maxSkip bounds NodeChanges' skip list: a replica whose refreshes fall
// behind its flushes reads its own reports again rather than send a long
// list.
const maxSkip = 16

// NodeChanges lists the nodes written and deleted at or after cursor, a
// Next of an earlier call; a cursor <= 0 reads the whole fleet. Every write
// committed since the call that returned cursor is in it; some writes
// already read may be again (a replica applies a node's row as it stands,
// so reading it twice is harmless).
//
// skip are markers RecordReports returned to this replica: a row whose
// newest write since cursor is only such a report is left out, as the
// replica holds that report (or a newer one) already. A row another writer
// changed since cursor, its reports or anything else, is read.
func (s *Store) NodeChanges(ctx context.Context, cursor int64, skip ...int64) (NodeChanges, error) {
	next, err := s.changeCursor(ctx)
	if err != nil {
		return NodeChanges{}, fmt.Errorf("store: node changes: %w", err)
	}
	if cursor <= 0 {
		nodes, err := s.Nodes(ctx)
		if err != nil {
			return NodeChanges{}, err
		}
		return NodeChanges{Full: true, Nodes: nodes, Next: next}, nil
	}
	// Tombstones first: a node deleted between the two reads is then
	// still among the nodes or in the next call's tombstones, never only
	// in this call's nodes.
	deleted, err := s.tombstones(ctx, cursor)
	if err != nil {
		return NodeChanges{}, fmt.Errorf("store: node changes: %w", err)
	}
	nodes, err := s.nodesChanged(ctx, cursor, skip)
	if err != nil {
		return NodeChanges{}, fmt.Errorf("store: node changes: %w", err)
	}
	return NodeChanges{Nodes: nodes, Deleted: deleted, Next: next}, nil
}

// changeCursor is the lowest marker a write not committed yet (or not
// started) can take: read before the rows, so every row with a lower marker
// is committed by then and in the read.
//
// On PostgreSQL it is the oldest transaction ID still running (pg_snapshot_xmin:
// every transaction below it has ended). A later transaction gets a higher ID,
// so whatever commits after this moment has a marker at or above it.
func (s *Store) changeCursor(ctx context.Context) (int64, error) {
	query := `SELECT last + 1 FROM node_changes WHERE id = 1`
	if s.dialect == postgresDialect {
		query = `SELECT CAST(CAST(pg_snapshot_xmin(pg_current_snapshot()) AS TEXT) AS BIGINT)`
	}
	var next int64
	if err := s.queryRow(ctx, s.rdb, query).Scan(&next); err != nil {
		return 0, err
	}
	return next, nil
}

// nodesChanged reads the nodes whose change or report marker is at or above
// cursor, but for reports with a marker in skip.
func (s *Store) nodesChanged(ctx context.Context, cursor int64, skip []int64) ([]records.Node, error) {
	skip = slices.DeleteFunc(slices.Clone(skip), func(m int64) bool { return m < cursor })
	if len(skip) > maxSkip {
		skip = nil
	}
	query, args := postgresNodesChanged(cursor, skip)
	if s.dialect == sqliteDialect {
		query, args = sqliteNodesChanged(cursor, skip)
	}
	rows, err := s.query(ctx, s.rdb, query, args...)
	if err != nil {
		return nil, err
	}
	return scanNodes(rows)
}

// postgresNodesChanged is nodesChanged's query on PostgreSQL: the rows of
// nodes changed or reported since cursor, but for the skipped reports.
func postgresNodesChanged(cursor int64, skip []int64) (string, []any) {
	reported := `reported >= ?`
	args := []any{cursor, cursor}
	if len(skip) > 0 {
		reported += ` AND reported NOT IN (?` + strings.Repeat(`, ?`, len(skip)-1) + `)`
		for _, m := range skip {
			args = append(args, m)
		}
	}
	return `SELECT ` + nodeColumns + ` FROM nodes WHERE changed >= ? OR (` + reported + `)`, args
}

// sqliteNodesChanged is nodesChanged's query on SQLite, where changed and
// reported are columns of two tables: one SELECT each, by its index. The
// reports are read in the ranges between the skipped markers rather than
// filtered by them: there the skipped rows are nearly all (one replica
// writes every report), and a refresh then seeks once a range instead of
// walking the index entries of a whole flush.
func sqliteNodesChanged(cursor int64, skip []int64) (string, []any) {
	var b strings.Builder
	b.WriteString(`SELECT ` + nodeColumns + ` FROM nodes JOIN node_reports USING (id) WHERE changed >= ?`)
	args := []any{cursor}
	reports := func(cond string, bounds ...any) {
		b.WriteString(` UNION SELECT ` + nodeColumns + ` FROM node_reports JOIN nodes USING (id) WHERE ` + cond)
		args = append(args, bounds...)
	}
	skip = slices.Clone(skip)
	slices.Sort(skip)
	from := cursor
	for _, m := range slices.Compact(skip) {
		if m > from {
			reports(`reported >= ? AND reported < ?`, from, m)
		}
		from = m + 1
	}
	reports(`reported >= ?`, from)
	return b.String(), args
}

// tombstones reads the IDs of the nodes deleted at or after cursor.
func (s *Store) tombstones(ctx context.Context, cursor int64) ([]string, error) {
	rows, err := s.query(ctx, s.rdb, `SELECT id FROM node_tombstones WHERE changed >= ?`, cursor)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}
