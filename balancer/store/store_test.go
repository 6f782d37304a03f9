package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/balancer/records"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// backend is one database that tests open stores on.
type backend struct {
	dsn string
}

// open opens another Store on the backend's database, closed when the test
// ends. Two stores on one database stand for two balancer processes.
func (b backend) open(t testing.TB) *Store {
	t.Helper()
	s, err := Open(context.Background(), b.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

// backends are the dialects, each making a fresh database per test.
var backends = []struct {
	name string
	dsn  func(t testing.TB) string
}{
	{sqliteDialect, func(t testing.TB) string { return "sqlite:" + filepath.Join(t.TempDir(), "data", sqliteFile) }},
	{postgresDialect, func(t testing.TB) string { return testenv.Postgres(t) }},
}

// forEachBackend runs f against a fresh database of each dialect, with a
// store open on it.
func forEachBackend(t *testing.T, f func(t *testing.T, s *Store, b backend)) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			b := backend{dsn: be.dsn(t)}
			s := b.open(t)
			if s.Dialect() != be.name {
				t.Fatalf("Dialect() = %q, want %q", s.Dialect(), be.name)
			}
			f(t, s, b)
		})
	}
}

// t0 is the tests' clock origin.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// addNode inserts a node named name with URL https://NAME/bigbluebutton/api/.
func addNode(t testing.TB, s *Store, name string) records.Node {
	t.Helper()
	n, err := s.UpsertNode(t.Context(), records.Node{
		Name: name, URL: "https://" + name + "/bigbluebutton/api/", Secret: "secret-" + name,
		ReportInterval: 5 * time.Second, CreatedAt: t0,
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestParseDSN(t *testing.T) {
	tests := []struct {
		dsn, dialect, target, err string
	}{
		{dsn: "postgres://u:pw@db:5432/lb?sslmode=disable", dialect: postgresDialect, target: "postgres://u:pw@db:5432/lb?sslmode=disable"},
		{dsn: "postgresql://db/lb", dialect: postgresDialect, target: "postgresql://db/lb"},
		{dsn: "sqlite:/var/lib/bbb-balancer/balancer.db", dialect: sqliteDialect, target: "/var/lib/bbb-balancer/balancer.db"},
		{dsn: "sqlite:rel/balancer.db", dialect: sqliteDialect, target: "rel/balancer.db"},
		{dsn: "/var/lib/bbb-balancer/balancer.db", dialect: sqliteDialect, target: "/var/lib/bbb-balancer/balancer.db"},
		{dsn: "mysql://u:hunter2@db/lb", err: `unsupported database URL scheme "mysql"`},
		{dsn: "", err: "empty database path"},
		{dsn: "sqlite:", err: "empty database path"},
		{dsn: "sqlite:/tmp/x.db?mode=ro", err: "must not contain"},
	}
	for _, tt := range tests {
		t.Run(tt.dsn, func(t *testing.T) {
			dialect, target, err := parseDSN(tt.dsn)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one containing %q", err, tt.err)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("error shows the password: %v", err)
				}
				return
			}
			if err != nil || dialect != tt.dialect || target != tt.target {
				t.Errorf("parseDSN = %q, %q, %v; want %q, %q", dialect, target, err, tt.dialect, tt.target)
			}
		})
	}
}

func TestOpenDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "data")
	s, err := OpenDataDir(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := os.Stat(filepath.Join(dir, sqliteFile)); err != nil {
		t.Fatal(err)
	}
	if s.Dialect() != sqliteDialect {
		t.Errorf("Dialect() = %q, want %q", s.Dialect(), sqliteDialect)
	}
	if err := s.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		db           *sql.DB
		pragma, want string
	}{
		{s.db, "journal_mode", "wal"},
		{s.db, "busy_timeout", "5000"},
		{s.db, "foreign_keys", "1"},
		{s.db, "synchronous", "1"}, // NORMAL
		{s.db, "query_only", "0"},
		{s.rdb, "journal_mode", "wal"},
		{s.rdb, "busy_timeout", "5000"},
		{s.rdb, "query_only", "1"},
	} {
		var got string
		if err := tt.db.QueryRowContext(t.Context(), "PRAGMA "+tt.pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("PRAGMA %s = %s, want %s (writer: %v)", tt.pragma, got, tt.want, tt.db == s.db)
		}
	}
}

