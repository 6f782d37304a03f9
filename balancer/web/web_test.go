package web

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/internal/testenv"
	"golang.org/x/crypto/bcrypt"
)

// fakeFleet is a fleet of n nodes and m meetings.
type fakeFleet struct{ snap Snapshot }

func newFakeFleet(nodes, meetings int, at time.Time) *fakeFleet {
	f := &fakeFleet{snap: Snapshot{At: at, MeetingsAt: at, MeetingsTotal: meetings}}
	for i := range nodes {
		hist := make([]float64, historyPointsForTest)
		for j := range hist {
			hist[j] = float64((i*7 + j*13) % 100)
		}
		f.snap.Nodes = append(f.snap.Nodes, Node{ID: fmt.Sprintf("%032x", i), Name: fmt.Sprintf("bbb%04d.example.com", i), Role: "bbb",
			State: "enabled", Liveness: "online", Meetings: 10, Participants: 230, Video: 40, CPUPercent: 41.5, Load: 312.5,
			BBBVersion: "3.0.4", AgentVersion: "1.2.0", LastReportAge: 2 * time.Second, History: hist})
	}
	for i := range meetings {
		f.snap.Meetings = append(f.snap.Meetings, Meeting{ID: fmt.Sprintf("meeting-%05d", i), Name: fmt.Sprintf("Class %d", i),
			Node: fmt.Sprintf("bbb%04d.example.com", i%max(nodes, 1)), Participants: 100 - i%100, Since: at.Add(-time.Duration(i) * time.Second)})
	}
	for i := range 50 {
		f.snap.Events = append(f.snap.Events, Event{At: at, Text: fmt.Sprintf("bbb%04d went offline", i)})
	}
	return f
}

const historyPointsForTest = 37

// Snapshot gives every node: the page picks the ones it shows.
func (f *fakeFleet) Snapshot(int) Snapshot {
	s := f.snap
	s.Counts = CountNodes(s.Nodes)
	return s
}

func (f *fakeFleet) SetState(context.Context, string, string, string) error { return nil }
func (f *fakeFleet) CreateRoom(context.Context, string, RoomRequest, string) (RoomLinks, error) {
	return RoomLinks{}, nil
}

type noRooms struct{}

func (noRooms) Room(context.Context, string) (string, bool, error) { return "", false, ErrNoRoom }
func (noRooms) Open(context.Context, string, string) (string, error) {
	return "", ErrNoRoom
}

func TestSessionCookie(t *testing.T) {
	clk := testenv.NewClock()
	a := newAuthenticator("the-admin-token", nil, clk.Now)
	s, ok := a.login("", "the-admin-token")
	if !ok || s.Role != RoleAdmin {
		t.Fatal("the admin token does not log in")
	}
	if _, ok := a.login("", "the-admin-toke"); ok {
		t.Fatal("a wrong token logs in")
	}
	cookie := a.encode(s)
	req := func(v string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/dashboard/", nil)
		r.AddCookie(&http.Cookie{Name: sessionCookie, Value: v})
		return r
	}
	if _, _, ok := a.session(req(cookie)); !ok {
		t.Fatal("a fresh session is refused")
	}
	payload, mac, _ := strings.Cut(cookie, ".")
	forged := strings.Replace(payload, "a", "b", 1) + "." + mac
	if _, _, ok := a.session(req(forged)); ok {
		t.Fatal("a tampered session is accepted")
	}
	if other := newAuthenticator("another-token", nil, clk.Now); func() bool { _, _, ok := other.session(req(cookie)); return ok }() {
		t.Fatal("a session survives a change of admin token")
	}
	if !a.checkCSRF(cookie, a.csrf(cookie)) || a.checkCSRF(cookie, "") || a.checkCSRF(cookie, a.csrf(cookie+"x")) {
		t.Fatal("CSRF token check")
	}
	clk.Advance(sessionTTL)
	if _, _, ok := a.session(req(cookie)); ok {
		t.Fatal("an expired session is accepted")
	}
}

