package store

import (
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"
	"unique"
	"unsafe"

	"github.com/bbb-agent/bbb-agent/balancer/records"
	"github.com/bbb-agent/bbb-agent/fleet"
)

// nodeColumns are a node as read from nodeRows. The nodes table holds
// ownColumns; the report's columns are in it too on PostgreSQL, and in
// node_reports on SQLite (reportRows).
const (
	nodeColumns = `id, name, url, secret, role, tags, load_multiplier, state, source, agent_version,
	report_interval_ms, created_at, last_report_at, last_seq, load_json, turn_uris, credential_hash, takeover_allowed`
	ownColumns = `id, name, url, secret, role, tags, load_multiplier, state, source, agent_version,
	report_interval_ms, created_at, turn_uris, credential_hash, takeover_allowed`
)

// nodeRows is the FROM item of nodeColumns.
func (s *Store) nodeRows() string {
	if s.dialect == sqliteDialect {
		return `nodes JOIN node_reports USING (id)`
	}
	return `nodes`
}

// reportRows is the table of the nodes' reports: id, last_report_at,
// last_seq, load_json and reported. On SQLite a flush then rewrites short
// rows of their own (migration 11).
func (s *Store) reportRows() string {
	if s.dialect == sqliteDialect {
		return `node_reports`
	}
	return `nodes`
}

// writeNodeRow runs write, a statement that inserts or updates one row of
// nodes, and returns the node as stored, or sql.ErrNoRows if it wrote none.
// On PostgreSQL the statement returns the node itself. On SQLite, whose
// RETURNING sees only the table written, it returns the ID; then report
// inserts the node's report row if it has none (a new node's), and the node
// is read in the same transaction.
func (s *Store) writeNodeRow(ctx context.Context, write string, report []any, args ...any) (records.Node, error) {
	if s.dialect != sqliteDialect {
		return scanNode(s.queryRow(ctx, s.db, write+` RETURNING `+nodeColumns, args...))
	}
	tx, err := s.db.BeginTx(ctx, nil) // BEGIN IMMEDIATE
	if err != nil {
		return records.Node{}, err
	}
	defer tx.Rollback()
	var id string
	if err := tx.QueryRowContext(ctx, write+` RETURNING id`, args...).Scan(&id); err != nil {
		return records.Node{}, err
	}
	if report != nil {
		if _, err := tx.ExecContext(ctx, `INSERT INTO node_reports (id, last_report_at, last_seq, load_json)
			VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`, append([]any{id}, report...)...); err != nil {
			return records.Node{}, err
		}
	}
	n, err := scanNode(tx.QueryRowContext(ctx, `SELECT `+nodeColumns+` FROM `+s.nodeRows()+` WHERE id = ?`, id))
	if err != nil {
		return records.Node{}, err
	}
	return n, tx.Commit()
}

func scanNode(sc scanner) (records.Node, error) {
	var tags, load, uris string
	n, err := scanNodeColumns(sc, &tags, &load, &uris)
	if err != nil {
		return records.Node{}, err
	}
	if err := decodeLists([]byte(tags), []byte(uris), &n); err != nil {
		return records.Node{}, err
	}
	if n.Load, err = decodeLoad([]byte(load)); err != nil {
		return records.Node{}, fmt.Errorf("load: %w", err)
	}
	return n, nil
}

// scanNodeColumns scans a row of nodeColumns but for the JSON of the tags,
// the load and the TURN URIs, which go to tags, load and uris as they are.
func scanNodeColumns(sc scanner, tags, load, uris any) (records.Node, error) {
	var (
		n                               records.Node
		url                             sql.NullString
		interval, created, lastReportAt int64
		takeover                        int64
	)
	err := sc.Scan(&n.ID, &n.Name, &url, &n.Secret, &n.Role, tags, &n.LoadMultiplier, &n.State, &n.Source,
		&n.AgentVersion, &interval, &created, &lastReportAt, &n.LastSeq, load, uris, &n.CredentialHash, &takeover)
	if err != nil {
		return records.Node{}, err
	}
	n.TakeoverAllowed = takeover != 0
	n.URL = url.String
	// Most nodes have one of a few roles, states, sources and agent
	// versions: one copy of each for the fleet, not one a node.
	n.Role, n.State, n.Source = unique.Make(n.Role).Value(), unique.Make(n.State).Value(), unique.Make(n.Source).Value()
	n.AgentVersion = unique.Make(n.AgentVersion).Value()
	n.ReportInterval = time.Duration(interval) * time.Millisecond
	n.CreatedAt = fromMillis(created)
	n.LastReportAt = fromMillis(lastReportAt)
	return n, nil
}

