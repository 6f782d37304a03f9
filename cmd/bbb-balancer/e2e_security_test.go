package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// The trust scenarios of issue 10, against real processes: what a holder of
// the fleet's agent token, a cloned node or a lying node can do to other
// nodes' meetings. Each failed on the balancer before node credentials.

var agentStarting = regexp.MustCompile(`msg="bbb-agent starting" node=(\S+)`)

// secFleet is a balancer with the binaries to add simulators and agents.
type secFleet struct {
	t        *testing.T
	e        *e2e
	bal      *testenv.Proc
	agentBin string
	simBin   string
	lb       *bbb.Client
}

func newSecFleet(t *testing.T, withAgent bool) *secFleet {
	t.Helper()
	pkgs := []string{"github.com/bbb-agent/bbb-agent/cmd/bbb-balancer", "github.com/bbb-agent/bbb-agent/cmd/bbb-sim"}
	if withAgent {
		pkgs = append(pkgs, "github.com/bbb-agent/bbb-agent/cmd/bbb-agent")
	}
	bins := testenv.Build(t, pkgs...)
	bal := startBalancer(t, bins[0], t.TempDir())
	lb, err := bbb.NewClient(bal.Ready, lbSecret, bbb.WithHTTPClient(&http.Client{Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}))
	if err != nil {
		t.Fatal(err)
	}
	f := &secFleet{t: t, e: &e2e{t: t, bin: bins[0], url: bal.Ready}, bal: bal, simBin: bins[1], lb: lb}
	if withAgent {
		f.agentBin = bins[2]
	}
	return f
}

// startSimAt starts a simulator on a given port (to restart it with another secret).
func (f *secFleet) startSimAt(name, secret string, port int) *testenv.Proc {
	f.t.Helper()
	return testenv.StartSim(f.t, testenv.SimOpts{Name: name, Bin: f.simBin, Listen: "127.0.0.1:" + strconv.Itoa(port), Secret: secret})
}

// startAgent runs `bbb-agent run` for a simulator under a node name.
func (f *secFleet) startAgent(node, simURL, secret string, extra ...string) *testenv.Proc {
	f.t.Helper()
	dir, err := os.MkdirTemp("", "bbbsec")
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { os.RemoveAll(dir) })
	args := append([]string{"run", "--admin-socket", filepath.Join(dir, "a.sock"), "--state-dir", filepath.Join(dir, "state"),
		"--balancer-url", f.bal.Ready, "--agent-token", agentToken, "--bbb-url", simURL, "--bbb-secret", secret,
		"--node-name", node, "--report-interval", "200ms", "--logind=false", "--recordings-dir", f.t.TempDir()}, extra...)
	return testenv.StartAgent(f.t, testenv.AgentOpts{Name: "bbb-agent " + node, Bin: f.agentBin, Args: args})
}

// agentCall POSTs a JSON body to the agent API as any holder of a
// credential could, and returns the status and the decoded answer.
func (f *secFleet) agentCall(bearer, path string, body any) (int, map[string]any) {
	f.t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		f.t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, f.bal.Ready+path, bytes.NewReader(b))
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+bearer)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := map[string]any{}
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

// register registers a node as an agent with node credentials does and
// returns its credential.
func (f *secFleet) register(node, url, secret string) string {
	f.t.Helper()
	code, out := f.agentCall(agentToken, "/agent/v1/register", map[string]any{"node": node, "url": url, "secret": secret, "role": "bbb",
		"report_interval_seconds": 60, "node_credential": true})
	if code != http.StatusOK {
		f.t.Fatalf("register %s: HTTP %d %v", node, code, out)
	}
	cred, _ := out["credential"].(string)
	if cred == "" {
		f.t.Errorf("register %s: the answer carries no node credential: %v", node, out)
		return agentToken
	}
	return cred
}

func (f *secFleet) report(cred, node string, load map[string]any) (int, map[string]any) {
	f.t.Helper()
	return f.agentCall(cred, "/agent/v1/report", map[string]any{"node": node, "load": load})
}

