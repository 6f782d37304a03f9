package balancer

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// joinLocation joins a meeting through a replica and returns where it sends
// the browser ("" when the join is refused).
func (e *env) joinLocation(meetingID string) string {
	e.t.Helper()
	resp, err := noFollow.Get(e.client.JoinURL(bbb.JoinRequest{MeetingID: meetingID, FullName: "x", Role: bbb.RoleViewer}))
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return ""
	}
	return resp.Header.Get("Location")
}

// joinsOn says whether a join through the replica goes to the node.
func (e *env) joinsOn(meetingID string, nd *node) bool {
	return strings.HasPrefix(e.joinLocation(meetingID), nd.http.URL+"/")
}

// takeOffline makes a node offline: the clock passes its missed reports
// while every other node keeps reporting through e.
func (e *env) takeOffline(down *node) {
	e.t.Helper()
	e.clock.Advance(time.Duration(DefaultMissedReports+1) * fleet.DefaultReportInterval)
	for _, nd := range e.nodes {
		if nd != down {
			e.report(nd, fleet.Load{BBBHealthy: true})
		}
	}
}

// TestMeetingCacheTwoReplicas: replica B has a meeting's node cached; the
// node goes offline and replica A places the meeting again elsewhere; the
// old node comes back online. After one refresh, B joins on the new node.
func TestMeetingCacheTwoReplicas(t *testing.T) {
	a, b, _, cx := twoReplicas(t)

	const id = "re-placed"
	if _, err := a.client.Create(cx, bbb.CreateRequest{MeetingID: id, Name: "Moving"}); err != nil {
		t.Fatal(err)
	}
	old := a.node(a.nodeOf(id)[0])
	if !b.joinsOn(id, old) { // B caches the placement
		t.Fatalf("join through B does not go to %s", old.name)
	}

	a.takeOffline(old)
	if err := a.srv.Flush(cx); err != nil {
		t.Fatal(err)
	}
	if err := b.srv.Refresh(cx); err != nil {
		t.Fatal(err)
	}
	// An offline node is never joined, cached or not.
	if loc := b.joinLocation(id); strings.HasPrefix(loc, old.http.URL+"/") {
		t.Fatalf("join through B goes to the offline node %s", old.name)
	}
	if _, err := a.client.Create(cx, bbb.CreateRequest{MeetingID: id, Name: "Moving"}); err != nil {
		t.Fatal(err)
	}
	m, err := a.store.Meeting(cx, id)
	if err != nil {
		t.Fatal(err)
	}
	placedOn, _, _ := a.srv.reg.node(m.NodeID)
	if placedOn.Name == old.name {
		t.Fatalf("after its node went offline the meeting stays placed on %s", old.name)
	}
	moved := a.node(placedOn.Name)

	// The old node reports again: B's cache still names it until B refreshes.
	a.report(old, fleet.Load{BBBHealthy: true})
	if err := a.srv.Flush(cx); err != nil {
		t.Fatal(err)
	}
	if err := b.srv.Refresh(cx); err != nil {
		t.Fatal(err)
	}
	if !b.joinsOn(id, moved) {
		t.Fatalf("after one refresh, join through B goes to %q, want the new node %s", b.joinLocation(id), moved.name)
	}
	if !a.joinsOn(id, moved) {
		t.Fatalf("join through A goes to %q, want the new node %s", a.joinLocation(id), moved.name)
	}
}

func meetingIDs(ms []bbb.Meeting) map[string]bool {
	out := map[string]bool{}
	for _, m := range ms {
		out[m.MeetingID] = true
	}
	return out
}

