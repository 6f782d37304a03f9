package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/balancer/adminapi"
	"github.com/bbb-agent/bbb-agent/balancer/balancertest"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/bbb/sim"
	"github.com/bbb-agent/bbb-agent/bbb/sim/simtest"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

const (
	lbSecret   = "balancer-e2e-secret-0123456789"
	agentToken = "agent-token-e2e-0123"
	adminToken = "admin-token-e2e-0123"
	sim1Secret = "sim-one-secret-0123456789"
	sim2Secret = "sim-two-secret-0123456789"

	pollInterval = 200 * time.Millisecond
	// settle bounds every wait for the balancer to see a change: a few poll intervals.
	settle = 5 * time.Second
)

func TestMain(m *testing.M) { testenv.Main(m) }

// e2e is a running balancer and the bbb-balancer binary to administer it with.
type e2e struct {
	t   *testing.T
	bin string
	url string
}

// run runs bbb-balancer with exactly the arguments and extra environment given.
func (e *e2e) run(env []string, args ...string) testenv.Result {
	e.t.Helper()
	return testenv.Run(e.t, env, e.bin, args...)
}

// cli runs a command against the balancer as an operator would, with --url and --admin-token.
func (e *e2e) cli(args ...string) testenv.Result {
	e.t.Helper()
	return e.run(nil, append([]string{"--url", e.url, "--admin-token", adminToken}, args...)...)
}

// ok runs a command that must succeed and returns its standard output.
func (e *e2e) ok(args ...string) string {
	e.t.Helper()
	r := e.cli(args...)
	if r.Code != 0 {
		e.t.Fatalf("bbb-balancer %s: %s", strings.Join(args, " "), r)
	}
	return r.Stdout
}

// fails checks that a run failed with a message on stderr saying each of want.
func (e *e2e) fails(r testenv.Result, want ...string) {
	e.t.Helper()
	if r.Code == 0 {
		e.t.Errorf("exit 0, want a failure saying %q\n%s", want, r)
		return
	}
	for _, w := range want {
		if !strings.Contains(r.Stderr, w) {
			e.t.Errorf("stderr does not say %q\n%s", w, r)
		}
	}
}

// status runs status --json.
func (e *e2e) status() []adminapi.Server {
	e.t.Helper()
	return balancertest.Status(e.t, e.bin, e.url, adminToken)
}

// server finds a server in status --json by ID.
func (e *e2e) server(id string) (adminapi.Server, bool) {
	e.t.Helper()
	return balancertest.Find(e.status(), func(s adminapi.Server) bool { return s.ID == id })
}

// simNode is a running bbb-sim and its API clients.
type simNode struct{ *simtest.Node }

func startSim(t *testing.T, bin, name, secret string) simNode {
	t.Helper()
	return simNode{simtest.Start(t, testenv.SimOpts{Name: name, Bin: bin, Secret: secret})}
}

// meetings lists the meeting IDs the simulator runs, sorted.
func (s simNode) meetings(t *testing.T) []string {
	t.Helper()
	ms := s.Meetings(t)
	ids := make([]string, 0, len(ms))
	for _, m := range ms {
		ids = append(ids, m.MeetingID)
	}
	slices.Sort(ids)
	return ids
}