// decodeLists decodes the tags and TURN URIs columns.
func decodeLists(tags, uris []byte, n *records.Node) error {
	var err error
	if n.Tags, err = decodeStrings(tags); err != nil {
		return fmt.Errorf("tags: %w", err)
	}
	if n.TURNURIs, err = decodeStrings(uris); err != nil {
		return fmt.Errorf("turn_uris: %w", err)
	}
	return nil
}

func decodeStrings(raw []byte) ([]string, error) {
	if string(raw) == "[]" { // nearly every node: no decoding
		return nil, nil
	}
	var out []string
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// newID makes a node ID: 16 random bytes in hex.
func newID() string {
	b := make([]byte, 16)
	rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

func validState(st fleet.AdminState) error {
	switch st {
	case fleet.Enabled, fleet.Cordoned, fleet.Disabled:
		return nil
	}
	return fmt.Errorf("invalid node state %q", st)
}

// UpsertNode inserts the node or, if a node has its Name, updates it, and
// returns the node as stored.
//
// An insert takes n.ID, or a new random ID if it is empty, n.State (enabled
// if empty), n.CreatedAt and n.CredentialHash; empty Role and Source default
// to bbb and agent, a zero LoadMultiplier to 1. An update changes URL,
// Secret, Role, Tags, LoadMultiplier, Source, AgentVersion and
// ReportInterval and keeps ID, State, CreatedAt, the credential and the
// newest report.
//
// A URL registered to a node of another name is ErrConflict. Concurrent
// upserts of one name, from any number of processes, make one node.
func (s *Store) UpsertNode(ctx context.Context, n records.Node) (records.Node, error) {
	return s.writeNode(ctx, n, `ON CONFLICT (name) DO UPDATE SET
			url = excluded.url, secret = excluded.secret, role = excluded.role, tags = excluded.tags,
			turn_uris = excluded.turn_uris,
			load_multiplier = excluded.load_multiplier, source = excluded.source,
			agent_version = excluded.agent_version, report_interval_ms = excluded.report_interval_ms,
			changed = excluded.changed`)
}

// CreateNode inserts the node as UpsertNode does, but only if no node has
// its name: a taken name or URL is ErrConflict. Of concurrent creations of
// one name, from any number of processes, exactly one succeeds.
func (s *Store) CreateNode(ctx context.Context, n records.Node) (records.Node, error) {
	got, err := s.writeNode(ctx, n, `ON CONFLICT (name) DO NOTHING`)
	if errors.Is(err, sql.ErrNoRows) {
		return records.Node{}, fmt.Errorf("store: create node %q: the name is taken: %w", n.Name, ErrConflict)
	}
	return got, err
}

func (s *Store) writeNode(ctx context.Context, n records.Node, onConflict string) (records.Node, error) {
	if n.Name == "" {
		return records.Node{}, errors.New("store: upsert node: empty name")
	}
	if n.ID == "" {
		n.ID = newID()
	}
	if n.State == "" {
		n.State = fleet.Enabled
	}
	if err := validState(n.State); err != nil {
		return records.Node{}, fmt.Errorf("store: upsert node %q: %w", n.Name, err)
	}
	if n.Role == "" {
		n.Role = fleet.RoleBBB
	}
	if n.Source == "" {
		n.Source = records.SourceAgent
	}
	if n.LoadMultiplier == 0 {
		n.LoadMultiplier = 1
	}
	tags, err := json.Marshal(append([]string{}, n.Tags...)) // [] rather than null
	if err != nil {
		return records.Node{}, fmt.Errorf("store: upsert node %q: tags: %w", n.Name, err)
	}
	uris, err := json.Marshal(append([]string{}, n.TURNURIs...))
	if err != nil {
		return records.Node{}, fmt.Errorf("store: upsert node %q: turn uris: %w", n.Name, err)
	}
	load := appendLoad(nil, n.Load)
	url := sql.NullString{String: n.URL, Valid: n.URL != ""}

	args := []any{n.ID, n.Name, url, n.Secret, n.Role, string(tags), n.LoadMultiplier, n.State, n.Source, n.AgentVersion,
		n.ReportInterval.Milliseconds(), millis(n.CreatedAt), string(uris), n.CredentialHash}
	report := []any{millis(n.LastReportAt), n.LastSeq, string(load)}
	insert := `INSERT INTO nodes (` + ownColumns + `, changed)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ` + s.changeMark() + `)`
	if s.dialect != sqliteDialect { // the report's columns are nodes' own
		insert = `INSERT INTO nodes (` + ownColumns + `, last_report_at, last_seq, load_json, changed)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ` + s.changeMark() + `)`
		args, report = append(args, report...), nil
	}
	for attempt := 1; ; attempt++ {
		got, err := s.writeNodeRow(ctx, insert+" "+onConflict, report, args...)
		if err == nil {
			return got, nil
		}
		// A unique URL index violation is told apart from other failures by
		// looking for the URL's owner, which has committed by now.
		if other, ok := s.urlOwner(ctx, n.URL, n.Name); ok {
			return records.Node{}, fmt.Errorf("store: upsert node %q: URL %s is already registered to node %q: %w",
				n.Name, n.URL, other, ErrConflict)
		}
		if errors.Is(err, sql.ErrNoRows) {
			return records.Node{}, err
		}
		// On PostgreSQL a concurrent insert of the same name and URL can
		// fail this one on the URL's unique index rather than turn it into
		// the name's ON CONFLICT branch (only the name's index is checked
		// speculatively). The node is there now: the same statement again
		// finds it.
		if attempt < 3 && s.nodeNamed(ctx, n.Name, n.URL) {
			continue
		}
		return records.Node{}, fmt.Errorf("store: upsert node %q: %w", n.Name, err)
	}
}

// nodeNamed says whether a node has the name and the URL ("" for none).
func (s *Store) nodeNamed(ctx context.Context, name, url string) bool {
	var one int
	return s.queryRow(ctx, s.db, `SELECT 1 FROM nodes WHERE name = ? AND COALESCE(url, '') = ?`, name, url).Scan(&one) == nil
}

// SetNodeCredential replaces the node's credential hash (a takeover, a
// migration, a rotation) and withdraws any leave to take it over.
func (s *Store) SetNodeCredential(ctx context.Context, id, hash string) (records.Node, error) {
	n, err := s.writeNodeRow(ctx, `UPDATE nodes SET credential_hash = ?, takeover_allowed = 0, changed = `+s.changeMark()+` WHERE id = ?`, nil, hash, id)
	if err != nil {
		return records.Node{}, fmt.Errorf("store: set node %q credential: %w", id, notFound(err))
	}
	return n, nil
}

// AllowTakeover lets the next registration with takeover of the node's name
// replace its identity (bbb-balancer servers allow-takeover).
func (s *Store) AllowTakeover(ctx context.Context, id string) (records.Node, error) {
	n, err := s.writeNodeRow(ctx, `UPDATE nodes SET takeover_allowed = 1, changed = `+s.changeMark()+` WHERE id = ?`, nil, id)
	if err != nil {
		return records.Node{}, fmt.Errorf("store: allow takeover of node %q: %w", id, notFound(err))
	}
	return n, nil
}

// urlOwner names the node other than name that has url, if any.
func (s *Store) urlOwner(ctx context.Context, url, name string) (string, bool) {
	if url == "" {
		return "", false
	}
	var other string
	err := s.queryRow(ctx, s.db, `SELECT name FROM nodes WHERE url = ? AND name <> ?`, url, name).Scan(&other)
	return other, err == nil
}

// Node returns the node with the ID.
func (s *Store) Node(ctx context.Context, id string) (records.Node, error) {
	n, err := scanNode(s.queryRow(ctx, s.rdb, `SELECT `+nodeColumns+` FROM `+s.nodeRows()+` WHERE id = ?`, id))
	if err != nil {
		return records.Node{}, fmt.Errorf("store: node %q: %w", id, notFound(err))
	}
	return n, nil
}

// NodeByName returns the node with the name.
func (s *Store) NodeByName(ctx context.Context, name string) (records.Node, error) {
	n, err := scanNode(s.queryRow(ctx, s.rdb, `SELECT `+nodeColumns+` FROM `+s.nodeRows()+` WHERE name = ?`, name))
	if err != nil {
		return records.Node{}, fmt.Errorf("store: node named %q: %w", name, notFound(err))
	}
	return n, nil
}

// NodeByCredential returns the node whose credential has the hash.
func (s *Store) NodeByCredential(ctx context.Context, hash string) (records.Node, error) {
	if hash == "" {
		return records.Node{}, fmt.Errorf("store: node by credential: %w", ErrNotFound)
	}
	n, err := scanNode(s.queryRow(ctx, s.rdb, `SELECT `+nodeColumns+` FROM `+s.nodeRows()+` WHERE credential_hash = ?`, hash))
	if err != nil {
		return records.Node{}, fmt.Errorf("store: node by credential: %w", notFound(err))
	}
	return n, nil
}

// Nodes returns all nodes, ordered by name.
func (s *Store) Nodes(ctx context.Context) ([]records.Node, error) {
	// SQLite would walk the name index and look each node up in two
	// tables; reading the nodes in their table's order and sorting them
	// here costs a third less (measured at 10,000 nodes). Its names
	// compare byte by byte, as here.
	order := ` ORDER BY name`
	if s.dialect == sqliteDialect {
		order = ``
	}
	rows, err := s.query(ctx, s.rdb, `SELECT `+nodeColumns+` FROM `+s.nodeRows()+order)
	if err != nil {
		return nil, fmt.Errorf("store: list nodes: %w", err)
	}
	nodes, err := scanNodes(rows)
	if err != nil {
		return nil, fmt.Errorf("store: list nodes: %w", err)
	}
	if order == `` {
		nodes = sortedByName(nodes)
	}
	return nodes, nil
}

// sortedByName returns the nodes in the order of their names.
func sortedByName(nodes []records.Node) []records.Node {
	sorted := make([]records.Node, 0, len(nodes))
	for _, i := range sortedIndexes(len(nodes), func(a, b int) int { return strings.Compare(nodes[a].Name, nodes[b].Name) }) {
		sorted = append(sorted, nodes[i])
	}
	return sorted
}

// sortedIndexes returns 0..n-1 sorted by cmp. Sorting the indexes of large
// values (a node is half a kilobyte) costs less than moving the values
// themselves at every swap.
func sortedIndexes(n int, cmp func(a, b int) int) []int32 {
	order := make([]int32, n)
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int { return cmp(int(a), int(b)) })
	return order
}

// scanNodes reads rows of nodeColumns, and closes them.
func scanNodes(rows *sql.Rows) ([]records.Node, error) {
	defer rows.Close()
	var (
		nodes            []records.Node
		tags, load, uris sql.RawBytes
	)
	for rows.Next() {
		n, err := scanNodeColumns(rows, &tags, &load, &uris)
		if err == nil {
			err = decodeLists(tags, uris, &n)
		}
		if err == nil {
			if n.Load, err = decodeLoad(load); err != nil {
				err = fmt.Errorf("load: %w", err)
			}
		}
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
	}
	return nodes, rows.Err()
}

// RenameNode gives the node a new name, keeping everything else (an agent
// adopting a node an operator added by URL). A name another node has is
// ErrConflict.
func (s *Store) RenameNode(ctx context.Context, id, name string) error {
	if name == "" {
		return fmt.Errorf("store: rename node %q: empty name", id)
	}
	res, err := s.exec(ctx, s.db, `UPDATE nodes SET name = ?, changed = `+s.changeMark()+` WHERE id = ?`, name, id)
	if err != nil {
		// As in UpsertNode: a unique name violation shows as the name's owner.
		var owner string
		if s.queryRow(ctx, s.db, `SELECT id FROM nodes WHERE name = ? AND id <> ?`, name, id).Scan(&owner) == nil {
			return fmt.Errorf("store: rename node %q to %q: the name belongs to node %q: %w", id, name, owner, ErrConflict)
		}
		return fmt.Errorf("store: rename node %q to %q: %w", id, name, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("store: rename node %q to %q: %w", id, name, cmp.Or(err, ErrNotFound))
	}
	return nil
}

// SetNodeState sets the node's admin state and returns the node.
func (s *Store) SetNodeState(ctx context.Context, id string, st fleet.AdminState) (records.Node, error) {
	if err := validState(st); err != nil {
		return records.Node{}, fmt.Errorf("store: set node %q state: %w", id, err)
	}
	n, err := s.writeNodeRow(ctx, `UPDATE nodes SET state = ?, changed = `+s.changeMark()+` WHERE id = ?`, nil, st, id)
	if err != nil {
		return records.Node{}, fmt.Errorf("store: set node %q state %s: %w", id, st, notFound(err))
	}
	return n, nil
}

// SetNodeStateIf sets the node's admin state to to if it is from, and says
// whether it did (compare-and-set).
func (s *Store) SetNodeStateIf(ctx context.Context, id string, from, to fleet.AdminState) (bool, error) {
	if err := validState(to); err != nil {
		return false, fmt.Errorf("store: set node %q state: %w", id, err)
	}
	res, err := s.exec(ctx, s.db, `UPDATE nodes SET state = ?, changed = `+s.changeMark()+` WHERE id = ? AND state = ?`, to, id, from)
	if err != nil {
		return false, fmt.Errorf("store: set node %q state %s if %s: %w", id, to, from, err)
	}
	if changed, err := res.RowsAffected(); err != nil || changed == 1 {
		return changed == 1, err
	}
	if err := s.nodeExists(ctx, id); err != nil {
		return false, fmt.Errorf("store: set node %q state %s if %s: %w", id, to, from, err)
	}
	return false, nil
}

// nodeExists is nil if the node exists, else ErrNotFound or the failure.
func (s *Store) nodeExists(ctx context.Context, id string) error {
	var one int
	return notFound(s.queryRow(ctx, s.db, `SELECT 1 FROM nodes WHERE id = ?`, id).Scan(&one))
}

// DeleteNode deletes the node and its meeting placements, and leaves a
// tombstone that tells the other replicas (NodeChanges).
func (s *Store) DeleteNode(ctx context.Context, id string) error {
	if err := s.deleteNode(ctx, id); err != nil {
		return fmt.Errorf("store: delete node %q: %w", id, err)
	}
	return nil
}

func (s *Store) deleteNode(ctx context.Context, id string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, s.q(`DELETE FROM nodes WHERE id = ?`), id)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return cmp.Or(err, ErrNotFound)
	}
	now := time.Now()
	_, err = tx.ExecContext(ctx, s.q(`INSERT INTO node_tombstones (id, changed, deleted_at) VALUES (?, `+s.changeMark()+`, ?)
		ON CONFLICT (id) DO UPDATE SET changed = excluded.changed, deleted_at = excluded.deleted_at`), id, millis(now))
	if err != nil {
		return err
	}
	// A replica that has not looked for longer reads the whole fleet anyway
	// (its backstop refresh).
	if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM node_tombstones WHERE deleted_at < ?`), millis(now.Add(-tombstoneTTL))); err != nil {
		return err
	}
	return tx.Commit()
}

// reportRow is one report as RecordReports sends it to the database.
type reportRow struct {
	NodeID string      `json:"id"`
	At     int64       `json:"at"` // Unix ms
	Seq    int64       `json:"seq"`
	Load   *fleet.Load `json:"-"` // the caller's, for the call`
	// Stored is Load as stored (appendLoad), for PostgreSQL's batch.
	Stored string `json:"load,omitempty"`
}