// TestGetMeetingsBound: an end through the replica shows in getMeetings at
// once; an end through another replica within the bound; a node going
// offline drops out at once.
func TestGetMeetingsBound(t *testing.T) {
	a, b, clk, cx := twoReplicas(t)
	ids := []string{"g-0", "g-1", "g-2", "g-3", "g-4", "g-5"}
	for _, id := range ids {
		if _, err := a.client.Create(cx, bbb.CreateRequest{MeetingID: id, Name: "Listed"}); err != nil {
			t.Fatal(err)
		}
	}
	list := func(e *env) map[string]bool {
		t.Helper()
		ms, err := e.client.GetMeetings(cx)
		if err != nil {
			t.Fatal(err)
		}
		return meetingIDs(ms)
	}
	if got := list(a); len(got) != len(ids) {
		t.Fatalf("getMeetings through A lists %v, want %v", got, ids)
	}
	if got := list(b); len(got) != len(ids) {
		t.Fatalf("getMeetings through B lists %v, want %v", got, ids)
	}

	// End through A: A's next answer leaves it out at once.
	if err := a.client.End(cx, "g-0", ""); err != nil {
		t.Fatal(err)
	}
	if list(a)["g-0"] {
		t.Fatal("getMeetings through A lists g-0 just after its end through A")
	}
	// B may keep it for the bound, not longer.
	clk.Advance(DefaultGetMeetingsMaxAge)
	if list(b)["g-0"] {
		t.Fatalf("getMeetings through B lists g-0 %v after its end through A", DefaultGetMeetingsMaxAge)
	}
	// A create through A shows at once too.
	if _, err := a.client.Create(cx, bbb.CreateRequest{MeetingID: "g-new", Name: "Listed"}); err != nil {
		t.Fatal(err)
	}
	if !list(a)["g-new"] {
		t.Fatal("getMeetings through A does not list g-new just after its create through A")
	}

	// A node going offline drops out of the fan-out at once, even with its
	// answer kept: the clock passes its missed reports but not the bound.
	a.srv.cfg.GetMeetingsMaxAge = time.Hour
	before := list(a)
	down := a.node(a.nodeOf("g-1")[0])
	a.takeOffline(down)
	after := list(a)
	if after["g-1"] {
		t.Fatalf("getMeetings lists g-1 of the offline node %s", down.name)
	}
	for id := range before {
		if on := a.nodeOf(id); len(on) == 1 && on[0] != down.name && !after[id] {
			t.Fatalf("getMeetings lost %s of an online node", id)
		}
	}
}

// TestJoinWithoutDatabase: with the database gone, joins and getMeetingInfo
// of a running meeting this replica knows still reach its node (the meeting
// cache and the in-memory registry); a create fails with the database error.
// (The store is closed here; a stopped PostgreSQL server fails the same calls.)
func TestJoinWithoutDatabase(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn, testenv.NewClock())
		e.addNodes(2)
		cx := ctxT(t)
		if _, err := e.client.Create(cx, bbb.CreateRequest{MeetingID: "outlives", Name: "x"}); err != nil {
			t.Fatal(err)
		}
		nd := e.node(e.nodeOf("outlives")[0])
		if err := e.store.Close(); err != nil {
			t.Fatal(err)
		}
		if !e.joinsOn("outlives", nd) {
			t.Fatalf("join during the outage goes to %q, want %s", e.joinLocation("outlives"), nd.name)
		}
		info, err := e.client.GetMeetingInfo(cx, "outlives")
		if err != nil || info.MeetingID != "outlives" {
			t.Fatalf("getMeetingInfo during the outage: %+v, %v", info, err)
		}
		if _, err := e.client.Create(cx, bbb.CreateRequest{MeetingID: "new-in-outage", Name: "x"}); err == nil {
			t.Fatal("a create without the database succeeded")
		}
	})
}

