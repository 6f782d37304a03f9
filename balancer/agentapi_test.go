package balancer

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/agentapi"
	"github.com/bbb-agent/bbb-agent/balancer/records"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/bbb/sim"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

func TestAgentAPIAuthAndErrors(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn, testenv.NewClock())
		e.addNodes(1)
		tests := []struct {
			name, path, token, body string
			status                  int
			code                    string
		}{
			{"no token", agentapi.PathReport, "", `{"node":"bbb1"}`, http.StatusUnauthorized, agentapi.CodeUnauthorized},
			{"wrong token", agentapi.PathReport, "nope", `{"node":"bbb1"}`, http.StatusUnauthorized, agentapi.CodeUnauthorized},
			{"admin token is not an agent token", agentapi.PathReport, adminToken, `{"node":"bbb1"}`, http.StatusUnauthorized, agentapi.CodeUnauthorized},
			{"garbage", agentapi.PathReport, agentToken, `{{{`, http.StatusBadRequest, agentapi.CodeBadRequest},
			{"unknown node", agentapi.PathReport, agentToken, `{"node":"ghost"}`, http.StatusNotFound, agentapi.CodeUnknownNode},
			{"register without name", agentapi.PathRegister, agentToken, `{"url":"http://127.0.0.1:1","secret":"s"}`, http.StatusBadRequest, agentapi.CodeBadRequest},
			{"register without secret", agentapi.PathRegister, agentToken, `{"node":"x","url":"http://127.0.0.1:1"}`, http.StatusBadRequest, agentapi.CodeBadRequest},
			{"register bad URL", agentapi.PathRegister, agentToken, `{"node":"x","url":"bbb.example.com","secret":"s"}`, http.StatusBadRequest, agentapi.CodeBadRequest},
			{"register bad role", agentapi.PathRegister, agentToken, `{"node":"x","url":"http://127.0.0.1:1","secret":"s","role":"sfu"}`, http.StatusBadRequest, agentapi.CodeBadRequest},
			{"register URL of another agent's node", agentapi.PathRegister, agentToken, `{"node":"other","url":"` + e.nodes[0].http.URL + `","secret":"` + e.nodes[0].secret + `"}`, http.StatusConflict, agentapi.CodeNodeConflict},
			{"register a URL with a wrong secret", agentapi.PathRegister, agentToken, `{"node":"other","url":"` + e.nodes[0].http.URL + `","secret":"s"}`, http.StatusUnprocessableEntity, agentapi.CodeNodeCheck},
			{"drain unknown", agentapi.PathDrain, agentToken, `{"node":"ghost"}`, http.StatusNotFound, agentapi.CodeUnknownNode},
			{"oversize", agentapi.PathReport, agentToken, `{"node":"` + strings.Repeat("x", agentapi.MaxBodyBytes) + `"}`, http.StatusBadRequest, agentapi.CodeBadRequest},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				req, _ := http.NewRequest(http.MethodPost, e.http.URL+tt.path, strings.NewReader(tt.body))
				if tt.token != "" {
					req.Header.Set("Authorization", "Bearer "+tt.token)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				var ae agentapi.Error
				if resp.StatusCode != tt.status || json.Unmarshal(body, &ae) != nil || ae.Code != tt.code || ae.Error == "" {
					t.Fatalf("HTTP %d %s, want %d %s", resp.StatusCode, body, tt.status, tt.code)
				}
			})
		}
	})
}

