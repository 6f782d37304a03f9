package balancer

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/agentapi"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/bbb/sim"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// simNode starts a simulated BBB server that is not registered.
func (e *env) simNode(name, secret string) *node {
	e.t.Helper()
	nd := &node{name: name, secret: secret, sim: sim.New(sim.Config{Secret: secret, Seed: 7})}
	nd.http = httptest.NewServer(nd.sim)
	e.t.Cleanup(nd.http.Close)
	return nd
}

// registerAs registers nd with bearer and returns the status and answer.
func (e *env) registerAs(bearer string, nd *node, mod func(*agentapi.RegisterRequest)) (int, string) {
	e.t.Helper()
	req := agentapi.RegisterRequest{Node: nd.name, URL: nd.http.URL, Secret: nd.secret, Role: "bbb", ReportIntervalSeconds: 5, NodeCredential: true}
	if mod != nil {
		mod(&req)
	}
	code, body := e.do(http.MethodPost, agentapi.PathRegister, bearer, req)
	return code, string(body)
}

func credentialOf(t *testing.T, body string) string {
	t.Helper()
	_, rest, ok := strings.Cut(body, `"credential":"`)
	cred, _, _ := strings.Cut(rest, `"`)
	if !ok || cred == "" {
		t.Fatalf("no credential in %s", body)
	}
	return cred
}

func TestNodeIdentity(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn, testenv.NewClock())
		a := e.simNode("bbb-a", "secret-a-0123456789")
		code, body := e.registerAs(agentToken, a, nil)
		if code != http.StatusOK {
			t.Fatalf("register: %d %s", code, body)
		}
		cred := credentialOf(t, body)
		stored, err := e.store.NodeByName(t.Context(), "bbb-a")
		if err != nil {
			t.Fatal(err)
		}
		if stored.CredentialHash != credentialHash(cred) || strings.Contains(stored.CredentialHash, cred) {
			t.Errorf("stored %q, want only the hash of the credential", stored.CredentialHash)
		}
		report := func(bearer, name string) int {
			code, _ := e.do(http.MethodPost, agentapi.PathReport, bearer, agentapi.ReportRequest{Node: name, Load: fleet.Load{BBBHealthy: true}})
			return code
		}
		if got := report(cred, "bbb-a"); got != http.StatusOK {
			t.Errorf("report with its credential: %d", got)
		}
		if got := report(agentToken, "bbb-a"); got != http.StatusForbidden {
			t.Errorf("report with the agent token: %d, want 403", got)
		}
		// A node speaks only for itself.
		b := e.simNode("bbb-b", "secret-b-0123456789")
		code, body = e.registerAs(agentToken, b, nil)
		credB := credentialOf(t, body)
		if got := report(credB, "bbb-a"); got != http.StatusForbidden {
			t.Errorf("bbb-b reporting for bbb-a: %d, want 403", got)
		}
		for _, p := range []string{agentapi.PathCordon, agentapi.PathEnable, agentapi.PathDeregister, agentapi.PathRotate} {
			if code, _ := e.do(http.MethodPost, p, credB, agentapi.NodeRequest{Node: "bbb-a"}); code != http.StatusForbidden {
				t.Errorf("bbb-b %s for bbb-a: %d, want 403", p, code)
			}
		}
		if code, _ := e.do(http.MethodPost, agentapi.PathCordon, cred, agentapi.NodeRequest{Node: "bbb-a"}); code != http.StatusOK {
			t.Errorf("bbb-a cordons itself: %d", code)
		}
		if code, _ := e.do(http.MethodPost, agentapi.PathUndrain, cred, agentapi.NodeRequest{Node: "bbb-a"}); code != http.StatusOK {
			t.Errorf("the old name undrain still works: %d", code)
		}
		// Rotation: the new credential works, the old one no longer.
		code, body = e.do2(agentapi.PathRotate, cred, agentapi.NodeRequest{Node: "bbb-a"})
		if code != http.StatusOK {
			t.Fatalf("rotate: %d %s", code, body)
		}
		rotated := credentialOf(t, body)
		if report(cred, "bbb-a") != http.StatusUnauthorized || report(rotated, "bbb-a") != http.StatusOK {
			t.Error("after a rotation the old credential must fail and the new one work")
		}
		// A second replica knows the credential from the store.
		r2 := newEnv(t, dsn, e.clock)
		if code, _ := r2.do(http.MethodPost, agentapi.PathReport, rotated, agentapi.ReportRequest{Node: "bbb-a"}); code != http.StatusOK {
			t.Errorf("report through another replica: %d", code)
		}
	})
}

func (e *env) do2(path, bearer string, in any) (int, string) {
	code, body := e.do(http.MethodPost, path, bearer, in)
	return code, string(body)
}

