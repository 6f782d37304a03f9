package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/agent/host"
	"github.com/bbb-agent/bbb-agent/balancer"
	"github.com/bbb-agent/bbb-agent/balancer/adminapi"
	"github.com/bbb-agent/bbb-agent/balancer/balancertest"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/bbb/sim"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
	"github.com/bbb-agent/bbb-agent/registrar"
)

const (
	lbSecret   = "agent-test-lb-secret"
	agentToken = "agent-test-token"
	adminToken = "agent-test-admin"
	interval   = 50 * time.Millisecond
)

// fleetEnv is a real bbb-balancer (embedded database) on loopback.
type fleetEnv struct {
	t      *testing.T
	lbURL  string
	admin  *adminapi.Client
	client *bbb.Client
	srv    *balancer.Server
}

func newFleet(t *testing.T) *fleetEnv {
	t.Helper()
	lb := balancertest.Start(t, balancertest.Options{Run: true, Config: balancer.Config{Secrets: []string{lbSecret},
		AgentToken: agentToken, AdminToken: adminToken, FlushInterval: 20 * time.Millisecond}})
	return &fleetEnv{t: t, lbURL: lb.URL, admin: lb.Admin, client: lb.Client, srv: lb.Server}
}

// server is what the balancer says about a node ("" fields when absent).
func (f *fleetEnv) server(name string) (adminapi.Server, bool) {
	f.t.Helper()
	servers, err := f.admin.Servers(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	return balancertest.Find(servers, func(s adminapi.Server) bool { return s.Name == name })
}

// node is a simulated BBB server with an agent on it.
type node struct {
	name, secret string
	sim          *sim.Server
	http         *httptest.Server
	stateDir     string
	socket       string
	notes        *notes
	agent        *Agent
	cancel       context.CancelFunc
	done         chan error    // Run's result, once
	finished     chan struct{} // closed when Run has returned
	// wrap, if set, stands between the agent and its registrar.
	wrap func(registrar.Registrar) registrar.Registrar
}

func newNode(t *testing.T, name string) *node {
	t.Helper()
	n := &node{name: name, secret: "secret-of-" + name, stateDir: t.TempDir(), notes: &notes{}}
	n.socket = filepath.Join(t.TempDir(), "admin.sock")
	n.sim = sim.New(sim.Config{Secret: n.secret})
	n.http = httptest.NewServer(n.sim)
	t.Cleanup(n.http.Close)
	return n
}

// start runs an agent for the node against the fleet's balancer.
func (n *node) start(t *testing.T, f *fleetEnv, cfg Config, deps Deps) {
	t.Helper()
	// As bbb-agent run does: the node's own credential in its state directory.
	reg, err := registrar.NewBalancer(f.lbURL, agentToken, registrar.WithCredentialFile(filepath.Join(n.stateDir, "node-credential")))
	if err != nil {
		t.Fatal(err)
	}
	c, err := bbb.NewClient(n.http.URL, n.secret)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Node, cfg.ServerURL, cfg.Secret = n.name, n.http.URL, n.secret
	if cfg.ReportInterval == 0 {
		cfg.ReportInterval = interval
	}
	cfg.Logger = slog.New(slog.DiscardHandler)
	deps.Registrar, deps.BBB, deps.Notifier = reg, c, n.notes
	if n.wrap != nil {
		deps.Registrar = n.wrap(reg)
	}
	deps.Host = func(context.Context) (host.Sample, error) { return host.Sample{CPUPercent: 12, CPUCores: 8}, nil }
	a, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := ListenAdmin(n.socket)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.agent, n.cancel, n.done, n.finished = a, cancel, make(chan error, 1), make(chan struct{})
	finished, done := n.finished, n.done
	admin := make(chan struct{})
	go func() {
		a.ServeAdmin(ctx, ln)
		close(admin)
	}()
	// As bbb-agent run does: when Run returns, the admin socket closes too.
	go func() {
		done <- a.Run(ctx)
		cancel()
		<-admin
		close(finished)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-finished:
		case <-time.After(5 * time.Second):
		}
	})
}

// exited waits for the agent's Run to return.
// waitReporting waits until the node is online at the balancer and its agent
// has made a report of its own (the registration alone shows it online).
func (n *node) waitReporting(t *testing.T, f *fleetEnv, within time.Duration) {
	t.Helper()
	testenv.Eventually(t, within, n.name+" online and reporting", func() bool {
		s, ok := f.server(n.name)
		return ok && s.Online && n.agent.Status().LastReportAgeSeconds != nil
	})
}

// stillReporting fails the test the moment the node looks dead at the
// balancer or its report loop has not reported for three intervals.
func (n *node) stillReporting(t *testing.T, f *fleetEnv, ival time.Duration, while string) {
	t.Helper()
	if s, ok := f.server(n.name); !ok || !s.Online {
		t.Fatalf("%s went offline at the balancer while %s: %+v", n.name, while, s)
	}
	if age := n.agent.Status().LastReportAgeSeconds; age == nil {
		t.Fatalf("%s's agent lost its last report while %s", n.name, while)
	} else if *age > (3 * ival).Seconds() {
		t.Fatalf("the report loop stalled while %s: last report %v s ago", while, *age)
	}
}

func (n *node) exited(t *testing.T, within time.Duration) error {
	t.Helper()
	select {
	case err := <-n.done:
		return err
	case <-time.After(within):
		t.Fatalf("agent %s still running after %v (state %s)", n.name, within, n.agent.State())
		return nil
	}
}

// notes records sd_notify messages.
type notes struct {
	mu   sync.Mutex
	msgs []string
}

func (n *notes) add(s string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.msgs = append(n.msgs, s)
	return nil
}
func (n *notes) Ready() error            { return n.add("READY=1") }
func (n *notes) Status(msg string) error { return n.add("STATUS=" + msg) }
func (n *notes) Stopping() error         { return n.add("STOPPING=1") }
func (n *notes) all() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.msgs...)
}

func (n *notes) String() string { return fmt.Sprint(n.all()) }

func adminState(s fleet.AdminState) adminapi.SetStateRequest {
	return adminapi.SetStateRequest{State: s}
}
