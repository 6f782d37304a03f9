package balancer

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/bbb/sim"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

var noFollow = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// TestSpreadJoinAndGetMeetings: 30 creates over three nodes, joins re-signed
// for the right node, getMeetings for the fleet, and a node down.
func TestSpreadJoinAndGetMeetings(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn, testenv.NewClock())
		e.addNodes(3)
		cx := ctxT(t)
		for i := 0; i < 30; i++ {
			if _, err := e.client.Create(cx, bbb.CreateRequest{MeetingID: fmt.Sprintf("m-%02d", i), Name: "Class"}); err != nil {
				t.Fatal(err)
			}
			if i%5 == 4 {
				e.reportAll()
			}
		}
		per := e.meetingsPerNode()
		for _, nd := range e.nodes {
			if per[nd.name] == 0 || per[nd.name] > 15 {
				t.Fatalf("spread %v: every node gets some, none more than half", per)
			}
		}

		// join: 302 to the meeting's node, signed with that node's secret.
		for _, id := range []string{"m-00", "m-01", "m-02"} {
			on := e.nodeOf(id)
			if len(on) != 1 {
				t.Fatalf("%s runs on %v", id, on)
			}
			resp, err := noFollow.Get(e.client.JoinURL(bbb.JoinRequest{MeetingID: id, FullName: "Ada Lovelace", Role: bbb.RoleModerator}))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			loc := resp.Header.Get("Location")
			if resp.StatusCode != http.StatusFound {
				t.Fatalf("join %s: HTTP %d", id, resp.StatusCode)
			}
			nd := e.node(on[0])
			if !strings.HasPrefix(loc, nd.http.URL+"/bigbluebutton/api/join?") {
				t.Fatalf("join %s went to %s, want node %s (%s)", id, loc, nd.name, nd.http.URL)
			}
			u, _ := url.Parse(loc)
			if _, err := (bbb.Verifier{Secrets: []string{nd.secret}}).Verify("join", u.RawQuery); err != nil {
				t.Fatalf("join URL not valid for the node's secret: %v", err)
			}
			// The browser follows it: the node accepts it and redirects to its client.
			resp, err = noFollow.Get(loc)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusFound || !strings.Contains(resp.Header.Get("Location"), "sessionToken=") {
				t.Fatalf("node refused the re-signed join: HTTP %d %s", resp.StatusCode, resp.Header.Get("Location"))
			}
		}

		ms, err := e.client.GetMeetings(cx)
		if err != nil || len(ms) != 30 {
			t.Fatalf("getMeetings: %d meetings, %v", len(ms), err)
		}

		// One node stops answering: getMeetings still succeeds with the others'.
		down := e.nodes[0]
		down.http.CloseClientConnections()
		if err := down.sim.SetAnswering(sim.AnswerRefuse); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(DefaultGetMeetingsMaxAge) // past the kept answers' bound
		ms, err = e.client.GetMeetings(cx)
		if err != nil {
			t.Fatalf("getMeetings with a node down: %v", err)
		}
		if want := 30 - per[down.name]; len(ms) != want {
			t.Fatalf("getMeetings with a node down: %d meetings, want %d", len(ms), want)
		}
		// A slow node is cut off at the per-node timeout instead of holding the call.
		if err := down.sim.SetAnswering(sim.AnswerHang); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(DefaultGetMeetingsMaxAge)
		start := time.Now()
		ms, err = e.client.GetMeetings(cx)
		if err != nil || len(ms) != 30-per[down.name] {
			t.Fatalf("getMeetings with a hanging node: %d, %v", len(ms), err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("getMeetings waited %v for a hanging node", d)
		}
	})
}

func (e *env) node(name string) *node {
	for _, nd := range e.nodes {
		if nd.name == name {
			return nd
		}
	}
	e.t.Fatalf("no node %s", name)
	return nil
}