func TestTakeoverRules(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn, testenv.NewClock())
		old := e.simNode("bbb-x", "secret-x-0123456789")
		code, body := e.registerAs(agentToken, old, nil)
		cred := credentialOf(t, body)
		e.do(http.MethodPost, agentapi.PathReport, cred, agentapi.ReportRequest{Node: "bbb-x"})

		// The replacement server proves the same secret, but the old node is
		// online: refused, naming the holder.
		repl := e.simNode("bbb-x", "secret-x-0123456789")
		code, body = e.registerAs(agentToken, repl, nil)
		if code != http.StatusConflict || !strings.Contains(body, "online") || !strings.Contains(body, agentapi.CodeNodeConflict) {
			t.Fatalf("newcomer while the node is online: %d %s", code, body)
		}
		// Offline for less than the bound: still refused, and says how long.
		e.clock.Advance(20 * time.Minute)
		code, body = e.registerAs(agentToken, repl, nil)
		if code != http.StatusConflict || !strings.Contains(body, "offline for 20m") {
			t.Fatalf("newcomer, node offline 20m: %d %s", code, body)
		}
		// Past the bound but another secret: refused.
		other := e.simNode("bbb-x", "secret-other-0123456789")
		e.clock.Advance(DefaultTakeoverAfter)
		if code, body := e.registerAs(agentToken, other, nil); code != http.StatusConflict {
			t.Fatalf("newcomer with another secret past the bound: %d %s", code, body)
		}
		// Past the bound with the same secret: taken over, new credential.
		code, body = e.registerAs(agentToken, repl, nil)
		if code != http.StatusOK {
			t.Fatalf("newcomer with the same secret past the bound: %d %s", code, body)
		}
		credentialOf(t, body)
		if code, _ := e.do(http.MethodPost, agentapi.PathReport, cred, agentapi.ReportRequest{Node: "bbb-x"}); code != http.StatusUnauthorized {
			t.Errorf("the old node's credential after the takeover: %d, want 401", code)
		}

		// A clone holding the node's own credential cannot move it while it runs.
		c := e.simNode("bbb-c", "secret-c-0123456789")
		_, body = e.registerAs(agentToken, c, nil)
		credC := credentialOf(t, body)
		e.do(http.MethodPost, agentapi.PathReport, credC, agentapi.ReportRequest{Node: "bbb-c"})
		clone := e.simNode("bbb-c", "secret-c-0123456789")
		if code, body := e.registerAs(credC, clone, nil); code != http.StatusConflict || !strings.Contains(body, "cloned") {
			t.Errorf("clone with the node's credential while it is online: %d %s", code, body)
		}
		// The URL of another node, with its secret, under a new name.
		if code, body := e.registerAs(agentToken, &node{name: "bbb-d", secret: c.secret, http: c.http}, nil); code != http.StatusConflict || !strings.Contains(body, `node \"bbb-c\"`) {
			t.Errorf("new name with the URL of bbb-c: %d %s", code, body)
		}
		// A URL with userinfo is refused.
		if code, body := e.registerAs(agentToken, c, func(r *agentapi.RegisterRequest) {
			r.Node, r.URL = "bbb-u", strings.Replace(c.http.URL, "http://", "http://user:pw@", 1)
		}); code != http.StatusBadRequest || !strings.Contains(body, `"field":"url"`) {
			t.Errorf("URL with userinfo: %d %s", code, body)
		}
	})
}

func TestLegacyAgents(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn, testenv.NewClock())
		// An agent from before node credentials: served with the agent token.
		nd := e.simNode("bbb-old", "secret-old-0123456789")
		legacy := func(r *agentapi.RegisterRequest) { r.NodeCredential = false }
		if code, body := e.registerAs(agentToken, nd, legacy); code != http.StatusOK || strings.Contains(body, "credential") {
			t.Fatalf("legacy register: %d %s", code, body)
		}
		e.report(nd, fleet.Load{BBBHealthy: true})
		// Its registration from another URL is a takeover attempt: refused.
		evil := e.simNode("bbb-old", "secret-evil-0123456789")
		if code, body := e.registerAs(agentToken, evil, legacy); code != http.StatusConflict {
			t.Errorf("legacy node from another URL: %d %s", code, body)
		}
		// Upgraded, the same agent gets its credential; the token then stops.
		code, body := e.registerAs(agentToken, nd, nil)
		if code != http.StatusOK {
			t.Fatalf("upgraded agent: %d %s", code, body)
		}
		cred := credentialOf(t, body)
		if code, _ := e.do(http.MethodPost, agentapi.PathReport, agentToken, agentapi.ReportRequest{Node: "bbb-old"}); code != http.StatusForbidden {
			t.Errorf("agent token after the migration: %d, want 403", code)
		}
		if code, _ := e.do(http.MethodPost, agentapi.PathReport, cred, agentapi.ReportRequest{Node: "bbb-old"}); code != http.StatusOK {
			t.Errorf("credential after the migration: %d", code)
		}
	})
}

