package balancer

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/balancer/records"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// TestGetMeetingsKeptAnswer: with the answers kept for an hour, a meeting
// ended on its node behind the balancer's back stays listed until the bound
// and not after it; a create and an end through the balancer and a node
// going offline show in the next answer at once.
func TestGetMeetingsKeptAnswer(t *testing.T) {
	clk := testenv.NewClock()
	e := newEnv(t, backends[0].dsn(t), clk)
	e.addNodes(2)
	cx := ctxT(t)
	const bound = time.Hour
	e.srv.cfg.GetMeetingsMaxAge = bound
	for _, id := range []string{"k-0", "k-1", "k-2", "k-3"} {
		if _, err := e.client.Create(cx, bbb.CreateRequest{MeetingID: id, Name: "Kept"}); err != nil {
			t.Fatal(err)
		}
	}
	list := func() map[string]bool {
		t.Helper()
		ms, err := e.client.GetMeetings(cx)
		if err != nil {
			t.Fatal(err)
		}
		return meetingIDs(ms)
	}
	if got := list(); len(got) != 4 {
		t.Fatalf("getMeetings lists %v, want k-0..k-3", got)
	}

	// Ended on the node itself: kept for the bound, gone after it.
	on := e.node(e.nodeOf("k-0")[0])
	direct, err := bbb.NewClient(on.http.URL, on.secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := direct.End(cx, "k-0", ""); err != nil {
		t.Fatal(err)
	}
	if !list()["k-0"] {
		t.Fatal("getMeetings asked the node again within the bound: the answer is not kept")
	}
	clk.Advance(bound)
	e.reportAll()
	if list()["k-0"] {
		t.Fatalf("getMeetings lists k-0 %v after its end on the node, past the bound", bound)
	}

	// Through the balancer: at once.
	if _, err := e.client.Create(cx, bbb.CreateRequest{MeetingID: "k-new", Name: "Kept"}); err != nil {
		t.Fatal(err)
	}
	if !list()["k-new"] {
		t.Fatal("getMeetings does not list k-new just after its create through the balancer")
	}
	if err := e.client.End(cx, "k-1", ""); err != nil {
		t.Fatal(err)
	}
	if list()["k-1"] {
		t.Fatal("getMeetings lists k-1 just after its end through the balancer")
	}

	// A node going offline: at once, inside the bound.
	before := list()
	down := e.node(e.nodeOf("k-2")[0])
	e.takeOffline(down)
	after := list()
	for id := range before {
		gone := e.nodeOf(id)[0] == down.name
		if after[id] == gone {
			t.Fatalf("after %s went offline getMeetings lists %v (before: %v)", down.name, after, before)
		}
	}
}

// TestOnlineBBB: getMeetings' fan-out is the online BBB nodes in name order:
// never a TURN node, a node that stopped reporting, or one never heard from.
func TestOnlineBBB(t *testing.T) {
	clk := testenv.NewClock()
	e := newEnv(t, backends[0].dsn(t), clk)
	ctx := ctxT(t)
	add := func(name string, role fleet.Role, reportAgo time.Duration) {
		t.Helper()
		n := records.Node{Name: name, Role: role, Secret: "s-" + name, ReportInterval: 5 * time.Second, CreatedAt: clk.Now()}
		if role == fleet.RoleBBB {
			n.URL = "https://" + name + ".invalid/bigbluebutton/api/"
		}
		got, err := e.store.UpsertNode(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if reportAgo >= 0 {
			r := records.Report{NodeID: got.ID, Seq: 1, ReceivedAt: clk.Now().Add(-reportAgo), Load: fleet.Load{BBBHealthy: true}}
			if _, err := e.store.RecordReports(ctx, []records.Report{r}); err != nil {
				t.Fatal(err)
			}
		}
	}
	add("zulu", fleet.RoleBBB, 0)
	add("alpha", fleet.RoleBBB, time.Second)
	add("turn", fleet.RoleTURN, 0)
	add("gone", fleet.RoleBBB, time.Minute) // three reports missed long ago
	add("silent", fleet.RoleBBB, -1)        // never reported
	add("mike", fleet.RoleBBB, 0)
	if err := e.srv.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range e.srv.reg.onlineBBB() {
		names = append(names, n.Name)
		if want := "s-" + n.Name; n.Secret != want || n.URL == "" || n.ID == "" {
			t.Errorf("%s: %+v: want its ID, URL and secret %s", n.Name, n, want)
		}
	}
	if got, want := strings.Join(names, " "), "alpha mike zulu"; got != want {
		t.Errorf("onlineBBB: %s; want %s", got, want)
	}
}

// TestGetMeetingsKeptReleased: the nodes' answers and the assembled one are
// kept for the bound and released after it by Run, not held for the life of
// the replica; getMeetings asks the nodes again after.
func TestGetMeetingsKeptReleased(t *testing.T) {
	clk := testenv.NewClock()
	e := newEnv(t, backends[0].dsn(t), clk)
	e.addNodes(2)
	cx := ctxT(t)
	for _, id := range []string{"r-0", "r-1", "r-2"} {
		if _, err := e.client.Create(cx, bbb.CreateRequest{MeetingID: id, Name: "Released"}); err != nil {
			t.Fatal(err)
		}
	}
	f := &e.srv.fleetMeetings
	kept := func() (parts int, assembled bool) {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.nodes), f.last != nil
	}
	if ms, err := e.client.GetMeetings(cx); err != nil || len(ms) != 3 {
		t.Fatalf("getMeetings: %d meetings, %v; want 3", len(ms), err)
	}
	if parts, assembled := kept(); parts != 2 || !assembled {
		t.Fatalf("after getMeetings: %d parts kept, assembled %v; want 2, true", parts, assembled)
	}
	bound := e.srv.cfg.GetMeetingsMaxAge
	clk.Advance(bound / 2)
	f.expire(clk.Now(), bound)
	if parts, assembled := kept(); parts != 2 || !assembled {
		t.Fatalf("within the bound: %d parts kept, assembled %v; want 2, true", parts, assembled)
	}

	ctx, cancel := context.WithCancel(cx)
	done := make(chan error, 1)
	go func() { done <- e.srv.Run(ctx) }()
	clk.Advance(bound)
	e.reportAll() // still online at the new time
	testenv.Eventually(t, 10*time.Second, "the kept answers released", func() bool {
		parts, assembled := kept()
		return parts == 0 && !assembled
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if ms, err := e.client.GetMeetings(cx); err != nil || len(ms) != 3 {
		t.Fatalf("getMeetings after the release: %d meetings, %v; want 3", len(ms), err)
	}
}

// TestGetMeetingsKeptBytes: the answer assembled from the kept parts, and
// written from them without assembling, is byte for byte the answer of a
// call that asks every node (a negative bound), meetings, metadata and the
// empty answer alike.
func TestGetMeetingsKeptBytes(t *testing.T) {
	e := newEnv(t, backends[0].dsn(t), testenv.NewClock())
	e.addNodes(3)
	cx := ctxT(t)
	get := func(maxAge time.Duration) string {
		t.Helper()
		e.srv.cfg.GetMeetingsMaxAge = maxAge
		rec := httptest.NewRecorder()
		e.srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, e.client.URL("getMeetings", nil), nil))
		if rec.Code != http.StatusOK || maxAge > 0 && rec.Header().Get("Content-Length") != strconv.Itoa(rec.Body.Len()) {
			t.Fatalf("getMeetings: HTTP %d, Content-Length %s for %d bytes", rec.Code, rec.Header().Get("Content-Length"), rec.Body.Len())
		}
		return rec.Body.String()
	}
	if kept, live := get(time.Hour), get(-1); kept != live || !strings.Contains(kept, "<meetings></meetings>") && !strings.Contains(kept, "<meetings/>") {
		t.Errorf("no meetings: kept answer\n%s\nlive answer\n%s", kept, live)
	}
	for i := range 7 {
		if _, err := e.client.Create(cx, bbb.CreateRequest{MeetingID: fmt.Sprint("b-", i), Name: fmt.Sprintf("Room <%d> & \"friends\"", i),
			Meta: map[string]string{"bbb-origin": "Greenlight", "room": fmt.Sprint(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	kept := get(time.Hour)
	// An answer over maxAssembled is written from its parts, not whole.
	e.srv.fleetMeetings.mu.Lock()
	streamed := *e.srv.fleetMeetings.last
	e.srv.fleetMeetings.mu.Unlock()
	streamed.body = nil
	var b strings.Builder
	if err := streamed.writeTo(&b); err != nil || b.String() != kept {
		t.Errorf("written from its parts: %v\n%s\nwhole:\n%s", err, b.String(), kept)
	}
	if live := get(-1); kept != live {
		t.Errorf("kept answer\n%s\nlive answer\n%s", kept, live)
	}
	if n := strings.Count(kept, "<meeting>"); n != 7 {
		t.Errorf("%d meetings in the answer, want 7:\n%s", n, kept)
	}
}