// TestAgentLifecycle: register twice (no duplicate), drain and undrain,
// deregister twice, and the report reply carrying an operator's cordon.
func TestAgentLifecycle(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn, testenv.NewClock())
		e.addNodes(1)
		nd := e.nodes[0]
		first := e.register(nd)
		second := e.register(nd)
		if first.NodeID != second.NodeID || len(e.status()) != 1 {
			t.Fatalf("re-registration made a duplicate: %v %v, %d nodes", first, second, len(e.status()))
		}
		e.adminState(nd.name, "cordon")
		// An operator's cordon reaches the agent with its next report.
		if resp := e.report(nd, fleet.Load{Meetings: 1, BBBHealthy: true}); resp.State != fleet.Cordoned {
			t.Fatalf("report reply state %s, want cordoned", resp.State)
		}
		var st agentapi.StateResponse
		e.agentCall(agentapi.PathUndrain, agentapi.NodeRequest{Node: nd.name}, &st, http.StatusOK)
		if st.State != fleet.Enabled {
			t.Fatalf("undrain: %s", st.State)
		}
		e.agentCall(agentapi.PathDrain, agentapi.NodeRequest{Node: nd.name}, &st, http.StatusOK)
		if st.State != fleet.Cordoned {
			t.Fatalf("drain: %s", st.State)
		}
		// A re-registration (agent restart) keeps the drain.
		if again := e.register(nd); again.State != fleet.Cordoned {
			t.Fatalf("restart lost the cordon: %s", again.State)
		}
		e.agentCall(agentapi.PathDeregister, agentapi.NodeRequest{Node: nd.name}, &st, http.StatusOK)
		e.agentCall(agentapi.PathDeregister, agentapi.NodeRequest{Node: nd.name}, &st, http.StatusOK)
		if n := len(e.status()); n != 0 {
			t.Fatalf("%d nodes after deregister", n)
		}
		// Its reports are refused until it registers again.
		e.agentCall(agentapi.PathReport, agentapi.ReportRequest{Node: nd.name}, nil, http.StatusNotFound)
	})
}

// TestReportPrunesEndedMeetings: a report's meeting list makes the balancer
// forget placements of meetings that ended on the node by themselves.
func TestReportPrunesEndedMeetings(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dsn string) {
		clk := testenv.NewClock()
		e := newEnv(t, dsn, clk)
		e.addNodes(1)
		cx := ctxT(t)
		for _, id := range []string{"keep-me", "ends-alone"} {
			if _, err := e.client.Create(cx, bbb.CreateRequest{MeetingID: id, Name: "x"}); err != nil {
				t.Fatal(err)
			}
		}
		clk.Advance(10 * time.Second)
		var resp agentapi.ReportResponse
		e.agentCall(agentapi.PathReport, agentapi.ReportRequest{Node: e.nodes[0].name, Load: fleet.Load{Meetings: 1}, MeetingIDs: []string{"keep-me"}}, &resp, http.StatusOK)
		e.srv.bg.Wait()
		if _, err := e.store.Meeting(cx, "keep-me"); err != nil {
			t.Fatalf("running meeting forgotten: %v", err)
		}
		if _, err := e.store.Meeting(cx, "ends-alone"); err == nil {
			t.Fatal("ended meeting still placed")
		}
	})
}