func TestNodeChecksumErrorIsNotTheFrontEnds(t *testing.T) {
	logs := &strings.Builder{}
	e := newEnv(t, "sqlite:"+t.TempDir()+"/b.db", testenv.NewClock())
	e.srv.log = slog.New(slog.NewTextHandler(logs, nil))
	e.addNodes(2)
	// bbb1's secret changes behind the balancer's back; it is the least loaded.
	e.nodes[0].sim = sim.New(sim.Config{Secret: "a-new-secret-0123456789"})
	e.nodes[0].http.Config.Handler = e.nodes[0].sim
	e.report(e.nodes[1], fleet.Load{BBBHealthy: true, Participants: 50, Meetings: 2})
	for i := range 4 {
		if _, err := e.client.Create(ctxT(t), bbb.CreateRequest{MeetingID: fmt.Sprintf("m%d", i), Name: "M"}); err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
		if on := e.nodeOf(fmt.Sprintf("m%d", i)); len(on) != 1 || on[0] != "bbb2" {
			t.Errorf("m%d runs on %v, want bbb2", i, on)
		}
	}
	if n := strings.Count(logs.String(), "refused the balancer's checksum"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, logs)
	}
	// Registering again (with the right secret) makes it eligible again.
	e.nodes[0].secret = "a-new-secret-0123456789"
	e.register(e.nodes[0])
	e.report(e.nodes[1], fleet.Load{BBBHealthy: true, Participants: 500, Meetings: 20})
	if _, err := e.client.Create(ctxT(t), bbb.CreateRequest{MeetingID: "after", Name: "M"}); err != nil {
		t.Fatal(err)
	}
	if on := e.nodeOf("after"); len(on) != 1 || on[0] != "bbb1" {
		t.Errorf("after re-registering, the meeting runs on %v, want bbb1", on)
	}
}

func TestAPIHardening(t *testing.T) {
	e := newEnv(t, "sqlite:"+t.TempDir()+"/b.db", testenv.NewClock())
	e.addNodes(1)
	get := func(target string) (int, string) {
		resp, err := noFollow.Get(e.http.URL + target)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	many := strings.Repeat("a=1&", 10_001)
	for _, target := range []string{
		"/bigbluebutton/api/create/../getMeetings?" + bbb.SignQuery(bbb.SHA256, "getMeetings", "", lbSecret),
		"/bigbluebutton/api//getMeetings",
		"/bigbluebutton/api/getMeetings?" + strings.Repeat("x", maxQueryBytes+1),
		"/bigbluebutton/api/getMeetings?" + many[:len(many)-1],
	} {
		code, body := get(target)
		if code != http.StatusOK || !strings.Contains(body, "<returncode>FAILED</returncode>") {
			t.Errorf("%.60s: HTTP %d %.200s, want a BBB XML error", target, code, body)
		}
	}
	// The over-ceiling warning is said once a minute, not per create.
	logs := &strings.Builder{}
	e.srv.log = slog.New(slog.NewTextHandler(logs, nil))
	e.report(e.nodes[0], fleet.Load{BBBHealthy: true, CPUPercent: 99})
	for i := range 5 {
		if _, err := e.client.Create(ctxT(t), bbb.CreateRequest{MeetingID: fmt.Sprintf("hot%d", i), Name: "M"}); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(logs.String(), "over the CPU ceiling"); n != 1 {
		t.Errorf("the over-ceiling warning was logged %d times for 5 creates, want 1", n)
	}
}

func TestHealthzFailsWhenTheDatabaseTakesNoWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.db")
	e := newEnv(t, "sqlite:"+path, testenv.NewClock())
	if code, _ := e.do(http.MethodGet, "/healthz", "", nil); code != http.StatusOK {
		t.Fatalf("healthz: %d", code)
	}
	// Another process holds the write lock: reads go on, writes cannot.
	lockSQLite(t, path)
	if code, body := e.do(http.MethodGet, "/healthz", "", nil); code != http.StatusServiceUnavailable {
		t.Errorf("healthz while the database takes no writes: %d %s, want 503", code, body)
	}
}

// A client trickling a POST body is cut off by the body read deadline and
// gets a BBB error, instead of holding the connection.
func TestSlowBodyIsCutOff(t *testing.T) {
	e := newEnv(t, "sqlite:"+t.TempDir()+"/b.db", testenv.NewClock())
	e.addNodes(1)
	e.srv.cfg.BodyReadTimeout = 100 * time.Millisecond
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() })
	go func() { _, _ = pw.Write([]byte("<modules")) }() // and then nothing more
	target := e.http.URL + "/bigbluebutton/api/insertDocument?" + bbb.SignQuery(bbb.SHA256, "insertDocument", "meetingID=m", lbSecret)
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodPost, target, pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/xml")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("the balancer did not answer a stalled body: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), "<returncode>FAILED</returncode>") {
		t.Errorf("a stalled body: HTTP %d %s, want a BBB error", resp.StatusCode, body)
	}
}