func TestCookieFlags(t *testing.T) {
	a := newAuthenticator("tok", nil, time.Now)
	for _, tls := range []bool{false, true} {
		r := httptest.NewRequest(http.MethodPost, "/dashboard/login", nil)
		if tls {
			r = httptest.NewRequest(http.MethodPost, "https://lb.example.com/dashboard/login", nil)
		}
		w := httptest.NewRecorder()
		a.setCookie(w, r, "v", 60)
		c := w.Result().Cookies()[0]
		if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure != tls {
			t.Errorf("TLS %t: cookie %+v: want HttpOnly, SameSite=Strict, Secure only over TLS", tls, c)
		}
	}
}

func TestReadUsers(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	dir := t.TempDir()
	for _, tc := range []struct{ name, text, err string }{
		{"ok", "# comment\n\nana:" + string(hash) + ":admin\nbob:" + string(hash) + ":readonly\n", ""},
		{"plain", "ana:secret:admin\n", "not bcrypt"},
		{"role", "ana:" + string(hash) + ":root\n", `role "root"`},
		{"fields", "ana:" + string(hash) + "\n", "want name:bcrypt-hash:role"},
	} {
		p := filepath.Join(dir, tc.name)
		os.WriteFile(p, []byte(tc.text), 0o600)
		users, err := ReadUsers(p)
		if tc.err == "" {
			if err != nil || len(users) != 2 || users["bob"].Role != RoleReadOnly {
				t.Errorf("%s: %v %v", tc.name, users, err)
			}
			a := newAuthenticator("tok", users, time.Now)
			if s, ok := a.login("bob", "pw"); !ok || s.Role != RoleReadOnly {
				t.Errorf("bob cannot log in")
			}
			if _, ok := a.login("bob", "wrong"); ok {
				t.Errorf("bob logs in with a wrong password")
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.err)
		}
	}
}

func TestLimiter(t *testing.T) {
	clk := testenv.NewClock()
	l := newLimiter(2, time.Minute, clk.Now)
	if !l.allow("a") || !l.allow("a") || l.allow("a") || !l.allow("b") {
		t.Fatal("two per minute per address")
	}
	clk.Advance(time.Minute)
	if !l.allow("a") {
		t.Fatal("a new window allows again")
	}
}

func TestPageLimitsMeetings(t *testing.T) {
	clk := testenv.NewClock()
	h := New(Options{Fleet: newFakeFleet(3, 500, clk.Now()), Rooms: noRooms{}, AdminToken: "tok", Dashboard: true, Clock: clk.Now})
	s, _ := h.auth.login("", "tok")
	r := httptest.NewRequest(http.MethodGet, "/dashboard/", nil)
	r.AddCookie(&http.Cookie{Name: sessionCookie, Value: h.auth.encode(s)})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	body := w.Body.String()
	if w.Code != http.StatusOK || strings.Count(body, "data-meeting=") != 200 || !strings.Contains(body, "and 300 smaller meetings") {
		t.Fatalf("HTTP %d, %d meetings shown", w.Code, strings.Count(body, "data-meeting="))
	}
	if !strings.Contains(w.Header().Get("Content-Security-Policy"), "default-src 'self'") {
		t.Fatal("no content security policy")
	}
}

// TestPageLimitsNodes: a fleet bigger than MaxNodesShown shows every node
// that needs attention, then the most loaded, in name order, and says how
// many it leaves out; a smaller fleet shows every node.
func TestPageLimitsNodes(t *testing.T) {
	clk := testenv.NewClock()
	f := newFakeFleet(20, 0, clk.Now())
	for i := range f.snap.Nodes {
		f.snap.Nodes[i].Load = float64(i) // bbb0019 is the most loaded
	}
	f.snap.Nodes[2].Liveness = "offline"
	f.snap.Nodes[5].Reason = "checksumError: wrong secret"
	f.snap.Nodes[7].State = "cordoned"
	f.snap.Nodes[9].State = "disabled"
	page := func(maxShown int) string {
		h := New(Options{Fleet: f, Rooms: noRooms{}, AdminToken: "tok", Dashboard: true, Clock: clk.Now, MaxNodesShown: maxShown})
		s, _ := h.auth.login("", "tok")
		r := httptest.NewRequest(http.MethodGet, "/dashboard/live", nil)
		r.AddCookie(&http.Cookie{Name: sessionCookie, Value: h.auth.encode(s)})
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			t.Fatalf("HTTP %d", w.Code)
		}
		return w.Body.String()
	}
	shown := func(body string) []string {
		var names []string
		for _, part := range strings.Split(body, `data-node="`)[1:] {
			names = append(names, strings.TrimSuffix(strings.TrimPrefix(part[:strings.IndexByte(part, '"')], "bbb00"), ".example.com"))
		}
		return names
	}

	body := page(6)
	if got, want := strings.Join(shown(body), " "), "02 05 07 09 18 19"; got != want {
		t.Errorf("shown %s, want %s (the four needing attention, then the two most loaded, by name)", got, want)
	}
	if !strings.Contains(body, "20 BBB servers") || !strings.Contains(body, "Showing 6 of 20") || !strings.Contains(body, "14 more are not shown") {
		t.Errorf("the page does not say what it leaves out:\n%s", body)
	}
	body = page(0) // the default, 1,000
	if got := len(shown(body)); got != 20 || strings.Contains(body, "more-nodes") {
		t.Errorf("a 20-node fleet shows %d nodes (or says some are left out)", got)
	}
}

