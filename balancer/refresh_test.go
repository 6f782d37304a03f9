package balancer

import (
	"context"
	"database/sql"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// TestIncrementalRefresh: a state change, a report, a new node and a
// removal through replica a are in replica b's registry after b's next
// refresh, which reads only what changed; a node gone without a trace
// (its tombstone expired) leaves at the whole-fleet backstop read.
func TestIncrementalRefresh(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dsn string) {
		clk := testenv.NewClock()
		a := newEnv(t, dsn, clk)
		a.addNodes(3)
		cx := ctxT(t)
		if err := a.srv.Flush(cx); err != nil {
			t.Fatal(err)
		}
		b := newEnv(t, dsn, clk) // its first refresh reads the whole fleet
		b.nodes = a.nodes
		refresh := func() {
			t.Helper()
			if err := b.srv.Refresh(cx); err != nil {
				t.Fatal(err)
			}
		}
		in := func() map[string]int {
			t.Helper()
			out := map[string]int{}
			for i, s := range b.status() {
				out[s.Name] = i
			}
			return out
		}
		incremental := func(what string) {
			t.Helper()
			if g := b.srv.reg.gen; g%fullRefreshEvery == 1 {
				t.Fatalf("%s: refresh %d reads the whole fleet; the test means to show the incremental read", what, g)
			}
		}

		n0, n1 := a.nodes[0].name, a.nodes[1].name
		a.adminState(n0, "cordon")
		refresh()
		incremental("state")
		if s := b.status()[in()[n0]]; s.State != fleet.Cordoned {
			t.Errorf("state: b has %s %s, want cordoned", n0, s.State)
		}

		clk.Advance(time.Second)
		a.report(a.nodes[1], fleet.Load{BBBHealthy: true, Meetings: 7, Participants: 42})
		if err := a.srv.Flush(cx); err != nil {
			t.Fatal(err)
		}
		refresh()
		incremental("report")
		if s := b.status()[in()[n1]]; s.Participants != 42 || s.Meetings != 7 {
			t.Errorf("report: b has %s with %d meetings, %d participants; want 7 and 42", n1, s.Meetings, s.Participants)
		}

		a.addNodes(1)
		added := a.nodes[3].name
		refresh()
		incremental("new node")
		if _, ok := in()[added]; !ok {
			t.Errorf("new node: b does not have %s", added)
		}

		if code, body := a.do(http.MethodDelete, "/admin/v1/servers/"+n1, adminToken, nil); code != http.StatusOK {
			t.Fatalf("remove: %d %s", code, body)
		}
		refresh()
		incremental("removal")
		if _, ok := in()[n1]; ok {
			t.Errorf("removal: b still has %s", n1)
		}

		// A deletion without a tombstone: only the whole-fleet read sees it.
		driver, target := "pgx", dsn
		if path, ok := strings.CutPrefix(dsn, "sqlite:"); ok {
			driver, target = "sqlite", path
		}
		db, err := sql.Open(driver, target)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		ghost := a.nodes[2].name
		if _, err := db.ExecContext(context.Background(), `DELETE FROM nodes WHERE name = '`+ghost+`'`); err != nil {
			t.Fatal(err)
		}
		refresh()
		incremental("ghost")
		if _, ok := in()[ghost]; !ok {
			t.Fatalf("a node deleted without a tombstone left at an incremental refresh: the test needs another way to show the backstop")
		}
		for b.srv.reg.gen%fullRefreshEvery != 0 {
			refresh()
		}
		refresh() // the whole-fleet read
		if _, ok := in()[ghost]; ok {
			t.Errorf("backstop: b still has %s after a whole-fleet read", ghost)
		}
		if _, ok := in()[added]; !ok {
			t.Errorf("backstop: b lost %s", added)
		}
	})
}

// TestFlushFailureKeepsReports: a flush the database refuses keeps its
// reports for the next flush, which writes each node's newest report (one
// that arrived in between wins).
func TestFlushFailureKeepsReports(t *testing.T) {
	dsn := backends[0].dsn(t)
	clk := testenv.NewClock()
	e := newEnv(t, dsn, clk)
	e.addNodes(3)
	cx := ctxT(t)
	if err := e.srv.Flush(cx); err != nil {
		t.Fatal(err)
	}
	// Another process holds SQLite's write lock.
	unlock := lockSQLite(t, strings.TrimPrefix(dsn, "sqlite:"))
	clk.Advance(time.Second)
	for _, nd := range e.nodes {
		e.report(nd, fleet.Load{BBBHealthy: true, Meetings: 1})
	}
	short, cancel := context.WithTimeout(cx, 300*time.Millisecond)
	defer cancel()
	if err := e.srv.Flush(short); err == nil {
		t.Fatal("a flush succeeded with the write lock held by another process")
	}
	unlock()
	clk.Advance(time.Second)
	e.report(e.nodes[1], fleet.Load{BBBHealthy: true, Meetings: 2}) // newer, in between
	if err := e.srv.Flush(cx); err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{1, 2, 1} {
		n, err := e.store.NodeByName(cx, e.nodes[i].name)
		if err != nil {
			t.Fatal(err)
		}
		if n.Load.Meetings != want {
			t.Errorf("%s stored with %d meetings, want %d", n.Name, n.Load.Meetings, want)
		}
	}
}