func TestMigrations(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, b backend) {
		versions := func(s *Store) []int {
			t.Helper()
			rows, err := s.db.QueryContext(t.Context(), `SELECT version FROM schema_migrations ORDER BY version`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var vs []int
			for rows.Next() {
				var v int
				if err := rows.Scan(&v); err != nil {
					t.Fatal(err)
				}
				vs = append(vs, v)
			}
			return vs
		}
		want := fmt.Sprint(versions(s))
		if n := len(migrations); want != fmt.Sprint(seq(n)) {
			t.Fatalf("schema_migrations = %s, want %v", want, seq(n))
		}

		t.Run("idempotent", func(t *testing.T) {
			addNode(t, s, "bbb1")
			// Replicas starting at once: the advisory lock (PostgreSQL) or
			// the write lock (SQLite) serializes them.
			var wg sync.WaitGroup
			errs := make(chan error, 4)
			for range 4 {
				wg.Go(func() {
					s, err := Open(t.Context(), b.dsn)
					if err == nil {
						err = s.Close()
					}
					errs <- err
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			again := b.open(t)
			if got := fmt.Sprint(versions(again)); got != want {
				t.Errorf("after reopening, schema_migrations = %s, want %s", got, want)
			}
			if _, err := again.NodeByName(t.Context(), "bbb1"); err != nil {
				t.Error(err)
			}
		})

		t.Run("newer schema refused", func(t *testing.T) {
			newer := len(migrations) + 1
			if _, err := s.db.ExecContext(t.Context(), s.q(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, 0)`), newer); err != nil {
				t.Fatal(err)
			}
			s2, err := Open(t.Context(), b.dsn)
			if err == nil {
				s2.Close()
				t.Fatal("Open succeeded on a database of a newer schema")
			}
			wantErr := fmt.Sprintf("database schema version %d is newer than this bbb-balancer (%d): upgrade bbb-balancer", newer, len(migrations))
			if !strings.Contains(err.Error(), wantErr) {
				t.Errorf("err = %v, want one containing %q", err, wantErr)
			}
		})
	})
}

// seq is 1..n.
func seq(n int) []int {
	vs := make([]int, n)
	for i := range vs {
		vs[i] = i + 1
	}
	return vs
}

func TestReopenPersists(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, b backend) {
		ctx := t.Context()
		n := addNode(t, s, "bbb1")
		if _, err := s.SetNodeState(ctx, n.ID, fleet.Cordoned); err != nil {
			t.Fatal(err)
		}
		if _, err := s.RecordReports(ctx, []records.Report{{NodeID: n.ID, Seq: 7, ReceivedAt: t0.Add(time.Second), Load: fleet.Load{Meetings: 3}}}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.ClaimMeeting(ctx, records.Meeting{MeetingID: "m1", NodeID: n.ID, PlacedAt: t0}); err != nil {
			t.Fatal(err)
		}
		want, err := s.Node(ctx, n.ID)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}

		s = b.open(t)
		got, err := s.Node(ctx, n.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("after reopening:\n got %+v\nwant %+v", got, want)
		}
		if m, err := s.Meeting(ctx, "m1"); err != nil || m.NodeID != n.ID {
			t.Errorf("after reopening, Meeting(m1) = %+v, %v; want it on %s", m, err, n.ID)
		}
	})
}

// TestConcurrentUse has goroutines of two stores on one database (two
// processes) claim, move, report and read at once: none may fail, not even
// with "database is locked".
func TestConcurrentUse(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, b backend) {
		ctx := t.Context()
		stores := []*Store{s, b.open(t)}
		var nodes []records.Node
		for i := range 8 {
			nodes = append(nodes, addNode(t, s, fmt.Sprintf("bbb%d", i)))
		}
		const workers, rounds = 8, 40
		var wg sync.WaitGroup
		errs := make(chan error, workers*rounds)
		for w := range workers {
			st := stores[w%len(stores)]
			wg.Go(func() {
				for r := range rounds {
					at := t0.Add(time.Duration(r*workers+w) * time.Millisecond)
					node := nodes[(w+r)%len(nodes)]
					m, _, err := st.ClaimMeeting(ctx, records.Meeting{MeetingID: fmt.Sprintf("m%d", r%10), NodeID: node.ID, PlacedAt: at})
					if err == nil {
						_, err = st.MoveMeeting(ctx, m.MeetingID, m.NodeID, node.ID, at)
						if errors.Is(err, ErrNotFound) {
							err = nil // another worker deleted it meanwhile
						}
					}
					if err == nil {
						var batch []records.Report
						for i, n := range nodes {
							batch = append(batch, records.Report{NodeID: n.ID, Seq: int64(r), ReceivedAt: at, Load: fleet.Load{Meetings: i}})
						}
						_, err = st.RecordReports(ctx, batch)
					}
					if err == nil {
						_, err = st.Nodes(ctx)
					}
					if err == nil {
						_, err = st.PlacedSince(ctx, time.Time{})
					}
					if err == nil && r%10 == 9 {
						err = st.DeleteMeeting(ctx, m.MeetingID, node.ID)
					}
					if err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

// A data directory that cannot be made is named, with the reason.
func TestUnwritableDataDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := OpenDataDir(context.Background(), filepath.Join(file, "data"))
	if err == nil || !strings.Contains(err.Error(), filepath.Join(file, "data")) || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("open under a file: %v, want the path and the reason", err)
	}
}

// TestMigrationMovesReports builds a SQLite database of schema version 10,
// its nodes' reports in the nodes table, and opens it: migration 11 moves
// each report into node_reports, and the nodes read back as they were.
func TestMigrationMovesReports(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), sqliteFile)
	old, err := openSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := old.migrateTx(ctx, 10); err != nil {
		t.Fatal(err)
	}
	exec := func(stmt string, args ...any) {
		t.Helper()
		if _, err := old.db.ExecContext(ctx, stmt, args...); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	load := fleet.Load{CPUPercent: 12.5, Meetings: 3, Participants: 40, BBBHealthy: true, BBBVersion: "3.0.4"}
	for i, name := range []string{"bbb-b", "bbb-a", "bbb-never"} {
		reportAt, seq, stored, mark := t0.Add(time.Duration(i)*time.Second).UnixMilli(), int64(100+i), string(appendLoad(nil, load)), int64(7+i)
		if name == "bbb-never" { // registered, never reported
			reportAt, seq, stored, mark = 0, 0, `{}`, 0
		}
		exec(`INSERT INTO nodes (id, name, url, secret, role, state, source, created_at, changed,
			last_report_at, last_seq, load_json, reported) VALUES (?, ?, ?, 's', 'bbb', 'enabled', 'agent', ?, 1, ?, ?, ?, ?)`,
			"id-"+name, name, "https://"+name+"/bigbluebutton/api/", t0.UnixMilli(), reportAt, seq, stored, mark)
	}
	exec(`UPDATE node_changes SET last = 9`)
	old.Close()

	s, err := Open(ctx, "sqlite:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	nodes, err := s.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range nodes {
		got = append(got, fmt.Sprintf("%s %d %d %v %d", n.Name, millis(n.LastReportAt), n.LastSeq, n.Load.BBBHealthy, n.Load.Participants))
	}
	want := []string{
		fmt.Sprintf("bbb-a %d 101 true 40", t0.Add(time.Second).UnixMilli()),
		fmt.Sprintf("bbb-b %d 100 true 40", t0.UnixMilli()),
		"bbb-never 0 0 false 0",
	}
	if !slices.Equal(got, want) {
		t.Errorf("after migrating, nodes = %q, want %q", got, want)
	}
	// The markers moved too: a refresh from marker 8 reads bbb-a's report
	// (8) and nothing older.
	ch, err := s.NodeChanges(ctx, 8)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Nodes) != 1 || ch.Nodes[0].Name != "bbb-a" {
		t.Errorf("NodeChanges(8) after migrating = %v, want bbb-a only", ch.Nodes)
	}
	// Reports and deletions work on the new table.
	if _, err := s.RecordReports(ctx, []records.Report{{NodeID: "id-bbb-never", Seq: 1, ReceivedAt: t0.Add(time.Minute), Load: load}}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.NodeByName(ctx, "bbb-never"); err != nil || n.LastSeq != 1 || !n.LastReportAt.Equal(t0.Add(time.Minute)) {
		t.Errorf("bbb-never after a report: %+v, %v", n, err)
	}
	if err := s.DeleteNode(ctx, "id-bbb-b"); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM node_reports WHERE id = 'id-bbb-b'`).Scan(&left); err != nil || left != 0 {
		t.Errorf("a deleted node's report rows: %d, %v; want 0", left, err)
	}
}
