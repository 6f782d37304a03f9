package balancer

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/agentapi"
	"github.com/bbb-agent/bbb-agent/balancer/adminapi"
	"github.com/bbb-agent/bbb-agent/balancer/store"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/bbb/sim"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(minimalReportsEnv); addr != "" {
		serveMinimalReports(addr) // this binary started as the ingestion benchmarks' floor
		return
	}
	testenv.Main(m)
}

const (
	lbSecret   = "balancer-secret-0123456789"
	agentToken = "agent-token-test"
	adminToken = "admin-token-test"
)

// backend opens a fresh store of one kind.
type backend struct {
	name string
	dsn  func(t *testing.T) string
}

var backends = []backend{
	{"sqlite", func(t *testing.T) string { return "sqlite:" + t.TempDir() + "/balancer.db" }},
	{"postgres", func(t *testing.T) string { return testenv.Postgres(t) }},
}

// forEachBackend runs a test on SQLite and on a real PostgreSQL.
func forEachBackend(t *testing.T, f func(t *testing.T, dsn string)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { f(t, b.dsn(t)) })
	}
}

// node is a simulated BBB server with its registration.
type node struct {
	name   string
	secret string
	sim    *sim.Server
	http   *httptest.Server
}

// env is a balancer replica with simulated nodes around it.
type env struct {
	t      testing.TB
	clock  *testenv.Clock
	srv    *Server
	http   *httptest.Server
	store  *store.Store
	nodes  []*node
	client *bbb.Client
}

func openStore(t testing.TB, dsn string) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newEnv(t testing.TB, dsn string, clk *testenv.Clock) *env {
	t.Helper()
	return newEnvWith(t, dsn, clk, nil)
}

// newEnvWith is newEnv, with prepare (if not nil) run on the replica
// before it serves.
func newEnvWith(t testing.TB, dsn string, clk *testenv.Clock, prepare func(*Server)) *env {
	t.Helper()
	st := openStore(t, dsn)
	srv, err := New(context.Background(), Config{
		Secrets: []string{lbSecret}, AgentToken: agentToken, AdminToken: adminToken,
		Clock: clk.Now, Logger: slog.New(slog.DiscardHandler), NodeTimeout: 2 * time.Second, GetMeetingsTimeout: time.Second,
	}, st)
	if err != nil {
		t.Fatal(err)
	}
	if prepare != nil {
		prepare(srv)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	t.Cleanup(srv.streams.closeAll) // hijacked: ts.Close leaves them open
	c, err := bbb.NewClient(ts.URL, lbSecret)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, clock: clk, srv: srv, http: ts, store: st, client: c}
}

// addNodes starts n simulated BBB servers and registers them as agents would.
func (e *env) addNodes(n int) {
	e.t.Helper()
	for i := 0; i < n; i++ {
		nd := &node{name: fmt.Sprintf("bbb%d", len(e.nodes)+1), secret: fmt.Sprintf("node-secret-%d-abcdef", len(e.nodes)+1)}
		nd.sim = sim.New(sim.Config{Secret: nd.secret, Seed: uint64(len(e.nodes) + 1)})
		nd.http = httptest.NewServer(nd.sim)
		e.t.Cleanup(nd.http.Close)
		e.nodes = append(e.nodes, nd)
		e.register(nd)
		e.report(nd, fleet.Load{BBBHealthy: true})
	}
}

func (e *env) register(nd *node) agentapi.RegisterResponse {
	e.t.Helper()
	var resp agentapi.RegisterResponse
	e.agentCall(agentapi.PathRegister, agentapi.RegisterRequest{Node: nd.name, URL: nd.http.URL, Secret: nd.secret, Role: "bbb", ReportIntervalSeconds: 5}, &resp, http.StatusOK)
	return resp
}

func (e *env) report(nd *node, load fleet.Load) agentapi.ReportResponse {
	e.t.Helper()
	var resp agentapi.ReportResponse
	e.agentCall(agentapi.PathReport, agentapi.ReportRequest{Node: nd.name, Load: load}, &resp, http.StatusOK)
	return resp
}