// TestReportPrunesOnChange: agents send their meetings with every report;
// the placements are pruned (a database read, and a write when one is
// stale) when that set changes, and while it does not, every pruneEvery if
// a placement was made on the node since the last pruning (as here by
// another replica, learnt at this replica's refresh), never on every
// report, and not at all without a new placement.
//
// The refreshes that run every second are run by hand here: a placement
// another replica makes is learnt at the first one after it.
func TestReportPrunesOnChange(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dsn string) {
		clk := testenv.NewClock()
		e := newEnv(t, dsn, clk)
		e.addNodes(1)
		cx := ctxT(t)
		nd := e.nodes[0]
		for _, id := range []string{"keep-me", "ends-alone"} {
			if _, err := e.client.Create(cx, bbb.CreateRequest{MeetingID: id, Name: "x"}); err != nil {
				t.Fatal(err)
			}
		}
		node, err := e.store.NodeByName(cx, nd.name)
		if err != nil {
			t.Fatal(err)
		}
		report := func(ids ...string) {
			t.Helper()
			clk.Advance(10 * time.Second)
			e.agentCall(agentapi.PathReport, agentapi.ReportRequest{Node: nd.name, Load: fleet.Load{Meetings: len(ids)}, MeetingIDs: ids}, nil, http.StatusOK)
			e.srv.bg.Wait()
		}
		placed := e.placed
		report("keep-me", "ends-alone")
		// A placement whose create never reached the node.
		if _, _, err := e.store.ClaimMeeting(cx, records.Meeting{MeetingID: "ghost", NodeID: node.ID, PlacedAt: clk.Now()}); err != nil {
			t.Fatal(err)
		}
		report("keep-me", "ends-alone")
		if !placed("ghost") {
			t.Fatal("the same meeting set pruned again at once: every report would write to the database")
		}
		report("keep-me") // ends-alone ended: the set changed
		if placed("ends-alone") || placed("ghost") || !placed("keep-me") {
			t.Fatalf("after the set changed: ends-alone %v ghost %v keep-me %v; want only keep-me placed", placed("ends-alone"), placed("ghost"), placed("keep-me"))
		}
		claimElsewhere := func(id string) {
			t.Helper()
			if _, _, err := e.store.ClaimMeeting(cx, records.Meeting{MeetingID: id, NodeID: node.ID, PlacedAt: clk.Now()}); err != nil {
				t.Fatal(err)
			}
		}
		refresh := func() {
			t.Helper()
			if err := e.srv.Refresh(cx); err != nil {
				t.Fatal(err)
			}
		}
		claimElsewhere("ghost2")
		refresh()
		report("keep-me")
		if !placed("ghost2") {
			t.Fatal("the same meeting set pruned again at once")
		}
		clk.Advance(pruneEvery)
		report("keep-me")
		if placed("ghost2") || !placed("keep-me") {
			t.Fatalf("after pruneEvery with the same set and a placement since: ghost2 %v keep-me %v; want only keep-me placed", placed("ghost2"), placed("keep-me"))
		}
		// No placement this replica knows of since that pruning: the same
		// set asks for none, however long it stays (ghost3 is placed, but
		// not refreshed yet, so not known).
		claimElsewhere("ghost3")
		for range 3 {
			clk.Advance(pruneEvery)
			report("keep-me")
		}
		if !placed("ghost3") {
			t.Fatal("the same set pruned again after pruneEvery without a placement learnt of since the last pruning")
		}
		refresh() // learns of ghost3; the last pruning is long past
		report("keep-me")
		if placed("ghost3") || !placed("keep-me") {
			t.Fatalf("after pruneEvery with a placement learnt of: ghost3 %v keep-me %v; want only keep-me placed", placed("ghost3"), placed("keep-me"))
		}
	})
}