// hostPort is the host:port a simulator listens on, which the balancer
// names it after.
func (s simNode) hostPort(t *testing.T) string {
	t.Helper()
	u, err := url.Parse(s.Ready)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

func startBalancer(t *testing.T, bin, dataDir string) *testenv.Proc {
	t.Helper()
	return testenv.StartBalancer(t, testenv.BalancerOpts{Bin: bin, Secret: lbSecret, AgentToken: agentToken,
		AdminToken: adminToken, DataDir: dataDir, Args: []string{"--poll-interval", pollInterval.String()}})
}

// TestEndToEnd runs bbb-balancer serve and two bbb-sim servers, and
// administers the balancer with the bbb-balancer binary as an operator would.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs binaries")
	}
	bins := testenv.Build(t, testenv.BalancerPkg, testenv.SimPkg)
	balancerBin, simBin := bins[0], bins[1]
	dataDir := t.TempDir()
	bal := startBalancer(t, balancerBin, dataDir)
	sim1 := startSim(t, simBin, "bbb-sim 1", sim1Secret)
	sim2 := startSim(t, simBin, "bbb-sim 2", sim2Secret)
	e := &e2e{t: t, bin: balancerBin, url: bal.Ready}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Both simulators listen on 127.0.0.1: the balancer names an
	// operator-added server after its URL's host and port, so they do not
	// collide.
	name1, name2 := sim1.hostPort(t), sim2.hostPort(t)
	url1, url2 := "http://"+name1+"/bigbluebutton/api/", "http://"+name2+"/bigbluebutton/api/"
	var id1, id2 string

	t.Run("serve without --secret", func(t *testing.T) {
		dir := t.TempDir()
		r := e.run(nil, "serve", "--listen", "127.0.0.1:0", "--agent-token", agentToken, "--admin-token", adminToken, "--data-dir", dir)
		e.fails(r, "no BBB API secret", "--secret")
		if files, _ := os.ReadDir(dir); len(files) > 0 {
			t.Errorf("a refused serve left files in --data-dir: %v", files)
		}
	})

	t.Run("servers add", func(t *testing.T) {
		out := e.ok("servers", "add", url1, sim1Secret)
		id1 = strings.TrimSuffix(out, "\n")
		if !regexp.MustCompile(`^[0-9a-f]{8,}$`).MatchString(id1) {
			t.Fatalf("servers add printed %q, want just the new id", out)
		}
		if again := e.ok("servers", "add", url1, sim1Secret); again != out {
			t.Errorf("adding the same URL again printed %q, want the same id %q", again, out)
		}
		// servers update changes tags and multiplier; adding again keeps them.
		if upd := e.ok("servers", "update", id1, "--tag", "gold", "--load-multiplier", "2"); !strings.Contains(upd, "tags gold, load multiplier 2") {
			t.Errorf("servers update printed %q", upd)
		}
		e.ok("servers", "add", url1, sim1Secret)
		if s, _ := e.server(id1); !slices.Equal(s.Tags, []string{"gold"}) || s.LoadMultiplier != 2 {
			t.Errorf("a second servers add reset tags/multiplier: %v %v", s.Tags, s.LoadMultiplier)
		}
		e.ok("servers", "update", id1, "--tag", "", "--load-multiplier", "1")
		if s, _ := e.server(id1); len(s.Tags) != 0 || s.LoadMultiplier != 1 {
			t.Errorf("servers update --tag '' --load-multiplier 1: %v %v", s.Tags, s.LoadMultiplier)
		}
		// Once through the environment instead of flags.
		r := e.run([]string{"BBB_BALANCER_URL=" + bal.Ready, "BBB_BALANCER_ADMIN_TOKEN=" + adminToken}, "servers", "add", url2, sim2Secret)
		if r.Code != 0 {
			t.Fatalf("servers add with BBB_BALANCER_URL and BBB_BALANCER_ADMIN_TOKEN: %s", r)
		}
		id2 = strings.TrimSuffix(r.Stdout, "\n")
		if id2 == id1 || strings.ContainsAny(id2, " \n") {
			t.Fatalf("second server's id %q (first %q)", id2, id1)
		}
		if n := len(e.status()); n != 2 {
			t.Errorf("status lists %d servers after adding one twice and another once, want 2", n)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("status", func(t *testing.T) {
		testenv.Eventually(t, settle, "both servers polled, online and enabled", func() bool {
			servers := e.status()
			for _, s := range servers {
				if !s.Online || s.Status != fleet.Online || s.State != fleet.Enabled {
					return false
				}
			}
			return len(servers) == 2
		})
		var raw []map[string]any
		if err := json.Unmarshal([]byte(e.ok("status", "--json")), &raw); err != nil {
			t.Fatal(err)
		}
		for _, s := range raw {
			for _, key := range []string{"id", "url", "state", "online", "meetings", "users", "participants"} {
				if _, ok := s[key]; !ok {
					t.Errorf("status --json lacks %q: %v", key, s)
				}
			}
		}
		urls := map[string]string{}
		for _, s := range e.status() {
			urls[s.ID] = s.URL
		}
		if urls[id1] != url1 || urls[id2] != url2 {
			t.Errorf("status --json URLs %v, want %s=%s and %s=%s", urls, id1, url1, id2, url2)
		}
		table := e.ok("status")
		lines := strings.Split(table, "\n")
		if got := strings.Join(strings.Fields(lines[0]), " "); got != "NAME STATE STATUS MEETINGS PARTICIPANTS LARGEST MEETING VIDEOS LOAD BBB VERSION TAGS CPU PERCENT LAST REPORT AGE REASON" {
			t.Errorf("status header %q", lines[0])
		}
		for _, name := range []string{name1, name2} {
			if !strings.Contains(table, "\n"+name+" ") {
				t.Errorf("status does not show %s:\n%s", name, table)
			}
		}
		if strings.Contains(table, "never") || !strings.Contains(table, "online") {
			t.Errorf("status of polled servers:\n%s", table)
		}
	})

	lb, err := bbb.NewClient(bal.Ready, lbSecret, bbb.WithHTTPClient(&http.Client{Timeout: 10 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	create := func(t *testing.T, id string) {
		t.Helper()
		res, err := lb.Create(ctx, bbb.CreateRequest{MeetingID: id, Name: "Meeting " + id})
		if err != nil {
			t.Fatalf("create %s through the balancer: %v", id, err)
		}
		if res.ReturnCode != bbb.ReturnSuccess || res.MeetingID != id {
			t.Fatalf("create %s: %+v", id, res)
		}
	}
	totals := func() (meetings, users int) {
		for _, s := range e.status() {
			meetings += s.Meetings
			users += s.Users
		}
		return meetings, users
	}
	// where tells which simulator runs a meeting.
	where := func(t *testing.T, id string) string {
		t.Helper()
		in1, in2 := slices.Contains(sim1.meetings(t), id), slices.Contains(sim2.meetings(t), id)
		switch {
		case in1 && !in2:
			return id1
		case in2 && !in1:
			return id2
		}
		t.Fatalf("meeting %s runs on sim 1: %v, on sim 2: %v", id, in1, in2)
		return ""
	}

	t.Run("creates through the balancer", func(t *testing.T) {
		created := []string{"e2e-1", "e2e-2", "e2e-3", "e2e-4"}
		for _, id := range created {
			create(t, id)
		}
		on1, on2 := sim1.meetings(t), sim2.meetings(t)
		if got := slices.Sorted(slices.Values(append(slices.Clone(on1), on2...))); !slices.Equal(got, created) {
			t.Fatalf("the simulators run %v and %v, want %v once each", on1, on2, created)
		}
		if len(on1) == 0 || len(on2) == 0 {
			t.Errorf("four creates on two empty servers: %v on one, %v on the other", on1, on2)
		}
		if _, err := sim1.Control.AddAttendees(t.Context(), on1[0], sim.AttendeeSpec{Count: 3}); err != nil {
			t.Fatalf("%s: adding attendees: %v", sim1.Name, err)
		}
		testenv.Eventually(t, settle, "status --json counts 4 meetings and 3 users", func() bool {
			m, u := totals()
			return m == 4 && u == 3
		})
		s1, _ := e.server(id1)
		if s1.Meetings != len(on1) || s1.Users != 3 || s1.LargestMeeting != 3 {
			t.Errorf("sim 1 runs %d meetings with 3 users in one; status says %+v", len(on1), s1)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("servers list", func(t *testing.T) {
		out := e.ok("servers", "list")
		if !strings.HasPrefix(out, "ID ") || !strings.Contains(out, "MULTIPLIER") {
			t.Errorf("servers list header:\n%s", out)
		}
		for _, want := range []string{id1, id2, url1, url2} {
			if !strings.Contains(out, want) {
				t.Errorf("servers list does not show %s:\n%s", want, out)
			}
		}
		if n := strings.Count(out, " poll "); n != 2 {
			t.Errorf("servers list shows %d polled servers, want 2:\n%s", n, out)
		}
	})

	t.Run("cordon, disable, enable", func(t *testing.T) {
		if out := e.ok("servers", "cordon", id1); out != fmt.Sprintf("%s (%s) is now cordoned\n", name1, id1) {
			t.Errorf("servers cordon printed %q", out)
		}
		create(t, "after-cordon")
		if got := where(t, "after-cordon"); got != id2 {
			t.Errorf("a create with sim 1 cordoned went to %s", got)
		}
		// A cordoned server keeps its meetings and stays cordoned while it has some.
		time.Sleep(2 * pollInterval)
		if s, _ := e.server(id1); s.State != fleet.Cordoned || s.Meetings == 0 {
			t.Errorf("cordoned server with meetings: %+v", s)
		}
		if out := e.ok("servers", "enable", id1); !strings.HasSuffix(out, "is now enabled\n") {
			t.Errorf("servers enable printed %q", out)
		}
		if out := e.ok("servers", "disable", name2); out != fmt.Sprintf("%s (%s) is now disabled\n", name2, id2) {
			t.Errorf("servers disable by name printed %q", out)
		}
		create(t, "after-disable")
		if got := where(t, "after-disable"); got != id1 {
			t.Errorf("a create with sim 2 disabled went to %s", got)
		}
		// Its running meetings go on and stay joinable, as servers disable
		// --help says.
		on2 := sim2.meetings(t)
		if len(on2) == 0 {
			t.Fatal("sim 2 runs no meeting to join while it is disabled")
		}
		if info, err := lb.GetMeetingInfo(ctx, on2[0]); err != nil || info.MeetingID != on2[0] {
			t.Errorf("getMeetingInfo of %s on disabled sim 2: %+v, %v", on2[0], info, err)
		}
		participants := func() int {
			for _, m := range sim2.State(t).Meetings {
				if m.MeetingID == on2[0] && !m.Ended {
					return m.ParticipantCount
				}
			}
			return -1
		}
		before := participants()
		if _, err := lb.Join(ctx, bbb.JoinRequest{MeetingID: on2[0], FullName: "Late", Role: "VIEWER"}); err != nil || participants() != before+1 {
			t.Errorf("join %s on disabled sim 2: %v; participants %d, were %d", on2[0], err, participants(), before)
		}
		e.ok("servers", "enable", id2)
		for _, s := range e.status() {
			if s.State != fleet.Enabled {
				t.Errorf("after enable: %+v", s)
			}
		}
	})

	t.Run("panic", func(t *testing.T) {
		before2 := sim2.meetings(t)
		r := e.cli("servers", "panic", id2)
		e.fails(r, "--yes", "nothing changed")
		if !strings.Contains(r.Stdout, "ending its") {
			t.Errorf("panic without --yes does not say what it would do:\n%s", r)
		}
		if s, _ := e.server(id2); s.State != fleet.Enabled || !slices.Equal(sim2.meetings(t), before2) {
			t.Errorf("panic without --yes on a non-terminal changed something: %+v, meetings %v (were %v)", s, sim2.meetings(t), before2)
		}

		running := sim1.meetings(t)
		testenv.Eventually(t, settle, "status --json counts sim 1's meetings", func() bool {
			s, _ := e.server(id1)
			return s.Meetings == len(running)
		})
		out := e.ok("servers", "panic", id1, "--yes")
		announce := fmt.Sprintf("panic: disabling %s and ending its %d meetings (3 participants).", name1, len(running))
		done := fmt.Sprintf("ended %d meetings on %s\n", len(running), name1)
		if i, j := strings.Index(out, announce), strings.Index(out, done); i != 0 || j < len(announce) {
			t.Errorf("servers panic printed:\n%s\nwant first %q, then %q", out, announce, done)
		}
		if left := sim1.meetings(t); len(left) > 0 {
			t.Errorf("sim 1 still runs %v after panic", left)
		}
		ended := 0
		for _, m := range sim1.State(t).Meetings {
			if slices.Contains(running, m.MeetingID) && m.Ended && m.HasBeenForciblyEnded {
				ended++
			}
		}
		if ended != len(running) {
			t.Errorf("/sim/state shows %d of %v ended: %+v", ended, running, sim1.State(t).Meetings)
		}
		if got := sim2.meetings(t); !slices.Equal(got, before2) {
			t.Errorf("panic on sim 1 touched sim 2: %v, were %v", got, before2)
		}
		testenv.Eventually(t, settle, "status --json shows sim 1 disabled and empty", func() bool {
			s, _ := e.server(id1)
			return s.State == fleet.Disabled && s.Meetings == 0 && s.Users == 0
		})
	})

	t.Run("remove", func(t *testing.T) {
		// id2 still runs meetings: remove says what happens and asks.
		if s, _ := e.server(id2); s.Meetings > 0 {
			r := e.cli("servers", "remove", id2)
			e.fails(r, "--yes", "nothing changed")
			if !strings.Contains(r.Stdout, "does not end them") || !strings.Contains(r.Stdout, "notFound") {
				t.Errorf("remove of a server with meetings does not say what happens to them:\n%s", r)
			}
			if _, ok := e.server(id2); !ok {
				t.Fatalf("remove without --yes removed the server")
			}
		} else {
			t.Errorf("sim 2 has no meetings left to test remove's confirmation with")
		}
		if out := e.ok("servers", "remove", id2, "--yes"); !strings.HasSuffix(out, fmt.Sprintf("removed %s (%s)\n", name2, id2)) {
			t.Errorf("servers remove printed %q", out)
		}
		if out := e.ok("servers", "list"); strings.Contains(out, id2) {
			t.Errorf("servers list still shows %s:\n%s", id2, out)
		}
		e.fails(e.cli("servers", "remove", id2), id2, "servers list")
	})

	t.Run("errors", func(t *testing.T) {
		e.fails(e.run(nil, "--url", bal.Ready, "--admin-token", "not-the-token", "status"), "wrong admin token")
		e.fails(e.run(nil, "--url", bal.Ready, "servers", "list"), "no admin token", "--admin-token", "BBB_BALANCER_ADMIN_TOKEN")
		e.fails(e.cli("servers", "enable", "no-such-server"), `"no-such-server"`)
		e.fails(e.cli("servers", "panic", "no-such-server", "--yes"), `"no-such-server"`)
		e.fails(e.cli("servers", "cordon"), "needs exactly one server ID", "usage: bbb-balancer servers cordon")
		e.fails(e.cli("servers", "add", url1), "needs API_URL and SECRET")
		e.fails(e.cli("servers", "add", "bbb1.example.com", sim1Secret), "want http(s)://")
		e.fails(e.run(nil, "--url", "bbb1.example.com", "--admin-token", adminToken, "status"), "want http(s)://host:port")
		for _, r := range []testenv.Result{e.cli("status"), e.cli("servers", "list"), e.cli("status", "--json")} {
			if strings.Contains(r.Stdout+r.Stderr, sim1Secret) || strings.Contains(r.Stdout+r.Stderr, sim2Secret) {
				t.Errorf("output shows a server's secret:\n%s", r)
			}
		}
	})

	t.Run("SIGTERM and restart on the same data", func(t *testing.T) {
		if code := bal.Stop(t, 5*time.Second); code != 0 {
			t.Errorf("serve exited %d after SIGTERM\n%s", code, bal.Output())
		}
		for _, s := range []string{lbSecret, sim1Secret, sim2Secret, adminToken, agentToken} {
			if strings.Contains(bal.Output(), s) {
				t.Errorf("the balancer's log shows a secret or token:\n%s", bal.Output())
			}
		}
		e.fails(e.cli("status"), "cannot reach the balancer at "+bal.Ready, "--url")

		bal = startBalancer(t, balancerBin, dataDir)
		e.url = bal.Ready
		servers := e.status()
		if len(servers) != 1 || servers[0].ID != id1 || servers[0].URL != url1 || servers[0].State != fleet.Disabled {
			t.Fatalf("after a restart on the same --data-dir: %+v, want only %s, disabled", servers, id1)
		}
		testenv.Eventually(t, settle, "the restarted balancer polls sim 1", func() bool {
			s, _ := e.server(id1)
			return s.Online
		})
	})
}
