package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/agent"
	"github.com/bbb-agent/bbb-agent/balancer/adminapi"
	"github.com/bbb-agent/bbb-agent/balancer/balancertest"
	"github.com/bbb-agent/bbb-agent/balancer/records"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/bbb/sim"
	"github.com/bbb-agent/bbb-agent/bbb/sim/simtest"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// The end-to-end tests run the bbb-agent, bbb-balancer and bbb-sim binaries
// as separate processes on loopback, and talk to them only through their
// command lines, logs, admin socket and HTTP APIs.

const (
	lbSecret   = "lb-secret-e2e-5f2c9a61"
	agentToken = "agent-token-e2e-8d41b7c3"
	adminToken = "admin-token-e2e-0c3e55d2"

	// interval is the agents' --report-interval.
	interval = 200 * time.Millisecond
	// slack is what a wait allows beyond the report intervals the design
	// promises: process start-up and a busy machine's scheduling.
	slack = 2 * time.Second
)

// shortDir is a temporary directory with a path short enough for a unix
// socket (t.TempDir's names grow with the test's name).
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "bbb-agent-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// fleetEnv is a bbb-balancer serve on loopback and the binaries.
type fleetEnv struct {
	t       *testing.T
	bin     testenv.Commands
	lb      *testenv.Proc
	url     string
	dataDir string // the balancer's, kept across restarts
}

func newFleet(t *testing.T) *fleetEnv {
	t.Helper()
	f := &fleetEnv{t: t, bin: testenv.BuildCommands(t)}
	f.startBalancer("127.0.0.1:0")
	return f
}

func (f *fleetEnv) startBalancer(listen string) {
	f.t.Helper()
	if f.dataDir == "" {
		f.dataDir = f.t.TempDir()
	}
	f.lb = testenv.StartBalancer(f.t, testenv.BalancerOpts{Bin: f.bin.Balancer, Listen: listen,
		Secret: lbSecret, AgentToken: agentToken, AdminToken: adminToken, DataDir: f.dataDir})
	f.url = f.lb.Ready
}

// servers is `bbb-balancer status --json`.
func (f *fleetEnv) servers() []adminapi.Server {
	f.t.Helper()
	return balancertest.Status(f.t, f.bin.Balancer, f.url, adminToken)
}

// server is what the balancer's status says about a node.
func (f *fleetEnv) server(name string) (adminapi.Server, bool) {
	f.t.Helper()
	return balancertest.Find(f.servers(), func(s adminapi.Server) bool { return s.Name == name })
}

func (f *fleetEnv) onlineAndEnabled(name string) bool {
	s, ok := f.server(name)
	return ok && s.Online && s.Status == fleet.Online && s.State == fleet.Enabled
}

// front is a BBB API client of the balancer, as Greenlight would use it.
func (f *fleetEnv) front() *bbb.Client {
	f.t.Helper()
	c, err := bbb.NewClient(f.url, lbSecret, bbb.WithHTTPClient(&http.Client{Timeout: 10 * time.Second}))
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

func (f *fleetEnv) create(id string) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := f.front().Create(ctx, bbb.CreateRequest{MeetingID: id, Name: "Meeting " + id})
	if err != nil {
		f.t.Fatalf("create %s through the balancer: %v", id, err)
	}
	if res.ReturnCode != bbb.ReturnSuccess || res.MeetingID != id {
		f.t.Fatalf("create %s through the balancer: %+v", id, res)
	}
}

// simNode is a running bbb-sim.
type simNode struct{ *simtest.Node }

func (f *fleetEnv) startSim(name string) simNode {
	f.t.Helper()
	return simNode{simtest.Start(f.t, testenv.SimOpts{Name: "bbb-sim " + name, Bin: f.bin.Sim, Secret: "sim-secret-" + name + "-e2e-3b9f0d"})}
}

// meetings lists the meetings the simulator runs.
func (s simNode) meetings(t *testing.T) []string {
	t.Helper()
	return fleet.MeetingIDs(s.Meetings(t))
}

// requests is how many API requests of one call the simulator has had, from
// its /sim/state.
func (s simNode) requests(t *testing.T, call string) int64 {
	t.Helper()
	return s.State(t).Requests[call]
}

// agentOpts are what differs between the agents the tests start.
type agentOpts struct {
	nodeName string // empty: no --node-name (the name kept in the state directory)
	stateDir string // empty: a new one
	socket   string // empty: a new one
	token    string // empty: agentToken
	balancer string // empty: the fleet's
	// bbb replaces --bbb-url and --bbb-secret (nil: the simulator's).
	bbb []string
	// fromConfig leaves out --balancer-url, --agent-token, --bbb-url,
	// --bbb-secret and --report-interval: the file or the environment has them.
	fromConfig bool
	// globalSocket gives the socket as `bbb-agent --admin-socket PATH run`,
	// the form of status, drain and undrain.
	globalSocket bool
	args         []string // further flags
	env          []string // further environment
}

// agentProc is a running bbb-agent run.
type agentProc struct {
	*testenv.Proc
	node    string // from its first log line
	socket  string
	bin     string
	secrets []string // what no output of it may show
}

// secrets are what no output may show.
func secrets(extra ...string) []string {
	return append([]string{lbSecret, agentToken, adminToken}, extra...)
}

// noSecrets fails the test if out shows any of the secrets.
func noSecrets(t *testing.T, what, out string, secrets []string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("%s shows the secret %q:\n%s", what, s, out)
		}
	}
}