// TestMeetingCacheUnit: the cache's own rules, by meeting ID whatever its
// length: forget drops a meeting only from the node it names, refresh
// moves cached meetings and adds none, and the cache stays bounded; it
// holds the IDs of the nodes of its meetings, each once, and no other.
func TestMeetingCacheUnit(t *testing.T) {
	c := newMeetingCache()
	// nodesHeld checks the node table against the cached meetings and
	// returns the node IDs it holds, sorted.
	nodesHeld := func() string {
		t.Helper()
		count := map[string]int32{}
		for _, s := range c.nodes {
			count[c.ids.ids[s.node()]]++
		}
		var held []string
		for id, i := range c.ids.index {
			held = append(held, id)
			if c.ids.ids[i] != id || c.ids.refs[i] != count[id] || count[id] == 0 {
				t.Errorf("node %s: slot %d holds %q with %d meetings; the cache has %d on it", id, i, c.ids.ids[i], c.ids.refs[i], count[id])
			}
		}
		if len(held) != len(count) {
			t.Errorf("the table holds %d node IDs, the cached meetings name %d", len(held), len(count))
		}
		if live := len(c.ids.ids) - len(c.ids.free); live != len(held) {
			t.Errorf("%d slots in use, %d node IDs", live, len(held))
		}
		slices.Sort(held)
		return strings.Join(held, " ")
	}
	long := strings.Repeat("moodle-course-42-instance-7-", 4)
	c.put("m1", "node-a")
	c.put(long, "node-b")
	c.put(long+"x", "node-c")
	for id, want := range map[string]string{"m1": "node-a", long: "node-b", long + "x": "node-c"} {
		if got, ok := c.get(id); !ok || got != want {
			t.Errorf("get(%.20q) = %q, %v; want %q", id, got, ok, want)
		}
	}
	if _, ok := c.get("m2"); ok {
		t.Error("get of a meeting never put found one")
	}
	c.forget("m1", "node-other")
	if got, _ := c.get("m1"); got != "node-a" {
		t.Errorf("forget naming another node dropped m1 (now %q)", got)
	}
	c.put("m1", "node-b") // moved
	c.put("m1", "node-a") // and back
	if got := nodesHeld(); got != "node-a node-b node-c" {
		t.Errorf("nodes held: %s", got)
	}
	c.forget("m1", "node-a")
	if _, ok := c.get("m1"); ok {
		t.Error("forget on its node left m1 cached")
	}
	if got := nodesHeld(); got != "node-b node-c" {
		t.Errorf("after node-a's last meeting went, nodes held: %s", got)
	}

	// Two meetings whose keys share the 64-bit hash: one is held, the later;
	// the other is a miss (its join reads the store), never the other's node.
	a, b := meetingKey{hash: 42, check: 1}, meetingKey{hash: 42, check: 2}
	c.mu.Lock()
	c.set(a, "node-a")
	c.set(b, "node-d")
	_, aHeld := c.lookup(a)
	bNode, bHeld := c.lookup(b)
	c.mu.Unlock()
	if aHeld || !bHeld || c.ids.ids[bNode] != "node-d" {
		t.Errorf("after two meetings of one hash: the first held %v, the second on %q (held %v); want only the second, on node-d", aHeld, c.ids.ids[bNode], bHeld)
	}
	if got := nodesHeld(); got != "node-b node-c node-d" {
		t.Errorf("after a meeting replaced another of its hash, nodes held: %s", got)
	}
	c.mu.Lock()
	delete(c.nodes, b.hash)
	c.ids.unref(bNode)
	c.mu.Unlock()

	now := time.Now()
	if err := c.refresh(context.Background(), now, nil); err != nil { // the first one sets the bound
		t.Fatal(err)
	}
	read := func(context.Context, time.Time) (map[string]string, error) {
		return map[string]string{long: "node-moved", "new": "node-a"}, nil
	}
	if err := c.refresh(context.Background(), now.Add(time.Second), read); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.get(long); got != "node-moved" {
		t.Errorf("after a refresh the moved meeting is on %q, want node-moved", got)
	}
	if _, ok := c.get("new"); ok {
		t.Error("a refresh cached a meeting this replica never asked for")
	}
	if got := nodesHeld(); got != "node-c node-moved" {
		t.Errorf("after a refresh moved node-b's only meeting, nodes held: %s", got)
	}
	if got, _ := c.get(long + "x"); got != "node-c" {
		t.Errorf("node-c's meeting is on %q after a freed slot was reused", got)
	}

	for i := range maxCachedMeetings + 10 {
		c.put(fmt.Sprint("bulk-", i), "node-a")
	}
	if n := len(c.nodes); n > maxCachedMeetings {
		t.Errorf("%d meetings cached, over the bound %d", n, maxCachedMeetings)
	}
	nodesHeld() // the evictions counted
}