// TestPolledNodes: a node added by an operator without an agent is polled,
// goes online, takes meetings, and an agent can later adopt it.
func TestPolledNodes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dsn string) {
		clk := testenv.NewClock()
		e := newEnv(t, dsn, clk)
		e.addNodes(1) // gives us a running simulator; take it out of the registry again
		nd := e.nodes[0]
		var st agentapi.StateResponse
		e.agentCall(agentapi.PathDeregister, agentapi.NodeRequest{Node: nd.name}, &st, http.StatusOK)

		code, body := e.do(http.MethodPost, "/admin/v1/servers", adminToken, map[string]any{"url": nd.http.URL + "/bigbluebutton/api/", "secret": nd.secret})
		if code != http.StatusOK {
			t.Fatalf("add: HTTP %d %s", code, body)
		}
		cx := ctxT(t)
		e.srv.pollAll(cx)
		s := e.status()
		if len(s) != 1 || !s[0].Online || s[0].Source != records.SourcePoll {
			t.Fatalf("polled node: %+v", s)
		}
		if _, err := e.client.Create(cx, bbb.CreateRequest{MeetingID: "on-polled", Name: "x"}); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Second)
		e.srv.pollAll(cx)
		if s := e.status(); s[0].Meetings != 1 {
			t.Fatalf("poll did not count the meeting: %+v", s[0])
		}
		// It dies: the first poll that gets no answer takes it out of
		// rotation, well before its missed polls would.
		nd.http.CloseClientConnections()
		if err := nd.sim.SetAnswering(sim.AnswerRefuse); err != nil {
			t.Fatal(err)
		}
		e.srv.pollAll(cx)
		if s := e.status(); s[0].Online {
			t.Fatalf("a polled node that does not answer stays online: %+v", s[0])
		}
		if err := nd.sim.SetAnswering(sim.AnswerNormal); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Second)
		e.srv.pollAll(cx)
		if s := e.status(); !s[0].Online {
			t.Fatalf("a polled node that answers again stays offline: %+v", s[0])
		}
		// The operator installs an agent on it: same URL, the agent's name.
		e.register(nd)
		s = e.status()
		if len(s) != 1 || s[0].Name != nd.name || s[0].Source != records.SourceAgent {
			t.Fatalf("adoption: %+v", s)
		}
		if _, err := e.store.Meeting(cx, "on-polled"); err != nil {
			t.Fatalf("adoption lost the placement: %v", err)
		}
	})
}