// startAgent runs `bbb-agent run` with the flags of DESIGN.md for the node
// the simulator plays. When the test ends the agent is killed and its log is
// checked for secrets.
func (f *fleetEnv) startAgent(s simNode, o agentOpts) *agentProc {
	f.t.Helper()
	if o.stateDir == "" {
		o.stateDir = f.t.TempDir()
	}
	if o.socket == "" {
		o.socket = filepath.Join(shortDir(f.t), "admin.sock")
	}
	if o.token == "" {
		o.token = agentToken
	}
	if o.balancer == "" {
		o.balancer = f.url
	}
	if o.bbb == nil {
		o.bbb = []string{"--bbb-url", s.URL, "--bbb-secret", s.Secret}
	}
	args := []string{"run", "--admin-socket", o.socket}
	if o.globalSocket {
		args = []string{"--admin-socket", o.socket, "run"}
	}
	if !o.fromConfig {
		args = append(args, "--balancer-url", o.balancer, "--agent-token", o.token)
		args = append(args, o.bbb...)
		args = append(args, "--report-interval", interval.String())
	}
	if o.nodeName != "" {
		args = append(args, "--node-name", o.nodeName)
	}
	args = append(args, "--state-dir", o.stateDir, "--logind=false",
		// The test machine has no /var/bigbluebutton to report the free space of.
		"--recordings-dir", f.t.TempDir())
	args = append(args, o.args...)

	a := &agentProc{socket: o.socket, bin: f.bin.Agent, secrets: secrets(s.Secret, o.token)}
	f.t.Cleanup(func() {
		if a.Proc == nil {
			return
		}
		a.Kill()
		noSecrets(f.t, "the agent's log", a.Output(), a.secrets)
		for _, line := range strings.Split(strings.TrimSuffix(a.Output(), "\n"), "\n") {
			if strings.HasPrefix(line, "time=") && strings.Count(line, " node=") != 1 {
				f.t.Errorf("a log line without the node name once: %s", line)
			}
		}
	})
	a.Proc = testenv.StartAgent(f.t, testenv.AgentOpts{Name: "bbb-agent " + o.nodeName, Bin: f.bin.Agent, Args: args, Env: o.env})
	a.node = a.Ready
	return a
}

// status asks the agent with `bbb-agent --admin-socket PATH status --json`;
// ok is false if no agent answered.
func (a *agentProc) status(t *testing.T) (st agent.Status, raw map[string]any, ok bool) {
	t.Helper()
	r := a.admin(t, "status", "--json")
	if r.Code != 0 {
		return st, nil, false
	}
	if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, r.Stdout)
	}
	if err := json.Unmarshal([]byte(r.Stdout), &raw); err != nil {
		t.Fatal(err)
	}
	return st, raw, true
}

// waitState waits for the agent to report a lifecycle state.
func (a *agentProc) waitState(t *testing.T, want agent.State, within time.Duration) agent.Status {
	t.Helper()
	var st agent.Status
	testenv.Eventually(t, within, fmt.Sprintf("bbb-agent status says %s", want), func() bool {
		var ok bool
		st, _, ok = a.status(t)
		return ok && st.State == want
	})
	return st
}

// admin runs `bbb-agent --admin-socket PATH CMD`.
func (a *agentProc) admin(t *testing.T, cmd ...string) testenv.Result {
	t.Helper()
	r := testenv.Run(t, nil, a.bin, append([]string{"--admin-socket", a.socket}, cmd...)...)
	noSecrets(t, "bbb-agent "+strings.Join(cmd, " "), r.Stdout+r.Stderr, a.secrets)
	return r
}

func (a *agentProc) running() bool {
	select {
	case <-a.Exited():
		return false
	default:
		return true
	}
}

// TestAgentsJoinTheFleet: two agents against a balancer and two BBB
// simulators are online and enabled within two report intervals, and
// creates through the balancer land on both nodes.
func TestAgentsJoinTheFleet(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	s1, s2 := f.startSim("1"), f.startSim("2")
	a1 := f.startAgent(s1, agentOpts{nodeName: "bbb-e2e-1"})
	a2 := f.startAgent(s2, agentOpts{nodeName: "bbb-e2e-2"})
	took := testenv.Eventually(t, 2*interval+slack, "both nodes online and enabled at the balancer", func() bool {
		return f.onlineAndEnabled("bbb-e2e-1") && f.onlineAndEnabled("bbb-e2e-2")
	})
	t.Logf("both nodes online and enabled %s after the agents logged their start", took.Round(time.Millisecond))

	for _, c := range []struct {
		a *agentProc
		s simNode
	}{{a1, s1}, {a2, s2}} {
		if srv, _ := f.server(c.a.node); srv.URL != c.s.URL+"/bigbluebutton/api/" || srv.Source != records.SourceAgent {
			t.Errorf("the balancer has %s at %s (source %s), want %s/bigbluebutton/api/ from its agent", c.a.node, srv.URL, srv.Source, c.s.URL)
		}
		st := c.a.waitState(t, agent.Ready, slack)
		if st.Node != c.a.node || !st.Registered || st.DesiredState != fleet.Enabled || !st.BBBHealthy {
			t.Errorf("%s status: %+v", c.a.node, st)
		}
		if st.LastReportAgeSeconds == nil || *st.LastReportAgeSeconds > (2*interval+slack).Seconds() {
			t.Errorf("%s status: last report %v seconds ago", c.a.node, st.LastReportAgeSeconds)
		}
		if st.Load.CPUCores == 0 || st.Load.MemTotalBytes == 0 {
			t.Errorf("%s status has no host figures: %+v", c.a.node, st.Load)
		}
		if st.ReportTransport != "stream" {
			t.Errorf("%s reports by %q, want over the report stream", c.a.node, st.ReportTransport)
		}
		if out := c.a.admin(t, "status"); !strings.Contains(out.Stdout, "reports:         over the report stream") {
			t.Errorf("%s status does not say how it reports:\n%s", c.a.node, out.Stdout)
		}
	}

	var created []string
	for i := range 10 {
		id := fmt.Sprintf("class-%d", i)
		f.create(id)
		created = append(created, id)
	}
	on1, on2 := s1.meetings(t), s2.meetings(t)
	if got := slices.Sorted(slices.Values(append(slices.Clone(on1), on2...))); !slices.Equal(got, created) {
		t.Fatalf("the simulators run %v and %v, want %v once each", on1, on2, created)
	}
	if len(on1) == 0 || len(on2) == 0 {
		t.Errorf("ten creates on two empty nodes: %v on one, %v on the other", on1, on2)
	}
	testenv.Eventually(t, 2*interval+slack, "the agents report the meetings to the balancer", func() bool {
		s1, _ := f.server("bbb-e2e-1")
		s2, _ := f.server("bbb-e2e-2")
		return s1.Meetings == len(on1) && s2.Meetings == len(on2)
	})
}