// RecordReports stores a batch of reports in one transaction and returns
// the change marker its rows took (NodeChanges' skip). A report applies
// only if it was received after the node's stored one, so a late batch never
// overwrites a newer report; of several reports for one node in the batch,
// the newest counts. Reports for unknown nodes are ignored.
//
// Only the report's columns are written, and its marker goes to reported,
// never to changed: a change another replica made to the node stays marked
// as that replica's.
func (s *Store) RecordReports(ctx context.Context, reports []records.Report) (int64, error) {
	if len(reports) == 0 {
		return 0, nil
	}
	// The rows go in the order of their node IDs, the newest of a node's
	// reports only: the writes then walk the table in key order (on SQLite
	// consecutive rows share pages), and concurrent flushes of several
	// replicas lock rows in one order.
	order := sortedIndexes(len(reports), func(a, b int) int {
		x, y := &reports[a], &reports[b]
		// A node's newest last, by (receive ms, seq); of equals the first
		// in the batch.
		return cmp.Or(strings.Compare(x.NodeID, y.NodeID), cmp.Compare(millis(x.ReceivedAt), millis(y.ReceivedAt)),
			cmp.Compare(x.Seq, y.Seq), cmp.Compare(b, a))
	})
	rows := make([]reportRow, 0, len(reports))
	for i, o := range order {
		if r := &reports[o]; i+1 == len(order) || reports[order[i+1]].NodeID != r.NodeID {
			rows = append(rows, reportRow{NodeID: r.NodeID, At: millis(r.ReceivedAt), Seq: r.Seq, Load: &r.Load})
		}
	}
	var (
		mark int64
		err  error
	)
	if s.dialect == postgresDialect {
		mark, err = s.recordReportsPostgres(ctx, rows)
	} else {
		mark, err = s.recordReportsSQLite(ctx, rows)
	}
	if err != nil {
		return 0, fmt.Errorf("store: record %d reports: %w", len(reports), err)
	}
	return mark, nil
}