// joinTarget is where a join through the balancer sends a user.
func (f *secFleet) joinTarget(meetingID string) string {
	f.t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).
		Get(f.lb.JoinURL(bbb.JoinRequest{MeetingID: meetingID, FullName: "User", Role: bbb.RoleViewer}))
	if err != nil {
		f.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		f.t.Fatalf("join %s: HTTP %d, want 302", meetingID, resp.StatusCode)
	}
	return resp.Header.Get("Location")
}

func (f *secFleet) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	f.t.Cleanup(cancel)
	return ctx
}

// Scenario 1: a cloned image (same agent.yaml, same node name) on a second
// server must not move the node and its running meeting.
func TestSecurityClonedImage(t *testing.T) {
	f := newSecFleet(t, true)
	const secret = "cloned-image-secret-0123456789"
	simA := f.startSimAt("bbb-sim A", secret, testenv.FreePort(t))
	simB := f.startSimAt("bbb-sim B", secret, testenv.FreePort(t))
	f.startAgent("bbb-clone", simA.Ready, secret)
	testenv.Eventually(t, 10*time.Second, "the node online at A", func() bool {
		for _, s := range f.e.status() {
			if s.Name == "bbb-clone" && s.Online {
				return true
			}
		}
		return false
	})
	if _, err := f.lb.Create(f.ctx(), bbb.CreateRequest{MeetingID: "standup", Name: "Standup"}); err != nil {
		t.Fatal(err)
	}
	if to := f.joinTarget("standup"); !strings.HasPrefix(to, simA.Ready+"/") {
		t.Fatalf("join goes to %s, want server A %s", to, simA.Ready)
	}

	clone := f.startAgent("bbb-clone", simB.Ready, secret)
	testenv.Eventually(t, 10*time.Second, "the clone's agent to log the refusal", func() bool {
		return strings.Contains(clone.Output(), "already registered by another agent")
	})
	out := clone.Output()
	for _, want := range []string{"level=ERROR", "bbb-balancer servers remove bbb-clone", "--node-name"} {
		if !strings.Contains(out, want) {
			t.Errorf("the clone's log does not say %q:\n%s", want, out)
		}
	}
	if !strings.Contains(f.bal.Output(), "registration refused") {
		t.Errorf("the balancer's log says nothing of the refused clone:\n%s", f.bal.Output())
	}
	for _, s := range f.e.status() {
		if s.Name == "bbb-clone" && !strings.HasPrefix(s.URL, simA.Ready+"/") {
			t.Errorf("the node moved to %s", s.URL)
		}
	}
	if to := f.joinTarget("standup"); !strings.HasPrefix(to, simA.Ready+"/") {
		t.Errorf("after the clone, join goes to %s, want server A %s", to, simA.Ready)
	}
	if _, err := f.lb.GetMeetingInfo(f.ctx(), "standup"); err != nil {
		t.Errorf("after the clone, getMeetingInfo: %v", err)
	}
}