// TestOfflineNodeGetsNothing: reports stop → offline within 3 intervals, no
// new meetings, and a create for a meeting that lived there is placed again.
func TestOfflineNodeGetsNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dsn string) {
		clk := testenv.NewClock()
		e := newEnv(t, dsn, clk)
		e.addNodes(2)
		cx := ctxT(t)
		if _, err := e.client.Create(cx, bbb.CreateRequest{MeetingID: "lives-on-dead", Name: "x"}); err != nil {
			t.Fatal(err)
		}
		deadName := e.nodeOf("lives-on-dead")[0]
		alive := e.nodes[0]
		if alive.name == deadName {
			alive = e.nodes[1]
		}
		// Three intervals pass; only the live node reports.
		for i := 0; i < 3; i++ {
			clk.Advance(5 * time.Second)
			e.report(alive, fleet.Load{BBBHealthy: true})
		}
		clk.Advance(time.Second)
		for _, s := range e.status() {
			if s.Name == deadName && s.Online {
				t.Fatalf("%s still online after 3 missed intervals: %+v", deadName, s)
			}
		}
		for i := 0; i < 5; i++ {
			id := fmt.Sprintf("after-%d", i)
			if _, err := e.client.Create(cx, bbb.CreateRequest{MeetingID: id, Name: "x"}); err != nil {
				t.Fatal(err)
			}
			if on := e.nodeOf(id); len(on) != 1 || on[0] != alive.name {
				t.Fatalf("%s placed on %v, want %s", id, on, alive.name)
			}
		}
		if _, err := e.client.Create(cx, bbb.CreateRequest{MeetingID: "lives-on-dead", Name: "x"}); err != nil {
			t.Fatal(err)
		}
		if on := e.nodeOf("lives-on-dead"); len(on) != 2 {
			t.Fatalf("re-created meeting runs on %v, want the dead node's old copy and the live node", on)
		}
		// Joins now go to the live node.
		resp, err := noFollow.Get(e.client.JoinURL(bbb.JoinRequest{MeetingID: "lives-on-dead", FullName: "x", Role: bbb.RoleViewer}))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if !strings.HasPrefix(resp.Header.Get("Location"), alive.http.URL) {
			t.Fatalf("join goes to %s, want %s", resp.Header.Get("Location"), alive.http.URL)
		}
	})
}

// TestBurstSpreads: 100 creates at once with no report in between spread
// across equally loaded nodes.
func TestBurstSpreads(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn, testenv.NewClock())
		e.addNodes(3)
		cx := ctxT(t)
		var wg sync.WaitGroup
		errs := make(chan error, 100)
		for w := 0; w < 10; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 10; i++ {
					if _, err := e.client.Create(cx, bbb.CreateRequest{MeetingID: fmt.Sprintf("burst-%d-%d", w, i), Name: "x"}); err != nil {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		per := e.meetingsPerNode()
		max, total := 0, 0
		for _, n := range per {
			total += n
			max = maxInt(max, n)
		}
		mean := float64(total) / float64(len(e.nodes))
		if total != 100 || float64(max)/mean > 1.2 {
			t.Fatalf("burst spread %v: max/mean = %.2f", per, float64(max)/mean)
		}
	})
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// TestRepeatedCreateSameNode: a running meeting's repeated create goes to the
// same node; a cordoned node keeps its running meetings but gets no new ones.
func TestRepeatedCreateSameNode(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn, testenv.NewClock())
		e.addNodes(3)
		cx := ctxT(t)
		req := bbb.CreateRequest{MeetingID: "repeat", Name: "Repeat", AttendeePW: "ap", ModeratorPW: "mp"}
		first, err := e.client.Create(cx, req)
		if err != nil {
			t.Fatal(err)
		}
		on := e.nodeOf("repeat")
		for i := 0; i < 5; i++ {
			again, err := e.client.Create(cx, req)
			if err != nil || again.MessageKey != bbb.KeyDuplicateWarning || again.InternalMeetingID != first.InternalMeetingID {
				t.Fatalf("repeat %d: %+v, %v", i, again, err)
			}
		}
		if got := e.nodeOf("repeat"); len(got) != 1 || got[0] != on[0] {
			t.Fatalf("meeting on %v, want only %v", got, on)
		}
		// Cordon its node: the running meeting stays, new ones go elsewhere.
		nd := e.node(on[0])
		if _, err := nd.sim.AddAttendees("repeat", sim.AttendeeSpec{Count: 2}); err != nil {
			t.Fatal(err)
		}
		e.adminState(nd.name, "cordon")
		if again, err := e.client.Create(cx, req); err != nil || again.InternalMeetingID != first.InternalMeetingID {
			t.Fatalf("create on cordoned node: %+v, %v", again, err)
		}
		for i := 0; i < 6; i++ {
			id := fmt.Sprintf("new-%d", i)
			if _, err := e.client.Create(cx, bbb.CreateRequest{MeetingID: id, Name: "x"}); err != nil {
				t.Fatal(err)
			}
			if got := e.nodeOf(id); got[0] == nd.name {
				t.Fatalf("new meeting %s placed on cordoned node", id)
			}
		}
		// The meeting ends; the empty cordoned node turns disabled at its next report.
		if err := e.client.End(cx, "repeat", ""); err != nil {
			t.Fatal(err)
		}
		resp := e.report(nd, fleet.Load{BBBHealthy: true})
		if resp.State != fleet.Disabled {
			t.Fatalf("empty cordoned node: state %s, want disabled", resp.State)
		}
	})
}