// recordReportsPostgres sends the batch as one JSON parameter: one round
// trip whatever its size. The marker is the transaction's ID.
func (s *Store) recordReportsPostgres(ctx context.Context, rows []reportRow) (int64, error) {
	for i := range rows {
		rows[i].Stored = string(appendLoad(nil, *rows[i].Load))
	}
	batch, err := json.Marshal(rows)
	if err != nil {
		return 0, err
	}
	var mark int64
	err = s.queryRow(ctx, s.db, `WITH r AS (
			SELECT CAST(value ->> 'id' AS TEXT) AS id, CAST(value ->> 'at' AS BIGINT) AS received_at,
				CAST(value ->> 'seq' AS BIGINT) AS seq, CAST(value ->> 'load' AS TEXT) AS load_json
			FROM `+s.jsonElements(false)+`
		), u AS (
			UPDATE nodes SET last_report_at = r.received_at, last_seq = r.seq, load_json = r.load_json,
				reported = `+s.changeMark()+`
			FROM r WHERE nodes.id = r.id AND nodes.last_report_at < r.received_at
			RETURNING 1
		)
		SELECT `+s.changeMark(), string(batch)).Scan(&mark)
	return mark, err
}

// flushYieldRows is how many rows recordReportsSQLite writes between
// letting other goroutines run (about half a millisecond of work).
const flushYieldRows = 64

