package testenv

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	pgUser   = "postgres"            // the cluster's superuser; loopback connections are trusted
	pgLibDir = "/usr/lib/postgresql" // Debian's home of versioned server binaries
)

// Postgres returns the URL of a new, empty database, dropped when the test
// ends, in a PostgreSQL cluster that this test binary shares:
// postgres://postgres@127.0.0.1:PORT/NAME?sslmode=disable. The cluster starts
// on first use, listens on 127.0.0.1 only, and runs with fsync off.
func Postgres(t testing.TB) string {
	t.Helper()
	requireMain(t)
	c, err := cluster()
	if errors.Is(err, errNotInstalled) {
		unavailable(t, err)
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	name := dbName(t.Name())
	ident := pgx.Identifier{name}.Sanitize()
	if err := c.exec("CREATE DATABASE " + ident); err != nil {
		t.Fatalf("testenv: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := c.exec("DROP DATABASE " + ident + " WITH (FORCE)"); err != nil {
			t.Errorf("testenv: drop database %s: %v", name, err)
		}
	})
	return c.url(name)
}

var dbSeq atomic.Int64

// dbName makes a unique database name that tells which test it belongs to.
func dbName(test string) string {
	name := strings.Map(func(r rune) rune {
		switch {
		case 'a' <= r && r <= 'z', '0' <= r && r <= '9':
			return r
		case 'A' <= r && r <= 'Z':
			return r - 'A' + 'a'
		}
		return '_'
	}, test)
	if len(name) > 40 { // PostgreSQL names are at most 63 bytes
		name = name[:40]
	}
	return name + "_" + strconv.FormatInt(dbSeq.Add(1), 10)
}

type pgCluster struct {
	port int
}

var cluster = sync.OnceValues(startPostgres)

// startPostgres creates a cluster in this test binary's directory and starts
// it, with its unix socket there too.
func startPostgres() (*pgCluster, error) {
	initdb, postgres, err := findPostgres(pgLibDir)
	if err != nil {
		return nil, err
	}
	dir, err := makeDir("postgres")
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	err = run(ctx, "initdb", dir, initdb,
		"-D", data, "-U", pgUser, "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
	if err != nil {
		return nil, err
	}

	port, err := freePort()
	if err != nil {
		return nil, err
	}
	c := &pgCluster{port: port}
	ctx, cancel = context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	// SIGINT is PostgreSQL's fast shutdown.
	if err := start(ctx, "postgres", dir, syscall.SIGINT, c.ping, postgres, c.args(dir)...); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *pgCluster) args(dir string) []string {
	return []string{
		"-D", filepath.Join(dir, "data"),
		"-p", strconv.Itoa(c.port),
		"-k", dir,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "max_connections=300", // room for many parallel tests with pools
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
	}
}

// PG is a PostgreSQL cluster of one test's own, which the test may stop and
// start (a database outage) without disturbing the shared one.
type PG struct {
	c        *pgCluster
	name     string
	dir, bin string
	mu       sync.Mutex
	proc     *process // nil while stopped
}

var pgSeq atomic.Int64

// NewPG starts a PostgreSQL cluster for this test only, stopped when the
// test ends. Its URL stays the same across Stop, Start and Restart.
func NewPG(t testing.TB) *PG {
	t.Helper()
	requireMain(t)
	initdb, postgres, err := findPostgres(pgLibDir)
	if errors.Is(err, errNotInstalled) {
		unavailable(t, err)
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	name := "postgres-own-" + strconv.FormatInt(pgSeq.Add(1), 10)
	dir, err := makeDir(name)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := run(ctx, name+"-initdb", dir, initdb, "-D", filepath.Join(dir, "data"), "-U", pgUser, "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"); err != nil {
		t.Fatal(err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	pg := &PG{c: &pgCluster{port: port}, name: name, dir: dir, bin: postgres}
	pg.Start(t)
	t.Cleanup(func() { pg.Stop(t) })
	if err := pg.c.exec("CREATE DATABASE test"); err != nil {
		t.Fatalf("testenv: create database: %v", err)
	}
	return pg
}

// URL is the cluster's database "test".
func (pg *PG) URL() string { return pg.c.url("test") }

// Stop stops the cluster (a fast shutdown: clients are cut off); stopping a
// stopped cluster does nothing.
func (pg *PG) Stop(t testing.TB) {
	t.Helper()
	pg.mu.Lock()
	defer pg.mu.Unlock()
	if pg.proc == nil {
		return
	}
	if err := pg.proc.stop(stopTimeout); err != nil {
		t.Errorf("testenv: stop %s: %v", pg.name, err)
	}
	pg.proc = nil
}

// Start starts a stopped cluster and waits until it answers.
func (pg *PG) Start(t testing.TB) {
	t.Helper()
	pg.mu.Lock()
	defer pg.mu.Unlock()
	if pg.proc != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	p, err := startOwn(ctx, pg.name, pg.dir, syscall.SIGINT, pg.c.ping, pg.bin, pg.c.args(pg.dir)...)
	if err != nil {
		t.Fatal(err)
	}
	pg.proc = p
}

// Restart stops and starts the cluster.
func (pg *PG) Restart(t testing.TB) {
	t.Helper()
	pg.Stop(t)
	pg.Start(t)
}

func (c *pgCluster) url(db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", pgUser, c.port, db)
}

func (c *pgCluster) ping(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, c.url("postgres"))
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

// exec runs one administrative statement in the postgres database.
func (c *pgCluster) exec(sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.url("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// findPostgres finds initdb and postgres in PATH, or else in the highest
// version's bin directory under libDir.
func findPostgres(libDir string) (initdb, postgres string, err error) {
	initdb, errInitdb := exec.LookPath("initdb")
	postgres, errPostgres := exec.LookPath("postgres")
	if errInitdb == nil && errPostgres == nil {
		return initdb, postgres, nil
	}

	type version struct {
		n   float64 // 15, 9.6
		bin string
	}
	var versions []version
	dirs, _ := filepath.Glob(filepath.Join(libDir, "*", "bin"))
	for _, bin := range dirs {
		n, err := strconv.ParseFloat(filepath.Base(filepath.Dir(bin)), 64)
		if err == nil && isExecutable(filepath.Join(bin, "initdb")) && isExecutable(filepath.Join(bin, "postgres")) {
			versions = append(versions, version{n, bin})
		}
	}
	if len(versions) == 0 {
		return "", "", fmt.Errorf("testenv: PostgreSQL %w: no initdb and postgres in PATH or %s/*/bin; run .ci/run or apt-get install postgresql",
			errNotInstalled, libDir)
	}
	newest := slices.MaxFunc(versions, func(a, b version) int { return cmp.Compare(a.n, b.n) })
	return filepath.Join(newest.bin, "initdb"), filepath.Join(newest.bin, "postgres"), nil
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}
