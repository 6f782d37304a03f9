package balancer

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// TestTwoReplicas: two balancer processes on one PostgreSQL serve one fleet;
// concurrent creates of one meetingID through both land on one node, and an
// operator's cordon through one reaches the other.
func TestTwoReplicas(t *testing.T) {
	a, b, _, cx := twoReplicas(t)
	if got := len(b.status()); got != 3 {
		t.Fatalf("replica b sees %d nodes, want 3", got)
	}

	const meetings, tries = 20, 4
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, meetings*tries*2)
	for i := 0; i < meetings; i++ {
		for _, e := range []*env{a, b} {
			for j := 0; j < tries; j++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					if _, err := e.client.Create(cx, bbb.CreateRequest{MeetingID: fmt.Sprintf("shared-%d", i), Name: "Shared"}); err != nil {
						errs <- err
					}
				}()
			}
		}
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := 0; i < meetings; i++ {
		id := fmt.Sprintf("shared-%d", i)
		if on := a.nodeOf(id); len(on) != 1 {
			t.Fatalf("%s runs on %v, want exactly one node", id, on)
		}
		// Joins through either replica go to that node.
		for _, e := range []*env{a, b} {
			resp, err := noFollow.Get(e.client.JoinURL(bbb.JoinRequest{MeetingID: id, FullName: "x", Role: bbb.RoleViewer}))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if loc := resp.Header.Get("Location"); !strings.HasPrefix(loc, a.node(a.nodeOf(id)[0]).http.URL+"/") {
				t.Fatalf("join of %s through a replica goes to %s", id, loc)
			}
		}
	}

	// Cordon through a; b sees it after its refresh and places elsewhere.
	cordoned := a.nodes[0]
	a.adminState(cordoned.name, "cordon")
	if err := b.srv.Refresh(cx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 6; i++ {
		id := fmt.Sprintf("after-cordon-%d", i)
		if _, err := b.client.Create(cx, bbb.CreateRequest{MeetingID: id, Name: "x"}); err != nil {
			t.Fatal(err)
		}
		if on := b.nodeOf(id); on[0] == cordoned.name {
			t.Fatalf("%s placed on the node cordoned through the other replica", id)
		}
	}
}

// TestReportToOtherReplica: a node registered through one replica can report
// to the other at once, before that replica's periodic refresh.
func TestReportToOtherReplica(t *testing.T) {
	dsn := backends[1].dsn(t)
	clk := testenv.NewClock()
	a := newEnv(t, dsn, clk)
	b := newEnv(t, dsn, clk)
	a.addNodes(1) // registers and reports through a
	b.nodes = a.nodes
	b.report(a.nodes[0], fleet.Load{BBBHealthy: true})
	if s := b.status(); len(s) != 1 || !s[0].Online {
		t.Fatalf("replica b: %+v", s)
	}
}

// twoReplicas is two balancer replicas on one real PostgreSQL, sharing a
// fake clock, with three nodes registered through the first.
func twoReplicas(t *testing.T) (a, b *env, clk *testenv.Clock, cx context.Context) {
	t.Helper()
	dsn := backends[1].dsn(t)
	clk = testenv.NewClock()
	a = newEnv(t, dsn, clk)
	a.addNodes(3)
	cx = ctxT(t)
	if err := a.srv.Flush(cx); err != nil {
		t.Fatal(err)
	}
	b = newEnv(t, dsn, clk)
	b.nodes = a.nodes
	return a, b, clk, cx
}
