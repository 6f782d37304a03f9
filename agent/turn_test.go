package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
	"github.com/bbb-agent/bbb-agent/registrar"
	"github.com/bbb-agent/bbb-agent/systemd/systemdtest"
	"github.com/bbb-agent/bbb-agent/turn"
)

const turnSecret = "fleet-turn-secret-0123456789"

// startTURNAgent runs a role-turn agent for a coturn server.
func startTURNAgent(t *testing.T, f *fleetEnv, name string, srv testenv.CoturnServer, secret string) context.CancelFunc {
	t.Helper()
	reg, err := registrar.NewBalancer(f.lbURL, agentToken)
	if err != nil {
		t.Fatal(err)
	}
	uri := "turn:" + srv.Addr
	pu, err := turn.ParseURI(uri)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{Node: name, Role: fleet.RoleTURN, TURNURIs: []string{uri}, ReportInterval: interval, Logger: slog.New(slog.DiscardHandler)},
		Deps{Registrar: reg, SelfProbe: func(ctx context.Context) error {
			if res := turn.Probe(ctx, pu, secret, turn.WithTimeout(500*time.Millisecond)); !res.OK() {
				return res.Err
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return cancel
}

// TestTURNFleet: a TURN node joins the fleet and a BBB node's
// turn-stun-servers.xml points at it; a TURN node with the wrong secret is
// never offered; when the TURN node is replaced, the BBB node's file follows
// within two report intervals, and bbb-web is restarted (through the unit
// restarter) only as the rules say.
func TestTURNFleet(t *testing.T) {
	f := newFleet(t)
	good := testenv.Coturn(t, turnSecret)
	bad := testenv.Coturn(t, turnSecret)
	startTURNAgent(t, f, "turn1", good, turnSecret)
	startTURNAgent(t, f, "turn-wrong", bad, "not-the-fleet-secret-0123") // its self-probe fails
	testenv.Eventually(t, 2*time.Second, "turn1 online", func() bool { s, ok := f.server("turn1"); return ok && s.Online })

	path := filepath.Join(t.TempDir(), "turn-stun-servers.xml")
	restarter := &systemdtest.Restarter{}
	mgr := &turn.Manager{Path: path, Secret: turnSecret, Restarter: restarter, Log: slog.New(slog.DiscardHandler),
		Probe: func(ctx context.Context, u turn.URI, s string) turn.Result {
			return turn.Probe(ctx, u, s, turn.WithTimeout(500*time.Millisecond))
		}}
	n := newNode(t, "bbb1")
	n.start(t, f, Config{}, Deps{TURN: mgr})

	inFile := func() []string {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		set, err := turn.Parse(data)
		if err != nil {
			return nil
		}
		var urls []string
		for _, e := range set.TURN {
			urls = append(urls, e.URL)
		}
		return urls
	}
	testenv.Eventually(t, 2*time.Second, "the file names turn1", func() bool { return slices.Equal(inFile(), []string{"turn:" + good.Addr}) })
	st := n.agent.Status()
	if st.TURN == nil || len(st.TURN.InUse) != 1 || st.TURN.WrittenAt.IsZero() {
		t.Fatalf("status: %+v", st.TURN)
	}
	// bbb-web restarts right after the write (it reads the file at start
	// only), so the file can be seen a moment before the restart happened.
	testenv.Eventually(t, 2*time.Second, "a bbb-web restart", func() bool { return len(restarter.Restarted()) > 0 })
	if got := restarter.Restarted(); !slices.Equal(got, []string{turn.BBBWebUnit}) {
		t.Fatalf("restarts: %v", got)
	}
	info, _ := os.Stat(path)

	// Steady state: nothing rewritten, nothing restarted.
	time.Sleep(4 * interval)
	if again, _ := os.Stat(path); !again.ModTime().Equal(info.ModTime()) || len(restarter.Restarted()) != 1 {
		t.Fatal("an unchanged TURN set rewrote the file or restarted bbb-web")
	}

	// Replace the TURN node: the old coturn and its agent go away, a new one comes.
	good.Stop()
	replacement := testenv.Coturn(t, turnSecret)
	startTURNAgent(t, f, "turn2", replacement, turnSecret)
	testenv.Eventually(t, 2*time.Second, "turn2 online", func() bool { s, ok := f.server("turn2"); return ok && s.Online })
	took := time.Now()
	testenv.Eventually(t, 2*interval+2*time.Second, "the file follows the replacement", func() bool {
		return slices.Equal(inFile(), []string{"turn:" + replacement.Addr})
	})
	t.Logf("file updated %v after turn2 came online", time.Since(took))
	testenv.Eventually(t, 2*time.Second, "a second bbb-web restart", func() bool { return len(restarter.Restarted()) > 1 })
	if got := restarter.Restarted(); len(got) != 2 {
		t.Fatalf("restarts after the replacement (old set dead: at once): %v", got)
	}
}

// blackhole is a UDP socket on loopback that never answers: a TURN server
// whose packets vanish.
func blackhole(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return "turn:" + pc.LocalAddr().String()
}

// startFakeTURNAgent runs a role-turn agent whose self-probe passes, so the
// balancer offers uri whatever answers there.
func startFakeTURNAgent(t *testing.T, f *fleetEnv, name, uri string) {
	t.Helper()
	reg, err := registrar.NewBalancer(f.lbURL, agentToken)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{Node: name, Role: fleet.RoleTURN, TURNURIs: []string{uri}, ReportInterval: interval, Logger: slog.New(slog.DiscardHandler)},
		Deps{Registrar: reg, SelfProbe: func(context.Context) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// TestTURNBlackholesKeepReporting: three TURN servers that never answer are
// offered by the balancer; the BBB node's probes of them time out, and all
// the while its reports keep arriving every interval: the node never turns
// offline at the balancer.
func TestTURNBlackholesKeepReporting(t *testing.T) {
	f := newFleet(t)
	const ival = 200 * time.Millisecond // offline after 3 missed: 600 ms
	var uris []string
	for i := range 3 {
		uri := blackhole(t)
		uris = append(uris, uri)
		startFakeTURNAgent(t, f, fmt.Sprintf("dead%d", i+1), uri)
	}
	for i := range 3 {
		name := fmt.Sprintf("dead%d", i+1)
		testenv.Eventually(t, 2*time.Second, name+" online", func() bool { s, ok := f.server(name); return ok && s.Online })
	}
	mgr := &turn.Manager{Path: filepath.Join(t.TempDir(), "turn-stun-servers.xml"), Secret: turnSecret,
		Restarter: &systemdtest.Restarter{}, Log: slog.New(slog.DiscardHandler),
		Probe: func(ctx context.Context, u turn.URI, s string) turn.Result {
			return turn.Probe(ctx, u, s, turn.WithTimeout(2*time.Second)) // each probe outlasts 3 intervals
		}}
	n := newNode(t, "bbb1")
	n.start(t, f, Config{ReportInterval: ival}, Deps{TURN: mgr})
	n.waitReporting(t, f, 2*time.Second)
	stillReporting := func() { t.Helper(); n.stillReporting(t, f, ival, "its TURN servers were dead") }
	testenv.Eventually(t, 15*time.Second, "every blackholed server probed and failed", func() bool {
		stillReporting()
		st := n.agent.Status().TURN
		if st == nil || len(st.Probes) != len(uris) {
			return false
		}
		for _, p := range st.Probes {
			if p.OK || p.Error == "" {
				return false
			}
		}
		return true
	})
	// And the loop goes on: several more reports, online throughout.
	first := n.agent.Status().LastReportAt
	testenv.Eventually(t, 5*time.Second, "five more reports", func() bool {
		stillReporting()
		return n.agent.Status().LastReportAt.Sub(first) >= 5*ival
	})
	if st := n.agent.Status().TURN; st.LastError == "" {
		t.Fatalf("no working TURN server, yet no error in the status: %+v", st)
	}
}
