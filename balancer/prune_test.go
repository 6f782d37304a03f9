package balancer

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/agentapi"
	"github.com/bbb-agent/bbb-agent/balancer/records"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// TestPruneQueue: when thousands of nodes report their meetings at once (a
// balancer restart), the prunings queue for one goroutine instead of one
// goroutine each waiting on the database.
func TestPruneQueue(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dsn string) {
		clk := testenv.NewClock()
		e := newEnv(t, dsn, clk)
		e.addNodes(1)
		cx := ctxT(t)
		node, err := e.store.NodeByName(cx, e.nodes[0].name)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"a", "b"} {
			if _, _, err := e.store.ClaimMeeting(cx, records.Meeting{MeetingID: id, NodeID: node.ID, PlacedAt: clk.Now()}); err != nil {
				t.Fatal(err)
			}
		}
		clk.Advance(time.Minute)
		before := ownGoroutines()
		for i := range 2000 {
			e.srv.pruneAsync(fmt.Sprintf("node-%04d", i), nil, clk.Now())
		}
		e.srv.pruneAsync(node.ID, []string{"a"}, clk.Now())
		// One goroutine drains the queue; the margin is for the test
		// environment's own (HTTP connections, the database pool).
		if n := ownGoroutines() - before; n > 500 {
			t.Errorf("%d goroutines more after 2,001 queued prunings; want one draining them", n)
		}
		e.srv.bg.Wait()
		if _, err := e.store.Meeting(cx, "a"); err != nil {
			t.Errorf("a, running, was pruned: %v", err)
		}
		if _, err := e.store.Meeting(cx, "b"); err == nil {
			t.Errorf("b, ended, is still placed")
		}
	})
}

// TestPruneQueueDatabaseDown: with the database not answering, the queued
// prunings do not wait their turn one after another (a shutdown waits for
// them): the first failure drops the rest until their nodes ask again.
func TestPruneQueueDatabaseDown(t *testing.T) {
	dsn := backends[0].dsn(t)
	clk := testenv.NewClock()
	e := newEnv(t, dsn, clk)
	// Every node has an ended meeting to prune: a pruning with nothing to
	// delete only reads, which a writer's lock does not hold up.
	e.addNodes(20)
	cx := ctxT(t)
	ids := make([]string, len(e.nodes))
	for i, n := range e.nodes {
		node, err := e.store.NodeByName(cx, n.name)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = node.ID
		if _, _, err := e.store.ClaimMeeting(cx, records.Meeting{MeetingID: fmt.Sprint("ended-", i), NodeID: node.ID, PlacedAt: clk.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(time.Minute)
	// Another process's write transaction holds SQLite's lock: each
	// pruning waits the busy timeout (5 s), then fails.
	lockSQLite(t, strings.TrimPrefix(dsn, "sqlite:"))
	for _, id := range ids {
		e.srv.pruneAsync(id, nil, clk.Now())
	}
	done := make(chan struct{})
	go func() { e.srv.bg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("20 prunings against a locked database still running after 15 s: they wait their timeouts one after another")
	}
}

// TestPruneQueueKeepsItsMeetingIDs: a report's meeting IDs share its body's
// buffer (agentapi.DecodeReportBorrowing), which the next reports are read
// into; a pruning queued for later (behind a busy database) keeps a copy of
// its own, and prunes by the IDs its report sent.
func TestPruneQueueKeepsItsMeetingIDs(t *testing.T) {
	e := newEnv(t, backends[0].dsn(t), testenv.NewClock())
	e.addNodes(2)
	node, err := e.store.NodeByName(ctxT(t), e.nodes[0].name)
	if err != nil {
		t.Fatal(err)
	}
	q := &e.srv.prunes
	q.mu.Lock()
	q.working = true // queued, not drained yet
	q.mu.Unlock()
	want := []string{"kept-meeting-1", "kept-meeting-2"}
	e.agentCall(agentapi.PathReport, agentapi.ReportRequest{Node: e.nodes[0].name, MeetingIDs: want, Load: fleet.Load{BBBHealthy: true}}, nil, http.StatusOK)
	for range 50 { // the same layout, other bytes
		e.agentCall(agentapi.PathReport, agentapi.ReportRequest{Node: e.nodes[1].name, MeetingIDs: []string{"other-meeting-1", "other-meeting-2"},
			Load: fleet.Load{BBBHealthy: true}}, nil, http.StatusOK)
	}
	q.mu.Lock()
	got := slices.Clone(q.pending[node.ID].running)
	q.working = false
	q.mu.Unlock()
	if !slices.Equal(got, want) {
		t.Errorf("the pruning queued by %s's report keeps %q; its report sent %q", e.nodes[0].name, got, want)
	}
}