// BenchmarkDashboard renders the fleet page for 1,000 and 10,000 nodes
// (1,000 shown) and 10,000 meetings (the largest 200 shown) and reports its
// size.
func BenchmarkDashboard(b *testing.B) {
	for _, nodes := range []int{1000, 10000} {
		b.Run(fmt.Sprint("nodes=", nodes), func(b *testing.B) { benchmarkDashboard(b, nodes) })
	}
}

func benchmarkDashboard(b *testing.B, nodes int) {
	clk := testenv.NewClock()
	h := New(Options{Fleet: newFakeFleet(nodes, 10000, clk.Now()), Rooms: noRooms{}, AdminToken: "tok", Dashboard: true, Clock: clk.Now})
	s, _ := h.auth.login("", "tok")
	cookie := h.auth.encode(s)
	for _, path := range []string{"/dashboard/", "/dashboard/live"} {
		b.Run(strings.Trim(path, "/"), func(b *testing.B) {
			h.liveTTL = 0 // every request renders: the cost of one viewer's poll
			var size, gzSize int
			for b.Loop() {
				r := httptest.NewRequest(http.MethodGet, path, nil)
				r.AddCookie(&http.Cookie{Name: sessionCookie, Value: cookie})
				r.Header.Set("Accept-Encoding", "gzip")
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatalf("HTTP %d", w.Code)
				}
				size = w.Body.Len()
				if w.Header().Get("Content-Encoding") == "gzip" {
					gzSize = size
					zr, err := gzip.NewReader(w.Body)
					if err != nil {
						b.Fatal(err)
					}
					plain, _ := io.ReadAll(zr)
					size = len(plain)
				}
			}
			b.ReportMetric(float64(size), "page-bytes")
			if gzSize > 0 {
				b.ReportMetric(float64(gzSize), "gzip-bytes")
			}
		})
	}
}

// TestAfterRender: the live part's render calls AfterRender, once per
// render; a poll answered from the kept render does not.
func TestAfterRender(t *testing.T) {
	clk := testenv.NewClock()
	calls := 0
	h := New(Options{Fleet: newFakeFleet(30, 5, clk.Now()), Rooms: noRooms{}, AdminToken: "tok", Dashboard: true, Clock: clk.Now,
		AfterRender: func() { calls++ }})
	h.liveTTL = time.Hour
	s, _ := h.auth.login("", "tok")
	poll := func() string {
		t.Helper()
		r := httptest.NewRequest(http.MethodGet, "/dashboard/live", nil)
		r.AddCookie(&http.Cookie{Name: sessionCookie, Value: h.auth.encode(s)})
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "bbb0029.example.com") {
			t.Fatalf("HTTP %d: %.300s", w.Code, w.Body.String())
		}
		return w.Body.String()
	}
	first := poll()
	if poll() != first || calls != 1 {
		t.Fatalf("two polls within the kept render's time: %d calls (or different pages), want 1", calls)
	}
	h.forgetLive()
	if again := poll(); calls != 2 || again != first {
		t.Fatalf("after forgetLive: %d calls, want 2 (same fleet, same page: %v)", calls, again == first)
	}
}
