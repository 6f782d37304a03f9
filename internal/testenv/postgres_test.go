package testenv

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

func TestPostgres(t *testing.T) {
	dsn1, dsn2 := Postgres(t), Postgres(t)
	if dsn1 == dsn2 {
		t.Fatalf("two calls returned the same database %s", dsn1)
	}
	u, err := url.Parse(dsn1)
	if err != nil {
		t.Fatal(err)
	}
	if u.Hostname() != "127.0.0.1" || u.Query().Get("sslmode") != "disable" {
		t.Errorf("DSN %s: want host 127.0.0.1 and sslmode=disable", dsn1)
	}
	ctx := t.Context()
	conn1, conn2 := connect(t, dsn1), connect(t, dsn2)

	var db1, db2 string
	if err := conn1.QueryRow(ctx, "SELECT current_database()").Scan(&db1); err != nil {
		t.Fatal(err)
	}
	if err := conn2.QueryRow(ctx, "SELECT current_database()").Scan(&db2); err != nil {
		t.Fatal(err)
	}
	if db1 == db2 {
		t.Fatalf("both DSNs connect to database %s", db1)
	}
	for _, conn := range []*pgx.Conn{conn1, conn2} {
		if n := userTables(t, conn); n != 0 {
			t.Errorf("database %s has %d tables, want an empty database", conn.Config().Database, n)
		}
	}

	if _, err := conn1.Exec(ctx, "CREATE TABLE t (id int)"); err != nil {
		t.Fatal(err)
	}
	if n := userTables(t, conn2); n != 0 {
		t.Errorf("a table created in %s shows in %s", db1, db2)
	}

	t.Run("listens on 127.0.0.1 only", func(t *testing.T) {
		var addrs string
		if err := conn1.QueryRow(ctx, "SHOW listen_addresses").Scan(&addrs); err != nil {
			t.Fatal(err)
		}
		if addrs != "127.0.0.1" {
			t.Errorf("listen_addresses = %q, want 127.0.0.1", addrs)
		}
		port, err := strconv.Atoi(u.Port())
		if err != nil {
			t.Fatal(err)
		}
		// 0100007F is 127.0.0.1 as the kernel prints it.
		want := []string{fmt.Sprintf("tcp 0100007F:%04X", port)}
		if got := listeners(t, port); !slices.Equal(got, want) {
			t.Errorf("listening sockets on port %s: %q, want %q", u.Port(), got, want)
		}
	})

	var dropped string
	t.Run("dropped after the test", func(t *testing.T) {
		dropped = connect(t, Postgres(t)).Config().Database
	})
	var n int
	if err := conn1.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", dropped).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("database %s still exists after its test ended", dropped)
	}
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func userTables(t *testing.T, conn *pgx.Conn) int {
	t.Helper()
	var n int
	err := conn.QueryRow(t.Context(), `SELECT count(*) FROM information_schema.tables
		WHERE table_schema NOT IN ('pg_catalog', 'information_schema')`).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// listeners lists the TCP sockets listening on port, from /proc/net/tcp and
// /proc/net/tcp6, as "tcp ADDR:PORT" in the kernel's hex notation.
func listeners(t *testing.T, port int) []string {
	t.Helper()
	var got []string
	for _, proto := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile("/proc/net/" + proto)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			const listen = "0A"
			if len(f) > 3 && f[3] == listen && strings.HasSuffix(f[1], fmt.Sprintf(":%04X", port)) {
				got = append(got, proto+" "+f[1])
			}
		}
	}
	return got
}

func TestFindPostgres(t *testing.T) {
	// tree makes executable files at the given paths under a new directory.
	tree := func(t *testing.T, files ...string) string {
		dir := t.TempDir()
		for _, f := range files {
			path := filepath.Join(dir, f)
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, nil, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	tests := []struct {
		name      string
		path, lib []string // files in the PATH directory and in the lib directory
		want      string   // directory of the binaries found, relative to PATH ("path") or lib ("lib/...")
	}{
		{name: "PATH first", path: []string{"initdb", "postgres"}, lib: []string{"15/bin/initdb", "15/bin/postgres"}, want: "path"},
		{name: "highest version", lib: []string{"9.6/bin/initdb", "9.6/bin/postgres", "13/bin/initdb", "13/bin/postgres",
			"15/bin/initdb", "15/bin/postgres"}, want: "lib/15/bin"},
		{name: "incomplete PATH and version skipped", path: []string{"initdb"}, lib: []string{"13/bin/initdb", "13/bin/postgres",
			"16/bin/initdb"}, want: "lib/13/bin"},
		{name: "none", path: []string{"psql"}, lib: []string{"15/bin/psql"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pathDir, libDir := tree(t, tt.path...), tree(t, tt.lib...)
			t.Setenv("PATH", pathDir)
			initdb, postgres, err := findPostgres(libDir)
			if tt.want == "" {
				if !errors.Is(err, errNotInstalled) {
					t.Fatalf("err = %v, want errNotInstalled", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := pathDir
			if rest, ok := strings.CutPrefix(tt.want, "lib/"); ok {
				want = filepath.Join(libDir, rest)
			}
			if initdb != filepath.Join(want, "initdb") || postgres != filepath.Join(want, "postgres") {
				t.Errorf("found %s and %s, want both in %s", initdb, postgres, want)
			}
		})
	}
}

// recorder is a testing.TB that records Skip and Fatalf instead of ending the test.
type recorder struct {
	testing.TB
	skipped, failed bool
}

func (r *recorder) Skip(...any)           { r.skipped = true }
func (r *recorder) Fatalf(string, ...any) { r.failed = true }

func TestUnavailable(t *testing.T) {
	for _, tt := range []struct {
		ci       string
		wantSkip bool
	}{
		{ci: "", wantSkip: true},
		{ci: "true", wantSkip: false},
		{ci: "1", wantSkip: false},
	} {
		t.Run("CI="+tt.ci, func(t *testing.T) {
			t.Setenv("CI", tt.ci)
			r := &recorder{TB: t}
			unavailable(r, errNotInstalled)
			if r.skipped != tt.wantSkip || r.failed == tt.wantSkip {
				t.Errorf("skipped=%v failed=%v, want skipped=%v failed=%v", r.skipped, r.failed, tt.wantSkip, !tt.wantSkip)
			}
		})
	}
}

func TestPGRestart(t *testing.T) {
	pg := NewPG(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE kept (v TEXT); INSERT INTO kept VALUES ('before')`); err != nil {
		t.Fatal(err)
	}
	pg.Stop(t)
	if err := conn.Ping(ctx); err == nil {
		t.Error("a connection still answers with the cluster stopped")
	}
	if c, err := pgx.Connect(ctx, pg.URL()); err == nil {
		c.Close(ctx)
		t.Error("connected to a stopped cluster")
	}
	pg.Start(t)
	pg.Restart(t)
	conn, err = pgx.Connect(ctx, pg.URL())
	if err != nil {
		t.Fatalf("after the restart: %v", err)
	}
	defer conn.Close(ctx)
	var v string
	if err := conn.QueryRow(ctx, `SELECT v FROM kept`).Scan(&v); err != nil || v != "before" {
		t.Errorf("after the restart: %q, %v", v, err)
	}
}