// takeReportMark moves SQLite's change counter on and returns the marker a
// report's rows take (their reported column). The writer of reported does
// this itself, once a transaction: a trigger doing it for every row (as
// for changed) cost 10-30% of a flush of 2,000 reports (measured).
const takeReportMark = `UPDATE node_changes SET last = last + 1 WHERE id = 1 RETURNING last`

// recordReportsSQLite writes the rows with one prepared statement in one
// transaction (SQLite runs in this process: binding values costs less than
// parsing a JSON batch), all under one marker taken from the counter.
//
// It talks to the driver's connection itself (sql.Conn.Raw): through
// database/sql each row's statement cost about 600 bytes of garbage (its
// arguments' slice, their boxes, its result), over a megabyte a flush of
// 2,000 reports; here the rows share one arguments slice.
func (s *Store) recordReportsSQLite(ctx context.Context, rows []reportRow) (int64, error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	var mark int64
	err = conn.Raw(func(dc any) error {
		c, ok := dc.(sqliteConn)
		if !ok {
			return fmt.Errorf("the SQLite driver's connection (%T) cannot execute, query and prepare with a context", dc)
		}
		var err error
		mark, err = writeReportsSQLite(ctx, c, rows)
		return err
	})
	return mark, err
}

// sqliteConn is what writeReportsSQLite needs of the driver's connection.
type sqliteConn interface {
	driver.ExecerContext
	driver.QueryerContext
	driver.ConnPrepareContext
}