func (e *env) adminState(name, state string) {
	e.t.Helper()
	status, body := e.do(http.MethodPost, "/admin/v1/servers/"+name+"/state", adminToken, map[string]string{"state": state})
	if status != http.StatusOK {
		e.t.Fatalf("set state: HTTP %d %s", status, body)
	}
}

// TestMeetingCalls forwards end, isMeetingRunning, getMeetingInfo and
// insertDocument to the meeting's node.
func TestMeetingCalls(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn, testenv.NewClock())
		e.addNodes(2)
		cx := ctxT(t)
		if _, err := e.client.Create(cx, bbb.CreateRequest{MeetingID: "calls", Name: "Calls", Documents: []bbb.Document{{URL: "https://example.com/a.pdf", Filename: "a.pdf"}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.client.Join(cx, bbb.JoinRequest{MeetingID: "calls", FullName: "Ada", Role: bbb.RoleModerator}); err != nil {
			t.Fatalf("join redirect=false: %v", err)
		}
		if running, err := e.client.IsMeetingRunning(cx, "calls"); err != nil || !running {
			t.Fatalf("isMeetingRunning: %v %v", running, err)
		}
		info, err := e.client.GetMeetingInfo(cx, "calls")
		if err != nil || info.ParticipantCount != 1 {
			t.Fatalf("getMeetingInfo: %+v %v", info, err)
		}
		if err := e.client.InsertDocument(cx, "calls", []bbb.Document{{URL: "https://example.com/b.pdf", Filename: "b.pdf"}}); err != nil {
			t.Fatalf("insertDocument: %v", err)
		}
		if err := e.client.End(cx, "calls", ""); err != nil {
			t.Fatal(err)
		}
		if _, err := e.store.Meeting(cx, "calls"); err == nil {
			t.Fatal("placement kept after end")
		}
		if running, err := e.client.IsMeetingRunning(cx, "calls"); err != nil || running {
			t.Fatalf("isMeetingRunning after end: %v %v", running, err)
		}
		if _, err := e.client.GetMeetingInfo(cx, "unknown-meeting"); !errors.Is(err, bbb.ErrNotFound) {
			t.Fatalf("getMeetingInfo unknown: %v", err)
		}
		if err := e.client.End(cx, "unknown-meeting", ""); !errors.Is(err, bbb.ErrNotFound) {
			t.Fatalf("end unknown: %v", err)
		}
		if recs, err := e.client.GetRecordings(cx, bbb.GetRecordingsRequest{}); err != nil || len(recs) != 0 {
			t.Fatalf("getRecordings: %v %v", recs, err)
		}
	})
}

// TestBadInput: every malformed call gets a BBB error envelope with HTTP 200.
func TestBadInput(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn, testenv.NewClock())
		e.addNodes(1)
		signed := func(call, query string) string {
			return e.http.URL + "/bigbluebutton/api/" + call + "?" + bbb.SignQuery(bbb.SHA256, call, query, lbSecret)
		}
		tests := []struct {
			name, method, url, body, wantKey string
		}{
			{"missing checksum", "GET", e.http.URL + "/bigbluebutton/api/create?meetingID=abc", "", bbb.KeyChecksumError},
			{"wrong checksum", "GET", e.http.URL + "/bigbluebutton/api/create?meetingID=abc&checksum=" + strings.Repeat("a", 64), "", bbb.KeyChecksumError},
			{"other secret", "GET", e.http.URL + "/bigbluebutton/api/getMeetings?" + bbb.SignQuery(bbb.SHA1, "getMeetings", "", "nope-nope-nope"), "", bbb.KeyChecksumError},
			{"unknown call", "GET", signed("getDefaultConfigXML", ""), "", bbb.KeyUnsupportedRequest},
			{"wrong method", "POST", signed("join", "meetingID=abc&fullName=x"), "", bbb.KeyUnsupportedRequest},
			{"invalid meetingID", "GET", signed("create", "meetingID=a%2Cb"), "", bbb.KeyValidationError},
			{"short meetingID", "GET", signed("create", "meetingID=a"), "", bbb.KeyValidationError},
			{"missing meetingID", "GET", signed("create", "name=x"), "", bbb.KeyMissingParamMeetingID},
			{"duplicate parameter", "GET", signed("create", "meetingID=abc&meetingID=def"), "", bbb.KeyValidationError},
			{"non-UTF-8", "GET", signed("create", "meetingID=ab%FF%FE"), "", bbb.KeyValidationError},
			{"bad escape", "GET", signed("create", "meetingID=ab%zz"), "", bbb.KeyValidationError},
			{"oversize body", "POST", signed("create", "meetingID=abc"), strings.Repeat("x", 17<<20), bbb.KeyRequestTooLarge},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				req, _ := http.NewRequest(tt.method, tt.url, strings.NewReader(tt.body))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/xml") {
					t.Fatalf("HTTP %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
				}
				err = bbb.DecodeResponse("x", body, nil)
				var apiErr *bbb.APIError
				if !errors.As(err, &apiErr) || apiErr.MessageKey != tt.wantKey {
					t.Fatalf("got %v, want messageKey %s: %s", err, tt.wantKey, body)
				}
			})
		}
		if len(e.meetingsPerNode()) != 0 {
			t.Fatal("a bad request created a meeting")
		}
	})
}

