package balancer

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/agentapi"
	"github.com/bbb-agent/bbb-agent/balancer/placement"
	"github.com/bbb-agent/bbb-agent/balancer/records"
	"github.com/bbb-agent/bbb-agent/balancer/web"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
	"golang.org/x/crypto/bcrypt"
)

// browser is an HTTP client with cookies that does not follow redirects.
func browser(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func post(t *testing.T, c *http.Client, u string, form url.Values) (*http.Response, string) {
	t.Helper()
	resp, err := c.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

func login(t *testing.T, c *http.Client, base, user, password string) string {
	t.Helper()
	resp, _ := post(t, c, base+"/dashboard/login", url.Values{"user": {user}, "password": {password}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/dashboard/" {
		t.Fatalf("login: HTTP %d to %q, want 303 to /dashboard/", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, page := get(t, c, base+"/dashboard/")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("dashboard after login: HTTP %d", resp.StatusCode)
	}
	m := csrfRe.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("the dashboard carries no CSRF token")
	}
	return m[1]
}

func TestDashboard(t *testing.T) {
	e := newEnv(t, "sqlite:"+t.TempDir()+"/balancer.db", testenv.NewClock())
	e.addNodes(3)
	base := e.http.URL
	c := browser(t)

	// Without a session: to the login page; with a wrong token: refused.
	if resp, _ := get(t, c, base+"/dashboard/"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/dashboard/login" {
		t.Fatalf("no session: HTTP %d to %q, want 303 to the login", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := post(t, c, base+"/dashboard/login", url.Values{"password": {"wrong"}}); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong token: HTTP %d, want 401", resp.StatusCode)
	}
	csrf := login(t, c, base, "", adminToken)
	for _, ck := range c.Jar.Cookies(mustURL(t, base+"/dashboard/")) {
		if ck.Name == "bbb_dashboard" && strings.Contains(ck.Value, adminToken) {
			t.Fatal("the session cookie carries the admin token")
		}
	}

	resp, page := get(t, c, base+"/dashboard/")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("dashboard: HTTP %d", resp.StatusCode)
	}
	for _, nd := range e.nodes {
		if !strings.Contains(page, `data-node="`+nd.name+`" data-meetings="0" data-state="enabled" data-liveness="online"`) {
			t.Errorf("the page does not show %s enabled and online", nd.name)
		}
		if strings.Contains(page, nd.secret) {
			t.Errorf("the page shows %s's secret", nd.name)
		}
	}
	for _, secret := range []string{lbSecret, agentToken, adminToken} {
		if strings.Contains(page, secret) {
			t.Errorf("the page shows a secret %q", secret)
		}
	}

	// A forged POST without the CSRF token changes nothing.
	id := e.srv.reg.snapshot()[0].ID
	if resp, _ := post(t, c, base+"/dashboard/nodes/"+id+"/state", url.Values{"state": {"cordoned"}}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("POST without CSRF token: HTTP %d, want 403", resp.StatusCode)
	}
	if st := e.status()[0].State; st != fleet.Enabled {
		t.Fatalf("after a forged POST the node is %s", st)
	}
	resp, _ = post(t, c, base+"/dashboard/nodes/"+id+"/state", url.Values{"state": {"cordoned"}, "csrf": {csrf}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("cordon: HTTP %d", resp.StatusCode)
	}
	if st := e.status()[0].State; st != fleet.Cordoned {
		t.Fatalf("after cordon from the page the admin API says %s", st)
	}
	// A node that refuses the balancer's checksum says so on the page.
	e.srv.reg.markUnhealthy(e.srv.reg.snapshot()[1].ID, "checksumError")
	_, live := get(t, c, base+"/dashboard/live")
	if !strings.Contains(live, `<small class="reason">checksumError: wrong secret</small>`) {
		t.Errorf("the live part does not show the unhealthy node's reason:\n%s", live)
	}
	if !strings.Contains(live, `data-state="cordoned"`) || !strings.Contains(live, "set to cordoned by admin-token") ||
		!strings.Contains(live, "bbb1 joined the fleet") || !strings.Contains(live, "<polyline") {
		t.Fatalf("the live part does not show the cordon and its event:\n%s", live)
	}

	// A meeting created through the API appears in the list.
	if _, err := e.client.Create(ctxT(t), bbb.CreateRequest{MeetingID: "m-visible", Name: "Visible meeting"}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the meeting on the page", func() bool {
		_, live := get(t, c, base+"/dashboard/live")
		return strings.Contains(live, `data-meeting="m-visible"`)
	})

	// A room from the page: its two links, shown once.
	resp, page = post(t, c, base+"/dashboard/rooms", url.Values{"name": {"Page room"}, "record": {"1"}, "csrf": {csrf}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, `id="moderator-link">`+base+"/rooms/") ||
		!strings.Contains(page, `id="participant-link">`+base+"/rooms/") {
		t.Fatalf("create a room from the page: HTTP %d:\n%s", resp.StatusCode, page)
	}
	if rooms, _ := e.store.Rooms(ctxT(t)); len(rooms) != 1 || rooms[0].Name != "Page room" || !rooms[0].Record {
		t.Fatalf("rooms after the page's create: %+v", rooms)
	}

	// Logout needs the CSRF token too.
	if resp, _ := post(t, c, base+"/dashboard/logout", nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("logout without CSRF: HTTP %d", resp.StatusCode)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestDashboardUsers(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("watch-only"), bcrypt.MinCost)
	path := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(path, []byte("# users\nviewer:"+string(hash)+":readonly\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	st := openStore(t, "sqlite:"+t.TempDir()+"/balancer.db")
	srv, err := New(context.Background(), Config{Secrets: []string{lbSecret}, AgentToken: agentToken, AdminToken: adminToken,
		DashboardUsers: path, Logger: slog.New(slog.DiscardHandler)}, st)
	if err != nil {
		t.Fatal(err)
	}
	base := httptestServer(t, srv)
	c := browser(t)
	if resp, _ := post(t, c, base+"/dashboard/login", url.Values{"user": {"viewer"}, "password": {"wrong"}}); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong password: HTTP %d", resp.StatusCode)
	}
	csrf := login(t, c, base, "viewer", "watch-only")
	_, page := get(t, c, base+"/dashboard/")
	if strings.Contains(page, "Create room") || !strings.Contains(page, "read-only") {
		t.Fatal("a read-only user is offered actions")
	}
	if resp, _ := post(t, c, base+"/dashboard/rooms", url.Values{"name": {"x"}, "csrf": {csrf}}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("read-only room create: HTTP %d, want 403", resp.StatusCode)
	}

	// A bad users file stops the balancer from starting.
	if err := os.WriteFile(path, []byte("viewer:plain:readonly\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(context.Background(), Config{Secrets: []string{lbSecret}, AgentToken: agentToken, AdminToken: adminToken,
		DashboardUsers: path}, st); err == nil || !strings.Contains(err.Error(), "bcrypt") {
		t.Fatalf("New with a plain-text password: err = %v", err)
	}
}

func TestDashboardOff(t *testing.T) {
	st := openStore(t, "sqlite:"+t.TempDir()+"/balancer.db")
	srv, err := New(context.Background(), Config{Secrets: []string{lbSecret}, AgentToken: agentToken, AdminToken: adminToken,
		DisableDashboard: true, Logger: slog.New(slog.DiscardHandler)}, st)
	if err != nil {
		t.Fatal(err)
	}
	base := httptestServer(t, srv)
	if resp, _ := get(t, browser(t), base+"/dashboard/login"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("--dashboard=false: /dashboard/login HTTP %d, want 404", resp.StatusCode)
	}
}

// createRoomAPI creates a room through the admin API.
func (e *env) createRoomAPI(req CreateRoomRequest) web.RoomLinks {
	e.t.Helper()
	code, body := e.do(http.MethodPost, PathRooms, adminToken, req)
	if code != http.StatusOK {
		e.t.Fatalf("create room: HTTP %d %s", code, body)
	}
	var links web.RoomLinks
	if err := json.Unmarshal(body, &links); err != nil {
		e.t.Fatal(err)
	}
	return links
}

// attendees lists the (name, role) of a meeting's attendees on whichever node runs it.
func (e *env) attendees(meetingID string) map[string]string {
	out := map[string]string{}
	for _, nd := range e.nodes {
		c, _ := bbb.NewClient(nd.http.URL, nd.secret)
		m, err := c.GetMeetingInfo(context.Background(), meetingID)
		if err != nil {
			continue
		}
		for _, a := range m.Attendees {
			out[a.FullName] = a.Role
		}
	}
	return out
}

func TestRoomLinks(t *testing.T) {
	e := newEnv(t, "sqlite:"+t.TempDir()+"/balancer.db", testenv.NewClock())
	e.addNodes(2)
	links := e.createRoomAPI(CreateRoomRequest{Name: "Physics 101", WaitForModerator: true, MaxParticipants: 10})
	if !strings.HasPrefix(links.Moderator, e.http.URL+"/rooms/") || links.Moderator == links.Viewer {
		t.Fatalf("links %+v", links)
	}
	c := browser(t)

	// The participant waits until a moderator has started the room.
	resp, page := get(t, c, links.Viewer+"?name=Pat")
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, `http-equiv="refresh"`) {
		t.Fatalf("participant before the moderator: HTTP %d, want a waiting page:\n%s", resp.StatusCode, page)
	}
	if len(e.meetingsPerNode()) != 0 {
		t.Fatal("a waiting participant created the meeting")
	}

	resp, page = get(t, c, links.Moderator)
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "moderator") || !strings.Contains(page, "Physics 101") {
		t.Fatalf("moderator link: HTTP %d:\n%s", resp.StatusCode, page)
	}
	resp, _ = post(t, c, links.Moderator, url.Values{"name": {"Mia"}})
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(loc, "/bigbluebutton/api/join?") {
		t.Fatalf("moderator join: HTTP %d to %q", resp.StatusCode, loc)
	}
	var rooms []Room
	code, body := e.do(http.MethodGet, PathRooms, adminToken, nil)
	if code != http.StatusOK || json.Unmarshal(body, &rooms) != nil || len(rooms) != 1 {
		t.Fatalf("rooms list: HTTP %d %s", code, body)
	}
	meetingID := rooms[0].MeetingID
	on := e.nodeOf(meetingID)
	if len(on) != 1 || !strings.HasPrefix(loc, e.node(on[0]).http.URL) {
		t.Fatalf("the join goes to %q, the meeting runs on %v", loc, on)
	}
	// Follow the join on the node, as the browser would.
	if resp, _ := get(t, c, loc); resp.StatusCode != http.StatusFound {
		t.Fatalf("the node's join: HTTP %d", resp.StatusCode)
	}
	if got := e.attendees(meetingID); got["Mia"] != bbb.RoleModerator {
		t.Fatalf("attendees %v: want Mia as moderator", got)
	}

	// Now the participant gets in, as a viewer.
	resp, _ = get(t, c, links.Viewer+"?name=Pat")
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("participant after the moderator: HTTP %d", resp.StatusCode)
	} else if r, _ := get(t, c, loc); r.StatusCode != http.StatusFound {
		t.Fatalf("the node's join: HTTP %d", r.StatusCode)
	}
	if got := e.attendees(meetingID); got["Pat"] != bbb.RoleViewer {
		t.Fatalf("attendees %v: want Pat as viewer", got)
	}

	// Rotation: the old links open nothing, the new ones work.
	code, body = e.do(http.MethodPost, PathRoom+links.ID+"/rotate", adminToken, nil)
	var rotated web.RoomLinks
	if code != http.StatusOK || json.Unmarshal(body, &rotated) != nil || rotated.Moderator == links.Moderator {
		t.Fatalf("rotate: HTTP %d %s", code, body)
	}
	if resp, _ := get(t, c, links.Moderator); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("old link after rotation: HTTP %d, want 404", resp.StatusCode)
	}
	if resp, _ := get(t, c, rotated.Moderator); resp.StatusCode != http.StatusOK {
		t.Fatalf("new link: HTTP %d", resp.StatusCode)
	}

	// Names are rate-limited per address.
	limited := false
	for range 40 {
		if resp, _ := post(t, c, rotated.Viewer, url.Values{"name": {"Flood"}}); resp.StatusCode == http.StatusTooManyRequests {
			limited = true
			break
		}
	}
	if !limited {
		t.Fatal("40 name submissions in a row were not rate-limited")
	}

	if code, body := e.do(http.MethodDelete, PathRoom+links.ID, adminToken, nil); code != http.StatusOK {
		t.Fatalf("delete: HTTP %d %s", code, body)
	}
	if resp, _ := get(t, c, rotated.Viewer); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("link of a deleted room: HTTP %d, want 404", resp.StatusCode)
	}
}

func TestLoadRing(t *testing.T) {
	var r loadRing
	if r.points() != nil {
		t.Fatal("an empty ring has points")
	}
	for i := range historyLen + 20 { // the oldest 20 fall out
		r.add(float64(i))
	}
	p := r.points()
	if len(p) != historyPoints {
		t.Fatalf("%d points, want %d", len(p), historyPoints)
	}
	per := historyLen / historyPoints
	if want := float64(20) + float64(per-1)/2; p[0] != want {
		t.Errorf("first point %v, want the mean of samples 20..%d = %v", p[0], 20+per-1, want)
	}
	if p[len(p)-1] <= p[0] {
		t.Errorf("points not oldest first: %v", p)
	}
}

func TestDashboardEvents(t *testing.T) {
	clk := testenv.NewClock()
	e := newEnv(t, "sqlite:"+t.TempDir()+"/balancer.db", clk)
	e.addNodes(2)
	d := &dashboard{s: e.srv, nodes: map[string]*nodeHist{}}
	d.observe(d.fleetNow(), true) // the fleet at start: no events
	clk.Advance(time.Minute)      // both miss their reports: offline
	e.report(e.nodes[0], fleet.Load{BBBHealthy: true})
	e.adminState("bbb1", "cordoned")
	d.observe(d.fleetNow(), true)
	var texts []string
	for _, ev := range d.Snapshot(0).Events {
		texts = append(texts, ev.Text)
	}
	got := strings.Join(texts, "\n")
	for _, want := range []string{"bbb1 is now cordoned", "bbb2 went offline"} {
		if !strings.Contains(got, want) {
			t.Errorf("events %q lack %q", texts, want)
		}
	}
	if strings.Contains(got, "joined") || strings.Contains(got, "bbb1 went") {
		t.Errorf("events %q: nodes of the first observation did not join, bbb1 stayed online", texts)
	}
	if n := d.nodes[e.srv.reg.snapshot()[0].ID].ring.n; n != 2 {
		t.Errorf("%d samples, want 2", n)
	}

	// bbb2 deregisters, bbb3 registers: one left, one joined, and the
	// history is bbb3's own.
	var st agentapi.StateResponse
	e.agentCall(agentapi.PathDeregister, agentapi.NodeRequest{Node: "bbb2"}, &st, http.StatusOK)
	e.addNodes(1)
	d.observe(d.fleetNow(), true)
	texts = texts[:0]
	for _, ev := range d.Snapshot(0).Events {
		texts = append(texts, ev.Text)
	}
	got = strings.Join(texts, "\n")
	for _, want := range []string{"bbb2 left the fleet", "bbb3 joined the fleet (enabled, online)"} {
		if !strings.Contains(got, want) {
			t.Errorf("events %q lack %q", texts, want)
		}
	}
	if len(d.nodes) != 2 {
		t.Errorf("the dashboard keeps %d nodes, want bbb1 and bbb3", len(d.nodes))
	}
	for _, n := range e.srv.reg.snapshot() {
		h := d.nodes[n.ID]
		switch {
		case h == nil:
			t.Errorf("%s is not kept", n.Name)
		case n.Name == "bbb3" && h.ring.n != 1:
			t.Errorf("bbb3 has %d samples, want its one", h.ring.n)
		}
	}
}

// TestDashboardSnapshotPicks: of a fleet with more BBB servers than the
// page shows, Snapshot returns every TURN server and the BBB servers the
// page shows (offline or unhealthy first, then cordoned or disabled, then
// the most loaded), in name order, and counts them all; with room for all,
// all.
func TestDashboardSnapshotPicks(t *testing.T) {
	clk := testenv.NewClock()
	e := newEnv(t, "sqlite:"+t.TempDir()+"/balancer.db", clk)
	e.addNodes(8)
	e.agentCall(agentapi.PathRegister, agentapi.RegisterRequest{Node: "turn1", Role: "turn",
		TURNURIs: []string{"turn:turn1.example.com:3478?transport=udp"}, ReportIntervalSeconds: 5}, nil, http.StatusOK)
	e.agentCall(agentapi.PathReport, agentapi.ReportRequest{Node: "turn1", Load: fleet.Load{TURNHealthy: true}}, nil, http.StatusOK)
	for i, nd := range e.nodes {
		l := fleet.Load{BBBHealthy: true, Participants: 10 * i} // bbb8 the most loaded
		if nd.name == "bbb2" {
			l = fleet.Load{BBBError: "BBB not answering: connection refused"}
		}
		e.report(nd, l)
	}
	e.adminState("bbb4", "cordoned")
	d := &dashboard{s: e.srv, nodes: map[string]*nodeHist{}}
	d.observe(d.fleetNow(), true)

	names := func(s web.Snapshot) string {
		var out []string
		for _, n := range s.Nodes {
			out = append(out, n.Name)
		}
		return strings.Join(out, " ")
	}
	s := d.Snapshot(4)
	if got, want := names(s), "bbb2 bbb4 bbb7 bbb8 turn1"; got != want {
		t.Errorf("Snapshot(4) gives %s, want %s (unhealthy, cordoned, the two most loaded, and the TURN server, by name)", got, want)
	}
	if want := (web.Counts{BBB: 8, TURN: 1, Online: 9}); s.Counts != want {
		t.Errorf("counts %+v, want %+v", s.Counts, want)
	}
	for _, n := range s.Nodes {
		if len(n.History) == 0 || n.LastReportAge < 0 {
			t.Errorf("%s: no history or last report: %+v", n.Name, n)
		}
	}
	if got, want := names(d.Snapshot(0)), "bbb1 bbb2 bbb3 bbb4 bbb5 bbb6 bbb7 bbb8 turn1"; got != want {
		t.Errorf("Snapshot(0) gives %s, want every node: %s", got, want)
	}
	if got := names(d.Snapshot(8)); len(strings.Fields(got)) != 9 {
		t.Errorf("Snapshot(8) gives %s, want all 9", got)
	}
	clk.Advance(time.Minute) // all offline: rank alike, then the most loaded
	if s := d.Snapshot(2); names(s) != "bbb7 bbb8 turn1" || s.Counts.Offline != 9 {
		t.Errorf("all offline, Snapshot(2) gives %s (counts %+v), want bbb7 bbb8 turn1, 9 offline", names(s), s.Counts)
	}
}

// TestNodesToList: the dashboard asks only the nodes holding the largest
// meetings of a fleet bigger than the list, and the list it builds from
// them is the one every node's answers would give; a smaller fleet's
// online BBB nodes are all asked, and TURN, offline and URL-less nodes
// never.
func TestNodesToList(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	const shown = 20
	var nodes []nodeView
	meetings := map[string][]int{} // by node: participants of each meeting
	for i := range 100 {
		n := nodeView{Node: records.Node{ID: fmt.Sprint("id", i), Name: fmt.Sprint("bbb", i), URL: "https://bbb.invalid/bigbluebutton/api/", Role: fleet.RoleBBB}, Online: true}
		for range rng.IntN(6) {
			p := rng.IntN(60)
			meetings[n.ID] = append(meetings[n.ID], p)
			n.Load.Meetings++
			n.Load.LargestMeeting = max(n.Load.LargestMeeting, p)
		}
		nodes = append(nodes, n)
	}
	// Never asked: a TURN server, an offline node, a node without a URL;
	// their meetings are not in the list either.
	nodes = append(nodes,
		nodeView{Node: records.Node{ID: "turn", Role: fleet.RoleTURN, Load: fleet.Load{Meetings: 1, LargestMeeting: 999}}, Online: true},
		nodeView{Node: records.Node{ID: "off", URL: "https://off.invalid/", Role: fleet.RoleBBB, Load: fleet.Load{Meetings: 1, LargestMeeting: 999}}},
		nodeView{Node: records.Node{ID: "nourl", Role: fleet.RoleBBB, Load: fleet.Load{Meetings: 1, LargestMeeting: 999}}, Online: true})

	byID := map[string]nodeView{}
	obs := make([]observed, len(nodes))
	for i, n := range nodes {
		byID[n.ID] = n
		obs[i] = newObserved(&n.Node, n.Online, 0, n.Reason, placement.DefaultPolicy())
	}
	largest := func(ids []string) []int {
		var all []int
		for _, id := range ids {
			all = append(all, meetings[id]...)
		}
		slices.SortFunc(all, func(a, b int) int { return cmp.Compare(b, a) })
		return all[:min(len(all), shown)]
	}
	ask, unasked := nodesToList(obs, shown)
	if len(ask) != shown {
		t.Fatalf("asked %d nodes of 100, want %d", len(ask), shown)
	}
	total := unasked
	for _, id := range ask {
		if n := byID[id]; n.Role == fleet.RoleTURN || !n.Online || n.URL == "" {
			t.Errorf("asked %s", n.ID)
		}
		total += len(meetings[id])
	}
	var every []string
	for _, n := range nodes[:100] {
		every = append(every, n.ID)
	}
	if got, want := largest(ask), largest(every); !slices.Equal(got, want) {
		t.Errorf("the largest meetings from the asked nodes %v, from every node %v", got, want)
	}
	all := 0
	for _, ms := range meetings {
		all += len(ms)
	}
	if total != all {
		t.Errorf("listed and unasked meetings make %d, the fleet has %d", total, all)
	}

	ask, unasked = nodesToList(obs[90:], shown) // 10 BBB nodes and the three never asked
	if len(ask) != 10 || unasked != 0 {
		t.Errorf("a small fleet: asked %d of its 10 online BBB nodes, %d meetings unasked", len(ask), unasked)
	}
}

// TestDashboardSamplerStopsWithRun: the dashboard's sampler runs while Run
// does and ends with it, not with the process (a replica's tests start
// hundreds, each sampling its fleet every 10 s until the end).
func TestDashboardSamplerStopsWithRun(t *testing.T) {
	e := newEnv(t, backends[0].dsn(t), testenv.NewClock())
	sampling := func() int { return goroutinesIn("balancer.(*dashboard).sample") }
	if n := sampling(); n != 0 {
		t.Fatalf("%d samplers before Run", n)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.srv.Run(ctx) }()
	testenv.Eventually(t, 10*time.Second, "the sampler", func() bool { return sampling() == 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := sampling(); n != 0 {
		t.Errorf("%d samplers after Run returned", n)
	}
}