func writeReportsSQLite(ctx context.Context, c sqliteConn, rows []reportRow) (mark int64, err error) {
	// Each row's statement is short: a context that cannot end spares the
	// driver a goroutine per statement to watch it; ctx is checked between
	// rows instead.
	rowCtx := context.WithoutCancel(ctx)
	if _, err := c.ExecContext(ctx, `BEGIN IMMEDIATE`, nil); err != nil {
		return 0, err
	}
	defer func() {
		if err != nil {
			_, _ = c.ExecContext(rowCtx, `ROLLBACK`, nil)
		}
	}()
	if mark, err = queryInt64(ctx, c, takeReportMark); err != nil {
		return 0, err
	}
	st, err := c.PrepareContext(ctx, `UPDATE node_reports SET last_report_at = ?, last_seq = ?, load_json = ?, reported = ?
		WHERE id = ? AND last_report_at < ?`)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	exec, ok := st.(driver.StmtExecContext)
	if !ok {
		return 0, fmt.Errorf("the SQLite driver's statement (%T) cannot execute with a context", st)
	}
	args := make([]driver.NamedValue, 6)
	for i := range args {
		args[i].Ordinal = i + 1
	}
	args[3].Value = mark
	var load []byte
	for i, r := range rows {
		if i%flushYieldRows == 0 && i > 0 {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			// SQLite runs in this process: a flush of thousands of rows
			// is tens of milliseconds of CPU in one goroutine. Requests
			// waiting for this thread run now, not after its time slice.
			runtime.Gosched()
		}
		load = appendLoad(load[:0], *r.Load)
		at := driver.Value(r.At) // boxed once for both
		// The driver copies a bound string into SQLite's memory before
		// ExecContext returns (modernc's bindText), and load is written
		// again only after: no copy of it per row (200 bytes a report).
		args[0].Value, args[1].Value, args[2].Value = at, r.Seq, unsafe.String(unsafe.SliceData(load), len(load))
		args[4].Value, args[5].Value = r.NodeID, at
		if _, err := exec.ExecContext(rowCtx, args); err != nil {
			return 0, err
		}
	}
	_, err = c.ExecContext(rowCtx, `COMMIT`, nil)
	return mark, err
}

