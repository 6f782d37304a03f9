package balancer

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/balancer/records"
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
		before := runtime.NumGoroutine()
		for i := range 2000 {
			e.srv.pruneAsync(fmt.Sprintf("node-%04d", i), nil, clk.Now())
		}
		e.srv.pruneAsync(node.ID, []string{"a"}, clk.Now())
		if n := runtime.NumGoroutine() - before; n > 10 {
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