// TestSIGTERMDrainsAndWaitsForTheMeeting: with --drain-on-sigterm (hosts
// without logind), SIGTERM cordons the node at the balancer; the agent runs
// on, draining, while its meeting runs, and leaves the fleet and exits 0 once
// the meeting has been ended through the balancer.
func TestSIGTERMDrainsAndWaitsForTheMeeting(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	s := f.startSim("1")
	a := f.startAgent(s, agentOpts{nodeName: "bbb-drain", args: []string{"--drain-on-sigterm"}})
	testenv.Eventually(t, 2*interval+slack, "online and enabled", func() bool { return f.onlineAndEnabled(a.node) })
	f.create("lecture")
	if _, err := s.Control.AddAttendees(t.Context(), "lecture", sim.AttendeeSpec{Count: 3}); err != nil {
		t.Fatalf("%s: adding attendees: %v", s.Name, err)
	}
	testenv.Eventually(t, 2*interval+slack, "the agent sees the meeting", func() bool {
		st, _, ok := a.status(t)
		return ok && st.Load.Meetings == 1
	})

	if err := a.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, interval+slack, "cordoned at the balancer", func() bool {
		srv, ok := f.server(a.node)
		return ok && srv.State == fleet.Cordoned
	})
	st, raw, ok := a.status(t)
	if !ok {
		t.Fatalf("no status from the draining agent: %s", a.admin(t, "status", "--json"))
	}
	for _, key := range []string{"node", "state", "registered", "last_report_age_seconds"} {
		if _, ok := raw[key]; !ok {
			t.Errorf("status --json lacks %q: %v", key, raw)
		}
	}
	if st.Node != a.node || st.State != agent.Draining || !st.Registered || st.Drain == nil || st.Drain.Source != agent.SourceSignal {
		t.Errorf("status of the draining agent: %+v (drain %+v)", st, st.Drain)
	}
	if out := a.admin(t, "status"); !strings.Contains(out.Stdout, "draining") || !strings.Contains(out.Stdout, "by signal") {
		t.Errorf("status:\n%s", out)
	}

	// The drain waits: the meeting runs on, nobody ended it.
	time.Sleep(3 * interval)
	if !a.running() {
		t.Fatalf("the agent exited while its meeting ran: %v", a.Wait(t, 0))
	}
	if got := s.meetings(t); !slices.Equal(got, []string{"lecture"}) {
		t.Fatalf("the node runs %v during the drain, want the lecture", got)
	}
	if n := s.requests(t, bbb.CallEnd); n != 0 {
		t.Fatalf("the node got %d end calls during the drain", n)
	}
	if srv, ok := f.server(a.node); !ok || srv.State != fleet.Cordoned || srv.Meetings != 1 {
		t.Errorf("the balancer during the drain: %+v (listed: %v)", srv, ok)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.front().End(ctx, "lecture", ""); err != nil {
		t.Fatalf("end through the balancer: %v", err)
	}
	ended := time.Now()
	if code := a.Wait(t, 2*interval+slack); code != 0 {
		t.Fatalf("the agent exited %d after the drain\n%s", code, a.Output())
	}
	t.Logf("the agent exited %s after the meeting ended", time.Since(ended).Round(time.Millisecond))
	if _, err := os.Stat(a.socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the admin socket is left behind after a clean exit: %v", err)
	}
	if !strings.Contains(a.Output(), `msg=deregistered`) {
		t.Errorf("the agent's log does not say it deregistered:\n%s", a.Output())
	}
	if srv, ok := f.server(a.node); ok {
		t.Errorf("the balancer still lists the drained node: %+v", srv)
	}
	if n := s.requests(t, bbb.CallEnd); n != 1 {
		t.Errorf("the node got %d end calls, want the test's one", n)
	}
}

// TestSecondSignalStopsAtOnce: a second SIGTERM during a drain (a second or
// more after the first) stops the agent without waiting for the meetings, and
// says what that leaves behind.
func TestSecondSignalStopsAtOnce(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	s := f.startSim("1")
	a := f.startAgent(s, agentOpts{nodeName: "bbb-impatient", args: []string{"--drain-on-sigterm"}})
	testenv.Eventually(t, 2*interval+slack, "online and enabled", func() bool { return f.onlineAndEnabled(a.node) })
	f.create("workshop")
	first := time.Now()
	if err := a.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	a.waitState(t, agent.Draining, interval+slack)
	// A signal within signalRepeat of the first is the same signal twice
	// (TestSignalsInTheSameInstantKeepDraining): wait the window out.
	time.Sleep(time.Until(first.Add(signalRepeat + 100*time.Millisecond)))
	if err := a.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := a.Wait(t, slack); code == 0 {
		t.Errorf("exit 0 after a drain cut short")
	}
	if out := a.Output(); !strings.HasSuffix(out, "\nbbb-agent: stopped by a second signal before the drain finished: the node stays at the balancer, cordoned, until it goes offline there\n") {
		t.Errorf("the agent does not say clearly why it stopped:\n%s", out)
	}
	if got := s.meetings(t); !slices.Equal(got, []string{"workshop"}) {
		t.Errorf("the node runs %v after the agent stopped, want the workshop", got)
	}
	if srv, ok := f.server(a.node); !ok || srv.State != fleet.Cordoned {
		t.Errorf("the balancer after the agent stopped mid-drain: %+v (listed %v), want it cordoned", srv, ok)
	}
}

// TestSignalsInTheSameInstantKeepDraining: GNU timeout and some init
// scripts signal the agent and its process group at once, so the same
// SIGTERM arrives twice: that is one signal, and the drain goes on.
func TestSignalsInTheSameInstantKeepDraining(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	s := f.startSim("1")
	a := f.startAgent(s, agentOpts{nodeName: "bbb-twice", args: []string{"--drain-on-sigterm"}})
	testenv.Eventually(t, 2*interval+slack, "online and enabled", func() bool { return f.onlineAndEnabled(a.node) })
	f.create("seminar")
	// The kernel merges a signal into one still pending: send the second as
	// soon as the agent has taken the first, well within signalRepeat.
	if err := a.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, slack, "the agent takes the signal", func() bool { return strings.Contains(a.Output(), "signal: draining") })
	if err := a.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	a.waitState(t, agent.Draining, interval+slack)
	testenv.Eventually(t, interval+slack, "cordoned at the balancer", func() bool {
		srv, ok := f.server(a.node)
		return ok && srv.State == fleet.Cordoned
	})
	time.Sleep(3 * interval) // the drain waits for the seminar
	if !a.running() {
		t.Fatalf("the agent stopped on a doubled signal:\n%s", a.Output())
	}
	if st := a.waitState(t, agent.Draining, slack); st.Drain == nil || st.Drain.Source != agent.SourceSignal {
		t.Errorf("status after the doubled signal: %+v", st)
	}
	if !strings.Contains(a.Output(), "signal again within a second") {
		t.Errorf("the agent does not say it took the second signal for the first:\n%s", a.Output())
	}
}