// reportAll sends every node's true figures, as its agent would.
func (e *env) reportAll() {
	e.t.Helper()
	for _, nd := range e.nodes {
		st := nd.sim.Stats()
		var l fleet.Load
		for _, m := range st.Meetings {
			if !m.Ended {
				l.Meetings++
				l.Participants += m.ParticipantCount
			}
		}
		l.BBBHealthy = true
		e.report(nd, l)
	}
}

func (e *env) agentCall(path string, in, out any, wantStatus int) {
	e.t.Helper()
	status, body := e.do(http.MethodPost, path, agentToken, in)
	if status != wantStatus {
		e.t.Fatalf("%s: HTTP %d, want %d: %s", path, status, wantStatus, body)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			e.t.Fatalf("%s: %v: %s", path, err, body)
		}
	}
}

func (e *env) do(method, path, token string, in any) (int, []byte) {
	e.t.Helper()
	var rd io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.http.URL+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// meetingsPerNode counts running meetings on each simulated node.
func (e *env) meetingsPerNode() map[string]int {
	out := map[string]int{}
	for _, nd := range e.nodes {
		for _, m := range nd.sim.Stats().Meetings {
			if !m.Ended {
				out[nd.name]++
			}
		}
	}
	return out
}

// nodeOf says which simulated node runs the meeting ("" if none).
func (e *env) nodeOf(meetingID string) []string {
	var on []string
	for _, nd := range e.nodes {
		for _, m := range nd.sim.Stats().Meetings {
			if m.MeetingID == meetingID && !m.Ended {
				on = append(on, nd.name)
			}
		}
	}
	return on
}

// placed says whether the store holds a placement of the meeting.
func (e *env) placed(meetingID string) bool {
	e.t.Helper()
	_, err := e.store.Meeting(context.Background(), meetingID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		e.t.Fatal(err)
	}
	return err == nil
}

// lockSQLite has another process's write transaction hold the SQLite
// database at path (a file path, no "sqlite:"): reads go on, writes wait the
// busy timeout and fail. The returned func ends the transaction; the test's
// cleanup does too.
func lockSQLite(t *testing.T, path string) (unlock func()) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(t.Context())
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(t.Context(), "BEGIN IMMEDIATE"); err != nil {
		conn.Close()
		db.Close()
		t.Fatal(err)
	}
	var once sync.Once
	unlock = func() {
		once.Do(func() {
			if _, err := conn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
				t.Errorf("ending the other process's transaction: %v", err)
			}
			conn.Close()
			db.Close()
		})
	}
	t.Cleanup(unlock)
	return unlock
}

func ctxT(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// status is what bbb-balancer status --json prints.
func (e *env) status() []adminapi.Server {
	e.t.Helper()
	code, body := e.do(http.MethodGet, adminapi.PathServers, adminToken, nil)
	if code != http.StatusOK {
		e.t.Fatalf("status: HTTP %d %s", code, body)
	}
	var out []adminapi.Server
	if err := json.Unmarshal(body, &out); err != nil {
		e.t.Fatal(err)
	}
	return out
}

func httptestServer(t *testing.T, srv *Server) string {
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts.URL
}

// ownGoroutines counts the process's goroutines but those the database
// drivers start for each query with a context that can end
// (database/sql's Rows.awaitDone, modernc.org/sqlite's interruptOnDone):
// they end with their query, but a busy machine schedules their exit late,
// and hundreds of them outlive a quick run of prunings (seen in CI).
func ownGoroutines() int {
	n := 0
	for _, g := range goroutineStacks() {
		if !strings.Contains(g, "created by database/sql.") && !strings.Contains(g, "created by modernc.org/sqlite.") &&
			!strings.Contains(g, "created by github.com/jackc/pgx/") {
			n++
		}
	}
	return n
}

// goroutinesIn counts the goroutines whose stack has fn in it.
func goroutinesIn(fn string) int {
	n := 0
	for _, g := range goroutineStacks() {
		if strings.Contains(g, fn) {
			n++
		}
	}
	return n
}

// goroutineStacks are the stacks of all goroutines, one each.
func goroutineStacks() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Split(string(buf[:n]), "\n\n")
		}
		buf = make([]byte, 2*len(buf))
	}
}