// Scenario 2: a holder of the agent token names an existing node with its
// own URL and secret, then tries to act for it.
func TestSecurityTakeoverWithAgentToken(t *testing.T) {
	f := newSecFleet(t, false)
	realSim := f.startSimAt("bbb-sim real", "real-node-secret-0123456789", testenv.FreePort(t))
	evil := f.startSimAt("bbb-sim attacker", "attacker-secret-0123456789", testenv.FreePort(t))
	cred := f.register("bbb1", realSim.Ready, "real-node-secret-0123456789")
	if code, out := f.report(cred, "bbb1", map[string]any{"bbb_healthy": true}); code != http.StatusOK {
		t.Fatalf("the real node's report: HTTP %d %v", code, out)
	}
	if _, err := f.lb.Create(f.ctx(), bbb.CreateRequest{MeetingID: "board", Name: "Board"}); err != nil {
		t.Fatal(err)
	}

	code, out := f.agentCall(agentToken, "/agent/v1/register", map[string]any{"node": "bbb1", "url": evil.Ready,
		"secret": "attacker-secret-0123456789", "role": "bbb", "report_interval_seconds": 60, "node_credential": true})
	if code != http.StatusConflict {
		t.Errorf("takeover with the agent token: HTTP %d %v, want 409", code, out)
	}
	msg, _ := out["error"].(string)
	for _, want := range []string{`"bbb1"`, realSim.Ready, "online", "servers remove bbb1", "allow-takeover bbb1", "--takeover"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the refusal does not say %q: %s", want, msg)
		}
	}
	for _, path := range []string{"/agent/v1/report", "/agent/v1/drain", "/agent/v1/cordon", "/agent/v1/deregister"} {
		if code, out := f.agentCall(agentToken, path, map[string]any{"node": "bbb1"}); code != http.StatusForbidden {
			t.Errorf("%s for bbb1 with the agent token: HTTP %d %v, want 403", path, code, out)
		}
	}
	if to := f.joinTarget("board"); !strings.HasPrefix(to, realSim.Ready+"/") {
		t.Errorf("join goes to %s, want the real node %s", to, realSim.Ready)
	}
	// The real node still speaks for itself.
	if code, out := f.report(cred, "bbb1", map[string]any{"bbb_healthy": true}); code != http.StatusOK {
		t.Errorf("the real node's report after the attempt: HTTP %d %v", code, out)
	}
	// And an operator's leave lets a replacement in, with --takeover only.
	f.e.ok("servers", "allow-takeover", "bbb1")
	if code, out := f.agentCall(agentToken, "/agent/v1/register", map[string]any{"node": "bbb1", "url": evil.Ready,
		"secret": "attacker-secret-0123456789", "role": "bbb", "report_interval_seconds": 60, "node_credential": true, "takeover": true}); code != http.StatusOK {
		t.Errorf("takeover allowed by the operator: HTTP %d %v", code, out)
	}
	if code, _ := f.report(cred, "bbb1", map[string]any{"bbb_healthy": true}); code != http.StatusUnauthorized {
		t.Errorf("the old credential after a takeover: HTTP %d, want 401", code)
	}
}

// Scenario 3: a node's absurd figures are refused, naming the field, and
// placement goes on as if they had never been sent.
func TestSecurityAbsurdReports(t *testing.T) {
	f := newSecFleet(t, false)
	simA := f.startSimAt("bbb-sim A", "absurd-secret-a-0123456789", testenv.FreePort(t))
	simB := f.startSimAt("bbb-sim B", "absurd-secret-b-0123456789", testenv.FreePort(t))
	credA := f.register("liar", simA.Ready, "absurd-secret-a-0123456789")
	credB := f.register("honest", simB.Ready, "absurd-secret-b-0123456789")
	for _, n := range []struct{ cred, name string }{{credA, "liar"}, {credB, "honest"}} {
		if code, out := f.report(n.cred, n.name, map[string]any{"bbb_healthy": true, "cpu_percent": 10}); code != http.StatusOK {
			t.Fatalf("report %s: HTTP %d %v", n.name, code, out)
		}
	}
	bad := []struct {
		field string
		body  map[string]any
	}{
		{"load.participants", map[string]any{"node": "liar", "load": map[string]any{"participants": -100000, "bbb_healthy": true}}},
		{"load.meetings", map[string]any{"node": "liar", "load": map[string]any{"meetings": -978, "bbb_healthy": true}}},
		{"load.cpu_percent", map[string]any{"node": "liar", "load": map[string]any{"cpu_percent": -1000, "bbb_healthy": true}}},
		{"load.cpu_percent", map[string]any{"node": "liar", "load": map[string]any{"cpu_percent": 1e308, "bbb_healthy": true}}},
		{"seq", map[string]any{"node": "liar", "seq": -1, "load": map[string]any{"bbb_healthy": true}}},
	}
	for _, b := range bad {
		code, out := f.agentCall(credA, "/agent/v1/report", b.body)
		if code != http.StatusBadRequest || out["field"] != b.field {
			t.Errorf("report %v: HTTP %d %v, want 400 naming %s", b.body["load"], code, out, b.field)
		}
	}
	// seq going backwards within one agent run.
	for _, seq := range []int{7, 3} {
		code, out := f.agentCall(credA, "/agent/v1/report", map[string]any{"node": "liar", "run": "run-1", "seq": seq, "load": map[string]any{"bbb_healthy": true, "cpu_percent": 10}})
		if want := map[int]int{7: http.StatusOK, 3: http.StatusBadRequest}[seq]; code != want {
			t.Errorf("report seq %d after 7: HTTP %d %v, want %d", seq, code, out, want)
		}
	}
	code, out := f.agentCall(agentToken, "/agent/v1/register", map[string]any{"node": "greedy", "url": simA.Ready,
		"secret": "absurd-secret-a-0123456789", "role": "bbb", "load_multiplier": 1e308, "node_credential": true})
	if code != http.StatusBadRequest || out["field"] != "load_multiplier" {
		t.Errorf("register with load_multiplier 1e308: HTTP %d %v, want 400 naming load_multiplier", code, out)
	}
	for i := range 10 {
		if _, err := f.lb.Create(f.ctx(), bbb.CreateRequest{MeetingID: fmt.Sprintf("m%d", i), Name: "M"}); err != nil {
			t.Fatal(err)
		}
	}
	onLiar := 0
	for _, s := range f.e.status() {
		if s.Name == "liar" {
			onLiar = s.Meetings
		}
	}
	var liarMeetings int
	for i := range 10 {
		if strings.HasPrefix(f.joinTarget(fmt.Sprintf("m%d", i)), simA.Ready+"/") {
			liarMeetings++
		}
	}
	if liarMeetings > 6 {
		t.Errorf("the node that sent absurd figures took %d of 10 new meetings (reported %d)", liarMeetings, onLiar)
	}
	metrics := httpGetToken(t, f.bal.Ready+"/metrics", adminToken)
	if !regexp.MustCompile(`bbb_balancer_report_errors_total\{reason="bad_request"\} [1-9]`).MatchString(metrics) {
		t.Errorf("the refused reports are not counted in bbb_balancer_report_errors_total{reason=\"bad_request\"}")
	}
}