// queryInt64 runs a query of one int64 on the driver's connection.
func queryInt64(ctx context.Context, c driver.QueryerContext, query string) (int64, error) {
	rows, err := c.QueryContext(ctx, query, nil)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	v := make([]driver.Value, 1)
	if err := rows.Next(v); err != nil {
		return 0, fmt.Errorf("%s: %w", query, err)
	}
	n, ok := v[0].(int64)
	if !ok {
		return 0, fmt.Errorf("%s: got %T, want an integer", query, v[0])
	}
	return n, nil
}

// RecordPoll stores the load a poll of an operator-added node found at at,
// unless a newer poll is stored. LastSeq counts the polls.
func (s *Store) RecordPoll(ctx context.Context, id string, at time.Time, load fleet.Load) error {
	if err := s.recordPoll(ctx, id, millis(at), string(appendLoad(nil, load))); err != nil {
		return fmt.Errorf("store: record poll of node %q: %w", id, err)
	}
	return nil
}

func (s *Store) recordPoll(ctx context.Context, id string, at int64, load string) error {
	update := `UPDATE ` + s.reportRows() + ` SET last_report_at = ?, last_seq = last_seq + 1, load_json = ?, reported = %s
		WHERE id = ? AND last_report_at < ?`
	applied := func(res sql.Result) error {
		n, err := res.RowsAffected()
		if err == nil && n == 0 {
			err = s.nodeExists(ctx, id) // a stale poll is no error, an unknown node is
		}
		return err
	}
	if s.dialect == postgresDialect {
		res, err := s.exec(ctx, s.db, fmt.Sprintf(update, s.changeMark()), at, load, id, at)
		if err != nil {
			return err
		}
		return applied(res)
	}
	// SQLite: the writer of a report's marker takes it from the counter
	// and moves the counter on, as recordReportsSQLite does.
	tx, err := s.db.BeginTx(ctx, nil) // BEGIN IMMEDIATE
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var mark int64
	if err := tx.QueryRowContext(ctx, takeReportMark).Scan(&mark); err != nil {
		return err
	}
	res, err := tx.ExecContext(ctx, fmt.Sprintf(update, "?"), at, load, mark, id, at)
	if err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	return applied(res)
}