func TestMetricsAndHealth(t *testing.T) {
	e := newEnv(t, backends[0].dsn(t), testenv.NewClock())
	e.addNodes(2)
	if _, err := e.client.Create(ctxT(t), bbb.CreateRequest{MeetingID: "metered", Name: "x"}); err != nil {
		t.Fatal(err)
	}
	code, body := e.do(http.MethodGet, "/healthz", "", nil)
	if code != http.StatusOK {
		t.Fatalf("healthz: %d %s", code, body)
	}
	if code, _ = e.do(http.MethodGet, "/metrics", "", nil); code != http.StatusUnauthorized {
		t.Fatalf("metrics without the admin token: %d, want 401", code)
	}
	code, body = e.do(http.MethodGet, "/metrics", adminToken, nil)
	if code != http.StatusOK {
		t.Fatalf("metrics: %d", code)
	}
	for _, want := range []string{
		`bbb_balancer_node_online{node="bbb1"} 1`,
		`bbb_balancer_node_state{node="bbb2",state="enabled"} 1`,
		`bbb_balancer_placements_total{result="new"} 1`,
		`bbb_balancer_api_requests_total{call="create",result="SUCCESS"} 1`,
		`bbb_balancer_reports_total 2`,
		`bbb_balancer_api_request_duration_seconds_bucket{call="create"`,
		`bbb_balancer_node_load{node="bbb1"}`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	for _, secret := range []string{lbSecret, agentToken, adminToken, e.nodes[0].secret} {
		if strings.Contains(string(body), secret) {
			t.Fatal("metrics leak a secret")
		}
	}
}

// TestReportAnswers: a kept answer to a report is what encoding the
// response gives, for each state, and a TURN list that differs in anything
// (a node, a URI, the order, none at all) is answered anew.
func TestReportAnswers(t *testing.T) {
	var a reportAnswers
	lists := [][]agentapi.TURNServer{
		{},
		{{Node: "t1", URIs: []string{"turn:t1:3478"}}},
		{{Node: "t1", URIs: []string{"turn:t1:3478"}}, {Node: "t2", URIs: []string{"turns:t2:443?transport=tcp"}}},
		{{Node: "t1", URIs: []string{"turn:t1:3479"}}, {Node: "t2", URIs: []string{"turns:t2:443?transport=tcp"}}},
		{{Node: "t2", URIs: []string{"turns:t2:443?transport=tcp"}}, {Node: "t1", URIs: []string{"turn:t1:3479"}}},
		{{Node: "t1", URIs: []string{"turn:t1:3479", "x"}}, {Node: "t2", URIs: []string{"turns:t2:443?transport=tcp"}}},
		{},
	}
	for i, list := range lists {
		for _, st := range []fleet.AdminState{fleet.Enabled, fleet.Cordoned, fleet.Disabled, fleet.Enabled} {
			var want bytes.Buffer
			if err := json.NewEncoder(&want).Encode(agentapi.ReportResponse{State: st, TURNServers: list}); err != nil {
				t.Fatal(err)
			}
			// A copy: the list a report makes is a new slice each time.
			if got := a.body(st, slices.Clone(list)); string(got) != want.String() {
				t.Errorf("list %d, %s: answered %s, want %s", i, st, got, want.String())
			}
		}
	}
	if got := string(a.body(fleet.Enabled, []agentapi.TURNServer{})); !strings.Contains(got, `"turn_servers":[]`) {
		t.Errorf("no TURN server: %s, want an empty list, not null", got)
	}
}

// TestTURNServersInReply: BBB nodes learn the online, enabled TURN nodes
// whose own probe works, with the URIs they offer.
func TestTURNServersInReply(t *testing.T) {
	clk := testenv.NewClock()
	e := newEnv(t, backends[0].dsn(t), clk)
	e.addNodes(1)
	turn := func(name string, uris ...string) {
		e.agentCall(agentapi.PathRegister, agentapi.RegisterRequest{Node: name, Role: "turn", TURNURIs: uris, ReportIntervalSeconds: 5}, nil, http.StatusOK)
	}
	turn("turn1", "turn:turn1.example.com:3478", "turns:turn1.example.com:443?transport=tcp")
	turn("turn2", "turn:turn2.example.com:3478")
	turn("turn3", "turn:turn3.example.com:3478")
	e.agentCall(agentapi.PathRegister, agentapi.RegisterRequest{Node: "turn4", Role: "turn", ReportIntervalSeconds: 5}, nil, http.StatusBadRequest)
	e.agentCall(agentapi.PathRegister, agentapi.RegisterRequest{Node: "turn5", Role: "turn", TURNURIs: []string{"http://x"}, ReportIntervalSeconds: 5}, nil, http.StatusBadRequest)

	report := func(name string, healthy bool) {
		e.agentCall(agentapi.PathReport, agentapi.ReportRequest{Node: name, Load: fleet.Load{TURNHealthy: healthy}}, nil, http.StatusOK)
	}
	report("turn1", true)
	report("turn2", false) // wrong secret: its own allocation fails
	report("turn3", true)
	e.adminState("turn3", "cordon")
	resp := e.report(e.nodes[0], fleet.Load{BBBHealthy: true})
	if len(resp.TURNServers) != 1 || resp.TURNServers[0].Node != "turn1" || len(resp.TURNServers[0].URIs) != 2 {
		t.Fatalf("TURN servers in the reply: %+v", resp.TURNServers)
	}
	// turn1 stops reporting: offline, no longer offered.
	for i := 0; i < 4; i++ {
		clk.Advance(5 * time.Second)
		e.report(e.nodes[0], fleet.Load{BBBHealthy: true})
	}
	if resp := e.report(e.nodes[0], fleet.Load{BBBHealthy: true}); len(resp.TURNServers) != 0 {
		t.Fatalf("offline TURN node still offered: %+v", resp.TURNServers)
	}
	// It reports again: offered at the next report.
	report("turn1", true)
	if resp := e.report(e.nodes[0], fleet.Load{BBBHealthy: true}); len(resp.TURNServers) != 1 || resp.TURNServers[0].Node != "turn1" {
		t.Fatalf("turn1 back: TURN servers in the reply: %+v", resp.TURNServers)
	}
	// The status table lists TURN nodes apart.
	for _, s := range e.status() {
		if s.Name == "turn1" && (s.Role != fleet.RoleTURN || s.URL != "") {
			t.Fatalf("turn1 in status: %+v", s)
		}
	}
}