// Scenario 4: a wrong BBB secret is refused at registration, and a node
// whose secret changed later never hands its checksumError to a front-end.
func TestSecurityWrongBBBSecret(t *testing.T) {
	f := newSecFleet(t, true)
	sim := f.startSimAt("bbb-sim", "the-right-secret-0123456789", testenv.FreePort(t))
	a := f.startAgent("bbb-wrong", sim.Ready, "not-the-secret-0123456789")
	testenv.Eventually(t, 10*time.Second, "the agent to log why it is not registered", func() bool {
		return strings.Contains(a.Output(), "checksumError")
	})
	// The agent says it at ERROR, with the fix: its own BBB refuses the
	// secret, and so did the balancer's check.
	testenv.Eventually(t, 10*time.Second, "the agent to say the secret is wrong", func() bool {
		out := a.Output()
		return strings.Contains(out, "level=ERROR") && strings.Contains(out, "the BBB secret is wrong; fix --bbb-secret") &&
			strings.Contains(out, `level=ERROR msg="registering with the balancer failed; retrying"`)
	})
	for _, s := range f.e.status() {
		if s.Name == "bbb-wrong" {
			t.Errorf("a node with a wrong BBB secret was registered: %+v", s)
		}
	}

	port := testenv.FreePort(t)
	rotated := f.startSimAt("bbb-sim rotated", "secret-before-0123456789", port)
	other := f.startSimAt("bbb-sim other", "secret-other-0123456789", testenv.FreePort(t))
	credR := f.register("rotated", rotated.Ready, "secret-before-0123456789")
	credO := f.register("other", other.Ready, "secret-other-0123456789")
	f.report(credR, "rotated", map[string]any{"bbb_healthy": true})
	f.report(credO, "other", map[string]any{"bbb_healthy": true, "participants": 40, "meetings": 2})
	// The node's BBB secret changes behind the balancer's back (bbb-conf --setsecret).
	rotated.Stop(t, 5*time.Second)
	f.startSimAt("bbb-sim rotated again", "secret-after-0123456789", port)
	for i := range 3 {
		if _, err := f.lb.Create(f.ctx(), bbb.CreateRequest{MeetingID: fmt.Sprintf("c%d", i), Name: "C"}); err != nil {
			t.Errorf("create %d: %v (the front-end's checksum was right)", i, err)
		}
	}
	if n := strings.Count(f.bal.Output(), "refused the balancer's checksum"); n != 1 {
		t.Errorf("the balancer logged the node's checksumError %d times, want once:\n%s", n, f.bal.Output())
	}
}

func httpGetToken(t *testing.T, url, token string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