// TestNoNodes: with nothing online, create says so in BBB XML.
func TestNoNodes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn, testenv.NewClock())
		_, err := e.client.Create(ctxT(t), bbb.CreateRequest{MeetingID: "nobody-home", Name: "x"})
		var apiErr *bbb.APIError
		if !errors.As(err, &apiErr) || apiErr.MessageKey != keyNoServer {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestSecretsAndAlgorithms: every algorithm, with any of several secrets.
func TestSecretsAndAlgorithms(t *testing.T) {
	clk := testenv.NewClock()
	st := openStore(t, backends[0].dsn(t))
	srv, err := New(ctxT(t), Config{Secrets: []string{"first-secret-abcdef", "second-secret-abcdef"}, AgentToken: agentToken,
		AdminToken: adminToken, Clock: clk.Now}, st)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptestServer(t, srv)
	for _, secret := range []string{"first-secret-abcdef", "second-secret-abcdef"} {
		for _, alg := range bbb.AllAlgorithms {
			c, err := bbb.NewClient(ts, secret, bbb.WithAlgorithm(alg))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.GetMeetings(ctxT(t)); err != nil {
				t.Errorf("%s with secret %s: %v", alg, secret[:5], err)
			}
		}
	}
	c, _ := bbb.NewClient(ts, "third-secret-abcdef")
	if _, err := c.GetMeetings(ctxT(t)); !errors.Is(err, bbb.ErrChecksum) {
		t.Fatalf("unknown secret: %v", err)
	}
	if _, err := New(ctxT(t), Config{Secrets: []string{"short"}, AgentToken: "a", AdminToken: "b"}, st); err == nil {
		t.Fatal("a 5-character secret was accepted")
	}
}

// TestRemovedNodeMeetingPlacedAgain: a create for a meeting whose node an
// operator removed lands on another node.
func TestRemovedNodeMeetingPlacedAgain(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn, testenv.NewClock())
		e.addNodes(2)
		cx := ctxT(t)
		if _, err := e.client.Create(cx, bbb.CreateRequest{MeetingID: "orphan", Name: "x", Documents: []bbb.Document{{URL: "https://example.com/a.pdf", Filename: "a.pdf"}}}); err != nil {
			t.Fatal(err)
		}
		gone := e.nodeOf("orphan")[0]
		for _, m := range e.node(gone).sim.Stats().Meetings {
			if m.MeetingID == "orphan" && m.Documents != 1 {
				t.Fatalf("the POST body did not reach the node: %d documents", m.Documents)
			}
		}
		if code, body := e.do(http.MethodDelete, "/admin/v1/servers/"+gone, adminToken, nil); code != http.StatusOK {
			t.Fatalf("remove: %d %s", code, body)
		}
		if _, err := e.client.Create(cx, bbb.CreateRequest{MeetingID: "orphan", Name: "x"}); err != nil {
			t.Fatal(err)
		}
		for _, on := range e.nodeOf("orphan") {
			if on != gone {
				return
			}
		}
		t.Fatalf("meeting of a removed node not placed again: %v", e.nodeOf("orphan"))
	})
}