// TestRestartDoesNotDrain: a plain stop and start of the agent (systemctl
// restart, a package upgrade's postinst) while a meeting runs: the agent
// stops at once without a drain, the node is never cordoned nor offline at
// the balancer, the meeting goes on untouched, and the restarted agent
// reports it again under the same name.
func TestRestartDoesNotDrain(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	s := f.startSim("1")
	stateDir, socket := t.TempDir(), filepath.Join(shortDir(t), "admin.sock")
	// One second between reports: offline only after three missed, so a
	// restart of the binary fits well inside.
	opts := agentOpts{nodeName: "bbb-upgrade", stateDir: stateDir, socket: socket, args: []string{"--report-interval", "1s"}}
	a := f.startAgent(s, opts)
	testenv.Eventually(t, 2*time.Second+slack, "online and enabled", func() bool { return f.onlineAndEnabled(a.node) })
	f.create("lecture")
	if _, err := s.Control.AddAttendees(t.Context(), "lecture", sim.AttendeeSpec{Count: 4}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 2*time.Second+slack, "the balancer sees the meeting", func() bool {
		srv, ok := f.server(a.node)
		return ok && srv.Meetings == 1
	})

	// Watch the node at the balancer through the restart.
	var seen []string
	var mu sync.Mutex
	watch, stopWatch := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for watch.Err() == nil {
			srv, ok := f.server(a.node)
			if !ok || !srv.Online || srv.State != fleet.Enabled {
				mu.Lock()
				seen = append(seen, fmt.Sprintf("listed=%v online=%v state=%s", ok, srv.Online, srv.State))
				mu.Unlock()
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	if err := a.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := a.Wait(t, slack); code != 0 {
		t.Fatalf("the agent exited %d on SIGTERM\n%s", code, a.Output())
	}
	if out := a.Output(); !strings.Contains(out, "the node stays registered") || strings.Contains(out, "draining") {
		t.Errorf("the stop's log:\n%s", out)
	}
	b := f.startAgent(s, opts)
	testenv.Eventually(t, 2*time.Second+slack, "the restarted agent reports", func() bool {
		st, _, ok := b.status(t)
		return ok && st.Registered && st.LastReportAgeSeconds != nil && st.Load.Meetings == 1
	})
	stopWatch()
	<-watched
	if len(seen) > 0 {
		t.Errorf("the balancer saw the node leave rotation during the restart: %v", seen)
	}
	if got := s.meetings(t); !slices.Equal(got, []string{"lecture"}) {
		t.Errorf("the node runs %v after the restart, want the lecture", got)
	}
	if n := s.requests(t, bbb.CallEnd); n != 0 {
		t.Errorf("the node got %d end calls", n)
	}
	if st, _, _ := b.status(t); st.State != agent.Ready || st.Drain != nil {
		t.Errorf("the restarted agent: state %s, drain %+v", st.State, st.Drain)
	}
}

// TestKilledAgentGoesOfflineAndComesBackUnderItsName: kill -9 leaves the node
// offline within three report intervals; an agent started again on the same
// state directory, without --node-name, comes back as the same node.
func TestKilledAgentGoesOfflineAndComesBackUnderItsName(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	s := f.startSim("1")
	stateDir, socket := t.TempDir(), filepath.Join(shortDir(t), "admin.sock")
	a := f.startAgent(s, agentOpts{stateDir: stateDir, socket: socket})
	if !regexp.MustCompile(`^bbb-[a-z0-9]{6}$`).MatchString(a.node) {
		t.Fatalf("generated node name %q, want bbb-xxxxxx", a.node)
	}
	if kept, err := os.ReadFile(filepath.Join(stateDir, "node-name")); err != nil || strings.TrimSpace(string(kept)) != a.node {
		t.Fatalf("the state directory keeps %q (%v), want %s", kept, err, a.node)
	}
	testenv.Eventually(t, 2*interval+slack, "online and enabled", func() bool { return f.onlineAndEnabled(a.node) })
	before, _ := f.server(a.node)

	if err := a.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	a.Wait(t, 5*time.Second)
	took := testenv.Eventually(t, 3*interval+slack, "offline at the balancer", func() bool {
		srv, ok := f.server(a.node)
		return ok && !srv.Online && srv.Status == fleet.Offline
	})
	t.Logf("offline %s after kill -9", took.Round(time.Millisecond))
	if r := a.admin(t, "status"); r.Code == 0 || !strings.Contains(r.Stderr, "no bbb-agent answers on "+socket) {
		t.Errorf("status of a killed agent (its socket file left behind): %s", r)
	}

	b := f.startAgent(s, agentOpts{stateDir: stateDir, socket: socket})
	if b.node != a.node {
		t.Fatalf("restarted on the same state directory as %q, want %q", b.node, a.node)
	}
	testenv.Eventually(t, 2*interval+slack, "online again", func() bool { return f.onlineAndEnabled(b.node) })
	servers := f.servers()
	if len(servers) != 1 || servers[0].ID != before.ID || servers[0].Name != a.node {
		t.Errorf("after the restart the balancer lists %+v, want only %s with ID %s", servers, a.node, before.ID)
	}
	if st := b.waitState(t, agent.Ready, slack); st.Node != a.node {
		t.Errorf("the restarted agent says it is %s", st.Node)
	}
}

// TestDrainAndUndrain: `bbb-agent drain` and `bbb-agent undrain` through the
// admin socket cordon the node at the balancer and enable it again.
func TestDrainAndUndrain(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	s := f.startSim("1")
	a := f.startAgent(s, agentOpts{nodeName: "bbb-admin", globalSocket: true})
	testenv.Eventually(t, 2*interval+slack, "online and enabled", func() bool { return f.onlineAndEnabled(a.node) })
	// A meeting keeps the drain going (an empty cordoned node would leave).
	f.create("seminar")
	testenv.Eventually(t, 2*interval+slack, "the agent sees the meeting", func() bool {
		st, _, ok := a.status(t)
		return ok && st.Load.Meetings == 1
	})

	r := a.admin(t, "drain")
	if r.Code != 0 {
		t.Fatalf("drain: %s", r)
	}
	if want := "bbb-admin is draining: no new meetings; it leaves the fleet when its 1 meeting has ended (deadline "; !strings.HasPrefix(r.Stdout, want) {
		t.Errorf("drain printed %q, want it to start with %q", r.Stdout, want)
	}
	testenv.Eventually(t, interval+slack, "cordoned at the balancer", func() bool {
		srv, ok := f.server(a.node)
		return ok && srv.State == fleet.Cordoned
	})
	if st, _, _ := a.status(t); st.State != agent.Draining || st.Drain == nil || st.Drain.Source != agent.SourceAdmin || st.Drain.MeetingsLeft != 1 {
		t.Errorf("status after drain: %+v (drain %+v)", st, st.Drain)
	}
	if again := a.admin(t, "drain"); again.Code != 0 || !strings.Contains(again.Stdout, "is draining") {
		t.Errorf("a second drain: %s", again)
	}

	r = a.admin(t, "undrain")
	if r.Code != 0 || r.Stdout != "bbb-admin is ready again and takes new meetings\n" {
		t.Fatalf("undrain: %s", r)
	}
	testenv.Eventually(t, interval+slack, "enabled at the balancer", func() bool { return f.onlineAndEnabled(a.node) })
	if st, _, _ := a.status(t); st.State != agent.Ready || st.Drain != nil || !st.Registered {
		t.Errorf("status after undrain: %+v", st)
	}
	r = a.admin(t, "undrain")
	if r.Code == 0 || !strings.Contains(r.Stderr, "not draining") {
		t.Errorf("undrain of a node that is not draining: %s", r)
	}
	// It stays in the fleet: the balancer keeps it enabled, the meeting runs.
	time.Sleep(3 * interval)
	if !a.running() || !f.onlineAndEnabled(a.node) || !slices.Equal(s.meetings(t), []string{"seminar"}) {
		t.Errorf("after undrain: running %v, balancer %+v, meetings %v", a.running(), f.servers(), s.meetings(t))
	}
}

// TestReportCadence: the agent asks BBB and reports once per report
// interval whatever happened before (it must not compete with the media
// server): while ready, while draining with a meeting running, after an
// undrain, and after a failed report.
func TestReportCadence(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	s1, s2 := f.startSim("1"), f.startSim("2")
	a := f.startAgent(s1, agentOpts{nodeName: "bbb-cadence-1"})
	b := f.startAgent(s2, agentOpts{nodeName: "bbb-cadence-2"})
	testenv.Eventually(t, 2*interval+slack, "online and enabled", func() bool {
		return f.onlineAndEnabled(a.node) && f.onlineAndEnabled(b.node)
	})
	// On a's node, so that a drain there waits.
	if _, err := s1.Client.Create(t.Context(), bbb.CreateRequest{MeetingID: "long-meeting", Name: "Long meeting"}); err != nil {
		t.Fatal(err)
	}
	// calls counts the getMeetings calls of each node (only its agent makes
	// them) over ten report intervals; a few more than ten allow for timer
	// jitter and the extra measurement a drain starts with.
	calls := func(when string, sims ...simNode) {
		t.Helper()
		const n = 10
		before := make([]int64, len(sims))
		for i, s := range sims {
			before[i] = s.requests(t, bbb.CallGetMeetings)
		}
		time.Sleep(n * interval)
		for i, s := range sims {
			if got := s.requests(t, bbb.CallGetMeetings) - before[i]; got > n+3 {
				t.Errorf("%s, %s: %d getMeetings calls in %d report intervals, want about %d", s.Name, when, got, n, n)
			}
		}
	}
	calls("ready", s1, s2)

	if r := a.admin(t, "drain"); r.Code != 0 {
		t.Fatalf("drain: %s", r)
	}
	calls("draining", s1)
	if r := a.admin(t, "undrain"); r.Code != 0 {
		t.Fatalf("undrain: %s", r)
	}
	calls("ready again after an undrain", s1)

	// The balancer restarts: a report fails and is retried.
	addr := strings.TrimPrefix(f.url, "http://")
	if code := f.lb.Stop(t, 5*time.Second); code != 0 {
		t.Fatalf("bbb-balancer serve exited %d", code)
	}
	testenv.Eventually(t, 2*interval+slack, "a failed report", func() bool {
		st, _, ok := b.status(t)
		return ok && st.LastError != ""
	})
	f.startBalancer(addr)
	testenv.Eventually(t, 10*time.Second, "reports again", func() bool {
		st, _, ok := b.status(t)
		return ok && st.LastError == "" && f.onlineAndEnabled(b.node)
	})
	calls("after a failed report", s2)
}

// configLine is one line of `bbb-agent config`.
type configLine struct{ value, source string }

func parseConfig(t *testing.T, out string) map[string]configLine {
	t.Helper()
	lines := map[string]configLine{}
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		kv, src, ok := strings.Cut(l, " # ")
		key, val, ok2 := strings.Cut(kv, ":")
		if !ok || !ok2 {
			t.Fatalf("config line %q is not `key: value # source`", l)
		}
		lines[key] = configLine{strings.TrimSpace(val), src}
	}
	return lines
}

// TestConfiguration: the file, the environment and the flags, in that
// order of precedence; secrets masked; bad files refused naming the key.
func TestConfiguration(t *testing.T) {
	t.Parallel()
	b := testenv.BuildCommands(t)
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	const fileSecret = "bbb-secret-from-the-file-71e0"

	t.Run("precedence and masking", func(t *testing.T) {
		file := write("agent.yaml", `# the agent's settings
balancer-url: https://lb.example.com
agent-token: `+agentToken+`
bbb-url: https://bbb1.example.com
bbb_secret: `+fileSecret+`
node-name: from-file
report-interval: 3s
drain-deadline: 10m
tag: [north, big]
`)
		r := testenv.Run(t, []string{"BBB_AGENT_NODE_NAME=from-env", "BBB_AGENT_REPORT_INTERVAL=4s", "BBB_AGENT_LOG_LEVEL=debug"},
			b.Agent, "config", "--config", file, "--node-name", "from-flag")
		if r.Code != 0 {
			t.Fatalf("config: %s", r)
		}
		got := parseConfig(t, r.Stdout)
		want := map[string]configLine{
			"config":          {file, "flag"},
			"node-name":       {"from-flag", "flag"},
			"report-interval": {"4s", "environment BBB_AGENT_REPORT_INTERVAL"},
			"log-level":       {"debug", "environment BBB_AGENT_LOG_LEVEL"},
			"drain-deadline":  {"10m0s", "file " + file},
			"balancer-url":    {"https://lb.example.com", "file " + file},
			"bbb-url":         {"https://bbb1.example.com", "file " + file},
			"tag":             {"north,big", "file " + file},
			"agent-token":     {"******", "file " + file},
			"bbb-secret":      {"******", "file " + file},
			"role":            {"bbb", "default"},
		}
		for key, w := range want {
			if got[key] != w {
				t.Errorf("config %s: %+v, want %+v", key, got[key], w)
			}
		}
		if _, ok := got["help"]; ok {
			t.Errorf("config lists the help flag:\n%s", r.Stdout)
		}
		noSecrets(t, "config", r.Stdout+r.Stderr, secrets(fileSecret))

		// Secrets from the environment and from flags are masked too.
		r = testenv.Run(t, []string{"BBB_AGENT_AGENT_TOKEN=" + agentToken}, b.Agent, "config", "--config", file, "--bbb-secret", "flag-"+fileSecret)
		if got := parseConfig(t, r.Stdout); r.Code != 0 || got["agent-token"] != (configLine{"******", "environment BBB_AGENT_AGENT_TOKEN"}) ||
			got["bbb-secret"] != (configLine{"******", "flag"}) {
			t.Errorf("config with secrets from the environment and a flag: %s", r)
		}
		noSecrets(t, "config", r.Stdout+r.Stderr, secrets(fileSecret))
	})

	t.Run("unknown key", func(t *testing.T) {
		file := write("unknown.yaml", "balancer-url: https://lb.example.com\nreport_intervall: 5s\n")
		for _, cmd := range []string{"config", "run", "check"} {
			r := testenv.Run(t, nil, b.Agent, cmd, "--config", file)
			if r.Code == 0 || !strings.Contains(r.Stderr+r.Stdout, `unknown key "report_intervall"`) || !strings.Contains(r.Stderr+r.Stdout, file) {
				t.Errorf("%s with an unknown key: %s", cmd, r)
			}
		}
	})

	t.Run("bad value", func(t *testing.T) {
		file := write("bad.yaml", "report-interval: 5x\n")
		for _, cmd := range []string{"config", "run"} {
			r := testenv.Run(t, nil, b.Agent, cmd, "--config", file)
			if r.Code == 0 || !strings.Contains(r.Stderr, `key "report-interval"`) || !strings.Contains(r.Stderr, `"5x"`) ||
				!strings.Contains(r.Stderr, "want a duration") {
				t.Errorf("%s with report-interval: 5x: %s", cmd, r)
			}
		}
		r := testenv.Run(t, []string{"BBB_AGENT_REPORT_INTERVAL=5x"}, b.Agent, "config")
		if r.Code == 0 || !strings.Contains(r.Stderr, "BBB_AGENT_REPORT_INTERVAL") || !strings.Contains(r.Stderr, "report-interval") ||
			strings.Contains(r.Stdout, "USAGE") {
			t.Errorf("config with BBB_AGENT_REPORT_INTERVAL=5x: %s", r)
		}
	})

	t.Run("timings that cannot work", func(t *testing.T) {
		for _, tt := range []struct{ flag, value, key string }{
			{"--report-interval", "1ms", "report_interval"},
			{"--report-interval", "0s", "report_interval"},
			{"--report-interval", "-5s", "report_interval"},
			{"--drain-deadline", "0s", "drain_deadline"},
			{"--drain-deadline", "-1m", "drain_deadline"},
			{"--drain-unknown-grace", "1s", "drain_unknown_grace"},
			{"--drain-unknown-grace", "0s", "drain_unknown_grace"},
		} {
			for _, cmd := range []string{"run", "check"} {
				r := testenv.Run(t, nil, b.Agent, cmd, "--config", write("empty.yaml", "{}\n"), tt.flag, tt.value)
				out := r.Stdout + r.Stderr
				if r.Code == 0 || !strings.Contains(out, tt.flag+" (") || !strings.Contains(out, tt.key+" in agent.yaml") || !strings.Contains(out, "too short") {
					t.Errorf("%s %s %s: %s", cmd, tt.flag, tt.value, r)
				}
			}
		}
	})

	t.Run("drop-ins", func(t *testing.T) {
		etc := t.TempDir()
		main := filepath.Join(etc, "agent.yaml")
		dropIns := filepath.Join(etc, "agent.d")
		if err := os.Mkdir(dropIns, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, content := range map[string]string{
			main:                                   "node-name: from-agent-yaml\nreport-interval: 3s\ntag: [x]\n",
			filepath.Join(dropIns, "10-base.yaml"): "node-name: from-10\nbalancer-url: https://lb.example.com\n",
			filepath.Join(dropIns, "50-cloud-init.yaml"): "node-name: from-50\ntag: [y, z]\n",
			filepath.Join(dropIns, "README.txt"):         "not: yaml: read\n",
		} {
			if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		r := testenv.Run(t, nil, b.Agent, "config", "--config", main)
		if r.Code != 0 {
			t.Fatalf("config: %s", r)
		}
		got := parseConfig(t, r.Stdout)
		for key, w := range map[string]configLine{
			"node-name":       {"from-50", "file " + filepath.Join(dropIns, "50-cloud-init.yaml")},
			"tag":             {"y,z", "file " + filepath.Join(dropIns, "50-cloud-init.yaml")},
			"balancer-url":    {"https://lb.example.com", "file " + filepath.Join(dropIns, "10-base.yaml")},
			"report-interval": {"3s", "file " + main},
		} {
			if got[key] != w {
				t.Errorf("config %s = %+v, want %+v", key, got[key], w)
			}
		}
		bad := filepath.Join(dropIns, "90-typo.yaml")
		if err := os.WriteFile(bad, []byte("balancer_ulr: https://lb.example.com\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		r = testenv.Run(t, nil, b.Agent, "config", "--config", main)
		if r.Code == 0 || !strings.Contains(r.Stderr, bad) || !strings.Contains(r.Stderr, `unknown key "balancer_ulr"`) {
			t.Errorf("an unknown key in a drop-in: %s", r)
		}
	})

	t.Run("missing file", func(t *testing.T) {
		missing := filepath.Join(dir, "nowhere.yaml")
		r := testenv.Run(t, nil, b.Agent, "run", "--config", missing)
		if r.Code == 0 || !strings.Contains(r.Stderr, missing) {
			t.Errorf("run with a --config that does not exist: %s", r)
		}
	})

	t.Run("a run takes the file, the environment and the flags", func(t *testing.T) {
		f := newFleet(t)
		s := f.startSim("1")
		file := write("run.yaml", fmt.Sprintf("balancer-url: %s\nagent-token: %s\nbbb-secret: %s\nreport-interval: 1h\nnode-name: from-file\n",
			f.url, agentToken, s.Secret))
		a := f.startAgent(s, agentOpts{nodeName: "from-flag", fromConfig: true, args: []string{"--config", file},
			env: []string{"BBB_AGENT_BBB_URL=" + s.URL, "BBB_AGENT_REPORT_INTERVAL=" + interval.String(), "BBB_AGENT_LOG_LEVEL=debug"}})
		if a.node != "from-flag" {
			t.Errorf("the agent runs as %q, want the flag's from-flag", a.node)
		}
		testenv.Eventually(t, 2*interval+slack, "online and enabled", func() bool { return f.onlineAndEnabled("from-flag") })
		st := a.waitState(t, agent.Ready, slack)
		if st.ServerURL != s.URL || st.ReportIntervalSeconds != interval.Seconds() {
			t.Errorf("status: BBB %s every %vs, want %s (environment) every %vs (environment over file)",
				st.ServerURL, st.ReportIntervalSeconds, s.URL, interval.Seconds())
		}
		// The log is checked for the token and the secret when the test ends.
	})
}

// TestBadInput: what an operator gets wrong gets a clear error, or, for a
// balancer that is not there yet or refuses the token, an agent that keeps
// trying and says why in its status.
func TestBadInput(t *testing.T) {
	t.Parallel()
	b := testenv.BuildCommands(t)
	// base is a run command line whose BBB settings each case completes.
	base := func(t *testing.T) []string {
		return []string{"run", "--balancer-url", "http://127.0.0.1:9", "--agent-token", agentToken, "--node-name", "bbb-bad",
			"--state-dir", t.TempDir(), "--admin-socket", filepath.Join(shortDir(t), "admin.sock"), "--report-interval", interval.String(),
			"--logind=false"}
	}

	t.Run("no BBB secret and no bbb-web.properties", func(t *testing.T) {
		t.Parallel()
		root := t.TempDir()
		r := testenv.Run(t, nil, b.Agent, append(base(t), "--bbb-url", "http://127.0.0.1:9", "--properties-root", root)...)
		if r.Code == 0 {
			t.Fatalf("run without a BBB secret: %s", r)
		}
		for _, want := range []string{"--bbb-secret", "bbb-web.properties", "no BBB properties file found", filepath.Join(root, bbb.PropertiesOverridePath)} {
			if !strings.Contains(r.Stderr, want) {
				t.Errorf("the error does not say %q: %s", want, r)
			}
		}
	})

	t.Run("unreadable bbb-web.properties", func(t *testing.T) {
		t.Parallel()
		// A directory where the file should be: the tests run as root, whom
		// chmod 000 does not stop.
		root := t.TempDir()
		path := filepath.Join(root, bbb.PropertiesOverridePath)
		if err := os.MkdirAll(path, 0o755); err != nil {
			t.Fatal(err)
		}
		r := testenv.Run(t, nil, b.Agent, append(base(t), "--properties-root", root)...)
		if r.Code == 0 || !strings.Contains(r.Stderr, path) || !strings.Contains(r.Stderr, "is a directory") || strings.Contains(r.Stderr, "panic") {
			t.Errorf("run with an unreadable bbb-web.properties: %s", r)
		}
	})

	t.Run("bbb-web.properties gives the BBB API", func(t *testing.T) {
		t.Parallel()
		f := newFleet(t)
		s := f.startSim("props")
		root := t.TempDir()
		path := filepath.Join(root, bbb.PropertiesOverridePath)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		props := fmt.Sprintf("# bbb-web overrides\nsecuritySalt=%s\nbigbluebutton.web.serverURL=%s\n", s.Secret, s.URL)
		if err := os.WriteFile(path, []byte(props), 0o600); err != nil {
			t.Fatal(err)
		}
		a := f.startAgent(s, agentOpts{nodeName: "bbb-props", bbb: []string{"--properties-root", root}})
		testenv.Eventually(t, 2*interval+slack, "online and enabled", func() bool { return f.onlineAndEnabled(a.node) })
		if srv, _ := f.server(a.node); srv.URL != s.URL+"/bigbluebutton/api/" {
			t.Errorf("the balancer has the node at %s, want %s/bigbluebutton/api/ from bbb-web.properties", srv.URL, s.URL)
		}
		if st := a.waitState(t, agent.Ready, slack); st.ServerURL != s.URL || !st.BBBHealthy {
			t.Errorf("status: BBB %s healthy %v (%s)", st.ServerURL, st.BBBHealthy, st.BBBError)
		}
		f.create("from-props") // the balancer signs with the secret the agent read
		if got := s.meetings(t); !slices.Equal(got, []string{"from-props"}) {
			t.Errorf("the node runs %v", got)
		}
	})

	t.Run("balancer not there yet", func(t *testing.T) {
		t.Parallel()
		f := &fleetEnv{t: t, bin: b}
		s := f.startSim("early")
		addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		a := f.startAgent(s, agentOpts{nodeName: "bbb-early", balancer: "http://" + addr})
		var st agent.Status
		testenv.Eventually(t, 2*interval+slack, "status says registering, with the error", func() bool {
			var ok bool
			st, _, ok = a.status(t)
			return ok && st.State == agent.Registering && st.LastError != ""
		})
		if st.Registered || !strings.Contains(st.LastError, addr) {
			t.Errorf("status while the balancer is away: registered %v, last error %q (want it to name %s)", st.Registered, st.LastError, addr)
		}
		if out := a.admin(t, "status"); !strings.Contains(out.Stdout, "last error:") || !strings.Contains(out.Stdout, "not registered") {
			t.Errorf("status:\n%s", out)
		}
		time.Sleep(2 * interval)
		if !a.running() {
			t.Fatalf("the agent exited without a balancer: exit %d", a.Wait(t, 0))
		}

		f.startBalancer(addr)
		// Retries back off: a few seconds at most this early.
		testenv.Eventually(t, 10*time.Second, "registered once the balancer listens", func() bool { return f.onlineAndEnabled(a.node) })
		st = a.waitState(t, agent.Ready, slack)
		if !st.Registered || st.LastError != "" {
			t.Errorf("status after registering: registered %v, last error %q", st.Registered, st.LastError)
		}
	})

	t.Run("wrong agent token", func(t *testing.T) {
		t.Parallel()
		f := newFleet(t)
		s := f.startSim("token")
		a := f.startAgent(s, agentOpts{nodeName: "bbb-token", token: "not-the-agent-token-4e1a"})
		var st agent.Status
		testenv.Eventually(t, 2*interval+slack, "status shows the refusal", func() bool {
			var ok bool
			st, _, ok = a.status(t)
			return ok && st.LastError != ""
		})
		if st.State != agent.Registering || st.Registered || !strings.Contains(st.LastError, "agent token") {
			t.Errorf("status with a wrong token: state %s, registered %v, last error %q (want it to say the agent token is wrong)",
				st.State, st.Registered, st.LastError)
		}
		if _, ok := f.server(a.node); ok || !a.running() {
			t.Errorf("with a wrong token: listed at the balancer %v, agent running %v", ok, a.running())
		}
	})

	t.Run("public address of the wrong form", func(t *testing.T) {
		t.Parallel()
		for _, c := range []struct{ flag, value, want string }{
			{"--public-ipv4", "203.0.113", `public-ipv4 "203.0.113" is not an IPv4 address`},
			{"--public-ipv4", "2001:db8::1", `public-ipv4 "2001:db8::1" is not an IPv4 address`},
			{"--public-ipv6", "203.0.113.7", `public-ipv6 "203.0.113.7" is not an IPv6 address`},
		} {
			r := testenv.Run(t, nil, b.Agent, append(base(t), "--bbb-url", "http://127.0.0.1:9", "--bbb-secret", "x", c.flag, c.value)...)
			if r.Code == 0 || !strings.Contains(r.Stderr, c.want) {
				t.Errorf("run %s %s: %s", c.flag, c.value, r)
			}
		}
	})

	t.Run("status without an agent", func(t *testing.T) {
		t.Parallel()
		socket := filepath.Join(shortDir(t), "admin.sock")
		for _, cmd := range []string{"status", "drain", "undrain"} {
			r := testenv.Run(t, nil, b.Agent, "--admin-socket", socket, cmd)
			if r.Code == 0 || !strings.Contains(r.Stderr, "no bbb-agent answers on "+socket) {
				t.Errorf("%s without an agent: %s", cmd, r)
			}
		}
	})
}

// TestCheck: `bbb-agent check` passes with the right settings and names
// what is wrong otherwise.
func TestCheck(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	s := f.startSim("check")
	check := func(t *testing.T, token, secret string) testenv.Result {
		t.Helper()
		r := testenv.Run(t, nil, f.bin.Agent, "check", "--balancer-url", f.url, "--agent-token", token, "--bbb-url", s.URL, "--bbb-secret", secret,
			"--node-name", "bbb-check", "--state-dir", t.TempDir(), "--logind=false")
		noSecrets(t, "check", r.Stdout+r.Stderr, secrets(s.Secret, token, secret))
		return r
	}
	lines := func(r testenv.Result) []string { return strings.Split(strings.TrimSuffix(r.Stdout, "\n"), "\n") }
	hasLine := func(r testenv.Result, prefix string) bool {
		return slices.ContainsFunc(lines(r), func(l string) bool { return strings.HasPrefix(l, prefix) })
	}

	t.Run("all good", func(t *testing.T) {
		r := check(t, agentToken, s.Secret)
		if r.Code != 0 {
			t.Fatalf("check: %s", r)
		}
		for _, want := range []string{"✔ configuration: node bbb-check", "✔ BBB API: " + s.URL, "✔ BBB secret: accepted", "✔ balancer: "} {
			if !hasLine(r, want) {
				t.Errorf("check does not print a line starting %q:\n%s", want, r.Stdout)
			}
		}
		if strings.Contains(r.Stdout, "✘") {
			t.Errorf("check passed with a failed line:\n%s", r.Stdout)
		}
	})

	t.Run("wrong BBB secret", func(t *testing.T) {
		r := check(t, agentToken, "not-the-bbb-secret-90ac")
		if r.Code == 0 || !hasLine(r, "✘ BBB secret: ") || !strings.Contains(r.Stdout, "secret is wrong") || !hasLine(r, "✔ balancer: ") {
			t.Errorf("check with a wrong BBB secret: %s", r)
		}
	})

	t.Run("wrong agent token", func(t *testing.T) {
		r := check(t, "not-the-agent-token-77b2", s.Secret)
		if r.Code == 0 || !hasLine(r, "✘ balancer: ") || !strings.Contains(r.Stdout, "agent-token") || !hasLine(r, "✔ BBB secret: ") {
			t.Errorf("check with a wrong agent token: %s", r)
		}
	})

	t.Run("bad configuration", func(t *testing.T) {
		r := testenv.Run(t, nil, f.bin.Agent, "check", "--balancer-url", f.url, "--agent-token", agentToken,
			"--bbb-url", s.URL, "--bbb-secret", s.Secret, "--node-name", "Not A DNS Name!", "--state-dir", t.TempDir(), "--logind=false")
		if r.Code == 0 || !hasLine(r, "✘ configuration: ") || !strings.Contains(r.Stdout, "node name") {
			t.Errorf("check with a bad node name: %s", r)
		}
	})

	t.Run("nothing answers", func(t *testing.T) {
		r := testenv.Run(t, nil, f.bin.Agent, "check", "--balancer-url", "http://127.0.0.1:9", "--agent-token", agentToken,
			"--bbb-url", "http://127.0.0.1:9", "--bbb-secret", s.Secret, "--node-name", "bbb-check", "--state-dir", t.TempDir(), "--logind=false")
		if r.Code == 0 || !hasLine(r, "✘ BBB API: ") || !hasLine(r, "✘ balancer: ") {
			t.Errorf("check with nothing listening: %s", r)
		}
	})
}
