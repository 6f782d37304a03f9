package balancer

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/agentapi"
	"github.com/bbb-agent/bbb-agent/balancer/adminapi"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// TestLeavingNode: a node past its drain deadline (its agent reports
// leaving) stays cordoned and its meeting joinable through the balancer
// while it reports; once it goes offline the balancer removes it, and a
// leaving node reporting no meetings (BBB answering) is removed at once.
// Nodes not leaving are never removed this way.
func TestLeavingNode(t *testing.T) {
	clk := testenv.NewClock()
	e := newEnv(t, backends[0].dsn(t), clk)
	e.addNodes(3)
	leaving, empty, other := e.nodes[0], e.nodes[1], e.nodes[2]
	cx := ctxT(t)
	setState := func(nd *node, path string) {
		t.Helper()
		e.agentCall(path, agentapi.NodeRequest{Node: nd.name}, nil, 200)
	}
	// The class lands on the leaving node: the others are cordoned meanwhile.
	setState(empty, agentapi.PathCordon)
	setState(other, agentapi.PathCordon)
	if _, err := e.client.Create(cx, bbb.CreateRequest{MeetingID: "class", Name: "Class"}); err != nil {
		t.Fatal(err)
	}
	if on := e.nodeOf("class"); len(on) != 1 || on[0] != leaving.name {
		t.Fatalf("class runs on %v, want %s", on, leaving.name)
	}
	setState(other, agentapi.PathEnable)

	report := func(nd *node, meetings int, healthy, isLeaving bool) agentapi.ReportResponse {
		t.Helper()
		var resp agentapi.ReportResponse
		var ids []string
		if nd == leaving && meetings > 0 {
			ids = []string{"class"}
		}
		e.agentCall(agentapi.PathReport, agentapi.ReportRequest{Node: nd.name, Load: fleet.Load{Meetings: meetings, BBBHealthy: healthy},
			MeetingIDs: ids, Leaving: isLeaving}, &resp, 200)
		return resp
	}
	listed := func(nd *node) (adminapi.Server, bool) {
		for _, s := range e.status() {
			if s.Name == nd.name {
				return s, true
			}
		}
		return adminapi.Server{}, false
	}

	// Past the deadline the agent keeps the node cordoned and reports leaving.
	setState(leaving, agentapi.PathCordon)
	for i := 0; i < 3; i++ {
		clk.Advance(5 * time.Second)
		if resp := report(leaving, 1, true, true); resp.State != fleet.Cordoned {
			t.Fatalf("a leaving node with a meeting: report answered %s, want cordoned", resp.State)
		}
		report(other, 0, true, false)
		report(empty, 0, false, true) // leaving, BBB not answering: meetings unknown, not none
		e.srv.sweepLeaving(cx)
	}
	if s, ok := listed(leaving); !ok || s.State != fleet.Cordoned || !s.Online || s.Meetings != 1 {
		t.Fatalf("leaving node %s while it reports: %+v (listed: %v)", leaving.name, s, ok)
	}
	if s, ok := listed(empty); !ok || !s.Online { // cordoned, or disabled: no placement on it
		t.Fatalf("leaving node %s, BBB not answering: %+v (listed: %v)", empty.name, s, ok)
	}
	// Its meeting stays joinable through the balancer; new ones go elsewhere.
	resp, err := noFollow.Get(e.client.JoinURL(bbb.JoinRequest{MeetingID: "class", FullName: "Late Student", Role: bbb.RoleViewer}))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != 302 || !strings.HasPrefix(loc, leaving.http.URL+"/bigbluebutton/api/join?") {
		t.Fatalf("join of the leaving node's meeting: HTTP %d to %q, want 302 to %s", resp.StatusCode, loc, leaving.http.URL)
	}
	if m, err := e.client.GetMeetingInfo(cx, "class"); err != nil || m.MeetingID != "class" {
		t.Fatalf("getMeetingInfo of the leaving node's meeting: %+v %v", m, err)
	}
	if _, err := e.client.Create(cx, bbb.CreateRequest{MeetingID: "next", Name: "Next"}); err != nil {
		t.Fatal(err)
	}
	if on := e.nodeOf("next"); len(on) != 1 || on[0] != other.name {
		t.Fatalf("a new meeting runs on %v, want %s", on, other.name)
	}

	// The empty one answers again with no meetings: removed at once.
	if resp := report(empty, 0, true, true); resp.State != fleet.Disabled {
		t.Fatalf("a leaving node reporting no meetings: answered %s, want disabled", resp.State)
	}
	if s, ok := listed(empty); ok {
		t.Fatalf("a leaving node reporting no meetings is still listed: %+v", s)
	}
	status, _ := e.do("POST", agentapi.PathReport, agentToken, agentapi.ReportRequest{Node: empty.name, Load: fleet.Load{BBBHealthy: true}})
	if status != 404 {
		t.Fatalf("the removed node's next report: HTTP %d, want 404 (unknown node: its agent ends its drain)", status)
	}

	// The leaving node's host goes away: no more reports. Offline after
	// three missed intervals, then removed; the node that is not leaving
	// and stops reporting too stays listed (offline).
	clk.Advance(16 * time.Second)
	e.srv.sweepLeaving(cx)
	if s, ok := listed(leaving); ok {
		t.Fatalf("the leaving node is still listed after going offline: %+v", s)
	}
	if s, ok := listed(other); !ok || s.Online {
		t.Fatalf("a node that is not leaving, offline: %+v (listed: %v), want listed and offline", s, ok)
	}
	if _, err := e.client.GetMeetingInfo(cx, "class"); !errors.Is(err, bbb.ErrNotFound) {
		t.Fatalf("getMeetingInfo of the removed node's meeting: %v, want notFound", err)
	}
}
