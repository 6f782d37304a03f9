package boottest

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/balancer/adminapi"
	"github.com/bbb-agent/bbb-agent/balancer/balancertest"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const (
	lbSecret   = "boottest-balancer-secret-0123456789"
	agentToken = "boottest-agent-token-0123456789"
	adminToken = "boottest-admin-token-0123456789"
	simSecret  = "boottest-sim-secret-0123456789"
	nodeName   = "boot-test"
	agentUnit  = "bbb-agent.service"
	version    = "0.0.0~boottest"
)

// What the balancer logs about the node (its lines in bbb-balancer's log).
const (
	registeredLine = `msg="node registered" node=` + nodeName + ` `
	cordonedLine   = `msg="node state set by its agent" node=` + nodeName + ` state=cordoned`
	deregisterLine = `msg="node deregistered" node=` + nodeName
)

// TestBootInstalledPackage boots a container with systemd as its PID 1 and
// the built bbb-agent .deb installed and enabled, the node configured with
// a drop-in in /etc/bbb-agent/agent.d/ to join a bbb-balancer and serve a
// bbb-sim, both on the host's loopback. It shows, with the package's own
// unit and logind drop-in:
//   - the unit reaches active, which a Type=notify unit does only on the
//     agent's READY=1, and the node is enabled at the balancer;
//   - the watchdog is armed (WatchdogUSec, and the agent's WATCHDOG_USEC);
//   - `systemctl restart bbb-agent` (what a package upgrade does) does not
//     drain: the node stays listed, online and enabled at the balancer
//     throughout and is never cordoned, and its meeting goes on;
//   - `systemctl poweroff` does drain: logind announces the shutdown
//     (PrepareForShutdown), the agent, holding a delay lock that the
//     package's drop-in lets last, cordons the node at the balancer and
//     deregisters it, and only then does systemd stop the agent.
func TestBootInstalledPackage(t *testing.T) {
	requireBoot(t)
	bins := testenv.Build(t, testenv.BalancerPkg, testenv.SimPkg)
	deb := buildDeb(t)
	sim := testenv.StartSim(t, testenv.SimOpts{Bin: bins[1], Secret: simSecret})
	lb := testenv.StartBalancer(t, testenv.BalancerOpts{Bin: bins[0], Secret: lbSecret, AgentToken: agentToken, AdminToken: adminToken})
	admin, err := adminapi.NewClient(lb.Ready, adminToken)
	if err != nil {
		t.Fatal(err)
	}
	node := func() (adminapi.Server, bool) {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		servers, err := admin.Servers(ctx)
		if err != nil {
			t.Fatalf("the balancer's servers: %v", err)
		}
		return balancertest.Find(servers, func(s adminapi.Server) bool { return s.Name == nodeName })
	}

	c := newContainer(t)
	c.install(deb, strings.Join([]string{
		"balancer-url: " + lb.Ready,
		"agent-token: " + agentToken,
		"bbb-url: " + sim.Ready,
		"bbb-secret: " + simSecret,
		"node-name: " + nodeName,
		// Offline at the balancer after three missed reports: 6 s, well
		// beyond a restart.
		"report-interval: 2s",
		"drain-deadline: 10s",
		// The host has no /var/bigbluebutton to report the free space of.
		"recordings-dir: /var/lib/bbb-agent",
	}, "\n")+"\n")
	c.boot()

	// Active: for a Type=notify unit, only after the agent's READY=1.
	unit := c.show(agentUnit, "Type", "ActiveState", "SubState", "StatusText", "WatchdogUSec", "MainPID")
	for prop, want := range map[string]string{"Type": "notify", "ActiveState": "active", "SubState": "running", "WatchdogUSec": "30s"} {
		if unit[prop] != want {
			t.Errorf("systemctl show %s: %s=%s, want %s", agentUnit, prop, unit[prop], want)
		}
	}
	if !strings.HasPrefix(unit["StatusText"], "ready") {
		t.Errorf("systemctl show %s: StatusText=%q, want the agent's ready status", agentUnit, unit["StatusText"])
	}
	// Armed: systemd told the agent its watchdog interval.
	if env := c.run("cat", "/proc/"+unit["MainPID"]+"/environ"); !strings.Contains(env, "WATCHDOG_USEC=30000000\x00") {
		t.Errorf("the agent's environment has no WATCHDOG_USEC=30000000: %q", env)
	}
	testenv.Eventually(t, 10*time.Second, "the node online and enabled at the balancer", func() bool {
		s, ok := node()
		return ok && s.Online && s.State == fleet.Enabled
	})
	if s, _ := node(); s.AgentVersion != version {
		t.Errorf("the balancer sees agent version %q, want the package's %q", s.AgentVersion, version)
	}
	// The package's logind drop-in is in force, and the agent holds its
	// shutdown delay lock.
	if got := c.run("busctl", "get-property", "org.freedesktop.login1", "/org/freedesktop/login1",
		"org.freedesktop.login1.Manager", "InhibitDelayMaxUSec"); strings.TrimSpace(got) != "t 7200000000" {
		t.Errorf("logind's InhibitDelayMaxUSec: %q, want 2h (the package's drop-in)", got)
	}
	if got := c.run("systemd-inhibit", "--list", "--no-pager"); !strings.Contains(got, "bbb-agent") || !strings.Contains(got, "delay") {
		t.Errorf("no shutdown delay lock of bbb-agent in systemd-inhibit --list:\n%s", got)
	}
	if t.Failed() {
		t.FailNow()
	}

	// A meeting placed on the node through the balancer, as a front-end
	// creates one; it must go on through the restart.
	front, err := bbb.NewClient(lb.Ready, lbSecret, bbb.WithHTTPClient(&http.Client{Timeout: 10 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	node1, err := bbb.NewClient(sim.Ready, simSecret, bbb.WithHTTPClient(&http.Client{Timeout: 10 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	call := func() context.Context {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		t.Cleanup(cancel)
		return ctx
	}
	if res, err := front.Create(call(), bbb.CreateRequest{MeetingID: "lecture", Name: "Lecture"}); err != nil || res.ReturnCode != bbb.ReturnSuccess {
		t.Fatalf("create through the balancer: %+v, %v", res, err)
	}
	onNode := func() []string {
		meetings, err := node1.GetMeetings(call())
		if err != nil {
			t.Fatalf("the node's getMeetings: %v", err)
		}
		return fleet.MeetingIDs(meetings)
	}

	// systemctl restart, watching the node at the balancer until the
	// restarted agent has registered again.
	registered := strings.Count(lb.Output(), registeredLine)
	restarted := make(chan error, 1)
	go func() {
		_, err := c.exec(execWithin, "systemctl", "restart", agentUnit)
		restarted <- err
	}()
	var left []string
	var restartErr error
	done := false
	testenv.Eventually(t, execWithin, "systemctl restart, then the restarted agent registered", func() bool {
		if s, ok := node(); !ok || !s.Online || s.State != fleet.Enabled {
			left = append(left, fmt.Sprintf("listed=%v online=%v state=%s", ok, s.Online, s.State))
		}
		if !done {
			select {
			case restartErr = <-restarted:
				done = true
			default:
			}
		}
		return done && (restartErr != nil || strings.Count(lb.Output(), registeredLine) > registered)
	})
	if restartErr != nil {
		t.Fatal(restartErr)
	}
	after := c.show(agentUnit, "ActiveState", "MainPID")
	if after["ActiveState"] != "active" || after["MainPID"] == unit["MainPID"] {
		t.Errorf("after systemctl restart: %v, want active with a new main PID (was %s)", after, unit["MainPID"])
	}
	if len(left) > 0 {
		t.Errorf("the balancer saw the node leave rotation during systemctl restart: %v", left)
	}
	if strings.Contains(lb.Output(), cordonedLine) {
		t.Errorf("systemctl restart cordoned the node:\n%s", lb.Output())
	}
	if log := c.run("journalctl", "--unit", agentUnit, "--output", "cat", "--no-pager"); !strings.Contains(log, "the node stays registered") || strings.Contains(log, "drain started") {
		t.Errorf("the agent's journal through the restart:\n%s", log)
	}
	if got := onNode(); !slices.Equal(got, []string{"lecture"}) {
		t.Errorf("the node runs %v after the restart, want the lecture", got)
	}
	if t.Failed() {
		t.FailNow()
	}
	// The lecture ends, so the shutdown's drain has nothing to wait for.
	if err := node1.End(call(), "lecture", ""); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the node reporting no meeting", func() bool {
		s, ok := node()
		return ok && s.Meetings == 0
	})

	// poweroff: logind asks first (PrepareForShutdown), the agent drains
	// and releases its lock, then systemd stops everything.
	if _, err := c.exec(execWithin, "systemctl", "poweroff"); err != nil {
		// The container may go away before systemctl returns.
		t.Logf("systemctl poweroff: %v", err)
	}
	if code := c.wait(time.Minute); code != 0 {
		t.Errorf("systemd-nspawn exited %d after poweroff, want 0\n%s", code, c.out.String())
	}
	// Whatever the balancer has logged of the node by now, the agent in
	// the container did before the container stopped.
	lbLog := lb.Output()
	cordoned, deregistered := strings.Index(lbLog, cordonedLine), strings.Index(lbLog, deregisterLine)
	if cordoned < 0 || deregistered < cordoned {
		t.Errorf("the balancer's log, want the node cordoned, then deregistered, before the container stopped:\n%s", lbLog)
	}
	if s, ok := node(); ok {
		t.Errorf("the balancer still lists the node after the poweroff: %+v", s)
	}
	// The drain came from logind and ran to its end: no SIGTERM from
	// systemd cut it short, the agent deregistered, released its lock and
	// then exited.
	log := c.journal(agentUnit)
	shutdown := strings.Index(log, "logind: the system is shutting down: draining")
	if shutdown < 0 {
		t.Fatalf("the agent's journal has no drain for the shutdown:\n%s", log)
	}
	drain := log[shutdown:]
	dereg, released, stopped := strings.Index(drain, "msg=deregistered"), strings.Index(drain, "logind: shutdown delay lock released"), strings.Index(drain, "Stopped "+agentUnit)
	if stopped < 0 {
		// journald may itself stop before systemd's "Stopped" line reaches
		// it; the line before it says the same.
		stopped = strings.Index(drain, agentUnit+": Deactivated successfully")
	}
	if !strings.Contains(drain, "source=shutdown") || strings.Contains(drain, "signal: stopping") || dereg < 0 || released < dereg || stopped < released {
		t.Errorf("the agent's journal, want the logind shutdown, the drain, the deregistration, the lock released, then the unit stopped:\n%s", log)
	}
}

// buildDeb builds the bbb-agent package for the host's architecture, as
// `make package` does (packaging/mkdeb), and returns its path.
func buildDeb(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "run", "./packaging/mkdeb", "-out", out, "-arch", runtime.GOARCH, "-version", version)
	cmd.Dir = root
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go run ./packaging/mkdeb: %v\n%s", err, msg)
	}
	debs, err := filepath.Glob(filepath.Join(out, "bbb-agent_"+version+"_"+runtime.GOARCH+".deb"))
	if err != nil || len(debs) != 1 {
		t.Fatalf("mkdeb wrote no bbb-agent package to %s (%v)", out, err)
	}
	return debs[0]
}
