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
		if !e.srv.reg.shouldPrune(id, nil, clk.Now()) {
			t.Fatalf("node %s: no pruning asked for its first report", id)
		}
		e.srv.pruneAsync(id, nil, clk.Now())
	}
	done := make(chan struct{})
	go func() { e.srv.bg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("20 prunings against a locked database still running after 15 s: they wait their timeouts one after another")
	}
	// Not done: each node's next report after pruneEvery asks again,
	// though nothing was placed on it since.
	clk.Advance(pruneEvery)
	for _, id := range ids {
		if !e.srv.reg.shouldPrune(id, nil, clk.Now()) {
			t.Errorf("node %s: its failed pruning not asked for again after pruneEvery", id)
		}
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

// TestShouldPruneUnchangedSet: with the same meeting set, a node's
// placements are pruned again after pruneEvery only when a placement may
// have been left behind since the last pruning: one this replica made
// (reserve), or one it learnt of (notePlacements), or any from before the
// entry was made (a restart), or when the last pruning failed.
func TestShouldPruneUnchangedSet(t *testing.T) {
	clock := testenv.NewClock()
	r := newRegistry(nil, &Config{Clock: clock.Now, MissedReports: 3, DefaultReportInterval: 5 * time.Second})
	r.put(records.Node{ID: "id-a", Name: "bbb1", Role: fleet.RoleBBB, Source: records.SourceAgent})
	set := []string{"m1", "m2"}
	step := func(d time.Duration, want bool, why string) {
		t.Helper()
		clock.Advance(d)
		if got := r.shouldPrune("id-a", set, clock.Now().Add(-5*time.Second)); got != want {
			t.Fatalf("%s: shouldPrune = %v, want %v", why, got, want)
		}
	}
	step(time.Second, true, "the first report")
	step(5*time.Second, false, "the same set at once")
	// The entry was made a second before the first pruning's placedBefore:
	// a placement from before it may be younger than that bound.
	step(pruneEvery, true, "after a restart, once more")
	step(pruneEvery, false, "no placement since")
	step(10*pruneEvery, false, "still none")
	r.reserve("id-a")
	step(5*time.Second, true, "placed by this replica, the last pruning long ago")
	step(pruneEvery, true, "the placement was younger than that pruning's bound")
	step(pruneEvery, false, "covered")
	clock.Advance(time.Second)
	r.notePlacements(map[string]string{"m3": "id-a", "elsewhere": "id-b"}, clock.Now())
	step(6*time.Second, true, "learnt of another replica's placement, the last pruning long ago")
	step(pruneEvery, false, "covered by that pruning's bound")
	set = []string{"m1"}
	step(time.Second, true, "the set changed")
	r.prunesFailed([]string{"id-a"})
	step(5*time.Second, false, "a failed pruning waits pruneEvery")
	step(pruneEvery, true, "a failed pruning is asked for again")
	step(pruneEvery, false, "done")
}

// TestRestartPrunesOnce: a replica that starts knows each node's newest
// placement, so a node whose meetings stay the same is pruned at its first
// report and not again a minute later (at 10,000 nodes, 10,000 more reads),
// unless a placement was made on it just before the start, which that
// first pruning had to leave.
func TestRestartPrunesOnce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dsn string) {
		clk := testenv.NewClock()
		a := newEnv(t, dsn, clk)
		a.addNodes(2)
		cx := ctxT(t)
		ids := make([]string, 2)
		for i, nd := range a.nodes {
			n, err := a.store.NodeByName(cx, nd.name)
			if err != nil {
				t.Fatal(err)
			}
			ids[i] = n.ID
		}
		claim := func(meeting string, node int, at time.Time) {
			t.Helper()
			if _, _, err := a.store.ClaimMeeting(cx, records.Meeting{MeetingID: meeting, NodeID: ids[node], PlacedAt: at}); err != nil {
				t.Fatal(err)
			}
		}
		t0 := clk.Now()
		claim("running-0", 0, t0)
		claim("running-1", 1, t0)
		clk.Advance(10 * time.Minute)
		claim("fresh-1", 1, clk.Now()) // its create may still be on its way at the start

		b := newEnv(t, dsn, clk) // the start
		report := func() {
			t.Helper()
			for i, nd := range a.nodes {
				b.agentCall(agentapi.PathReport, agentapi.ReportRequest{Node: nd.name, Load: fleet.Load{Meetings: 1, BBBHealthy: true},
					MeetingIDs: []string{fmt.Sprint("running-", i)}}, nil, http.StatusOK)
			}
			b.srv.bg.Wait()
		}
		placed := b.placed
		report()
		if !placed("fresh-1") {
			t.Fatal("the first pruning took a placement made just before it")
		}
		// Stale, and older than anything the new replica could learn of.
		claim("late-0", 0, t0.Add(time.Minute))
		clk.Advance(pruneEvery)
		report()
		if placed("fresh-1") {
			t.Error("a placement made just before the start, its meeting not running, is still placed a minute later")
		}
		if !placed("late-0") {
			t.Error("a node with nothing placed since long before the start was pruned a second time")
		}
	})
}
