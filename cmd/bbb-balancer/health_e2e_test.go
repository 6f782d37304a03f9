package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/balancer/adminapi"
	"github.com/bbb-agent/bbb-agent/balancer/balancertest"
	"github.com/bbb-agent/bbb-agent/bbb/sim"
	"github.com/bbb-agent/bbb-agent/bbb/sim/simtest"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// The broken-node matrix of issue 14: a node whose BBB has the wrong secret,
// is dead, has a certificate nobody trusts, hangs or answers HTTP errors,
// added by an operator (polled) or run by an agent, shows why in status,
// status --json, the balancer's log (once per change), the agent's log and
// the metrics.

const (
	healthNodeTimeout = time.Second // bounds the balancer's poll of a hanging node
	healthMissed      = 15          // --missed-reports: a hanging agent's 2.5 s cycle, a 1.2 s poll round (with the hanging node) stay well online
	healthAgentEvery  = 500 * time.Millisecond
)

// healthFleet is a balancer that trusts one certificate (SSL_CERT_FILE), the
// binaries, and the agents' and simulators' processes.
type healthFleet struct {
	t                       *testing.T
	e                       *e2e
	bal                     *testenv.Proc
	agentBin, simBin        string
	trustedFile, trustedKey string
	env                     []string
}

func newHealthFleet(t *testing.T) *healthFleet {
	bins := testenv.Build(t, testenv.BalancerPkg, testenv.SimPkg, testenv.AgentPkg)
	dir := t.TempDir()
	f := &healthFleet{t: t, agentBin: bins[2], simBin: bins[1],
		trustedFile: filepath.Join(dir, "trusted.pem"), trustedKey: filepath.Join(dir, "trusted.key")}
	writeSelfSigned(t, f.trustedFile, f.trustedKey, "trusted BBB")
	// Both the balancer and the agents trust that certificate and no other.
	f.env = []string{"SSL_CERT_FILE=" + f.trustedFile, "SSL_CERT_DIR=" + dir}
	f.bal = testenv.StartBalancer(t, testenv.BalancerOpts{Bin: bins[0], Secret: lbSecret, AgentToken: agentToken, AdminToken: adminToken,
		Env: f.env, Args: []string{"--poll-interval", pollInterval.String(), "--node-timeout", healthNodeTimeout.String(),
			"--missed-reports", strconv.Itoa(healthMissed)}})
	f.e = &e2e{t: t, bin: bins[0], url: f.bal.Ready}
	return f
}

func (f *healthFleet) sim(name, secret string, port int) *simtest.Node {
	f.t.Helper()
	return simtest.Start(f.t, testenv.SimOpts{Name: name, Bin: f.simBin, Secret: secret, Listen: "127.0.0.1:" + strconv.Itoa(port)})
}

func (f *healthFleet) agent(node, bbbURL, secret string) *testenv.Proc {
	f.t.Helper()
	dir, err := os.MkdirTemp("", "bbbhealth") // a short path: the admin socket's name is bounded
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { os.RemoveAll(dir) })
	return testenv.StartAgent(f.t, testenv.AgentOpts{Name: "bbb-agent " + node, Bin: f.agentBin, Env: f.env, Args: []string{
		"run", "--admin-socket", filepath.Join(dir, "a.sock"), "--state-dir", filepath.Join(dir, "state"),
		"--balancer-url", f.bal.Ready, "--agent-token", agentToken, "--bbb-url", bbbURL, "--bbb-secret", secret,
		"--node-name", node, "--report-interval", healthAgentEvery.String(), "--logind=false", "--recordings-dir", f.t.TempDir()}})
}

// metrics is the balancer's /metrics.
func (f *healthFleet) metrics() string { return httpGetToken(f.t, f.bal.Ready+"/metrics", adminToken) }

// logLines counts the balancer's log lines with msg about node that say attr.
func logLines(out, msg, node, attr string) int {
	n := 0
	for _, l := range regexp.MustCompile(`(?m)msg="`+regexp.QuoteMeta(msg)+`" node=`+regexp.QuoteMeta(node)+`( .*)?$`).FindAllString(out, -1) {
		if strings.Contains(l, attr) {
			n++
		}
	}
	return n
}

// healthCase is one broken node: how to make it, and what status must say.
type healthCase struct {
	name   string
	polled bool
	// class is the reason label of bbb_balancer_node_healthy and the
	// reason_class of status --json; reason the start of the reason.
	class, reason string
	// agentLog is what the agent logs, once, for it ("" for none: a dead agent).
	agentLog string
	// node is the node's name, set up by the case's start.
	node string
	// start makes a polled node's broken BBB (returns its URL and the secret
	// to add it with), or an agent node (returns its name).
	start func(f *healthFleet, c *healthCase) (string, string)
	// breakIt breaks an agent node's BBB once it is registered and healthy.
	breakIt func()
	// fix mends the node again; nil: it stays broken.
	fix func()
	// agentProc is the agent's process.
	agentProc *testenv.Proc
}

func TestBrokenNodeMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs binaries")
	}
	f := newHealthFleet(t)
	ctx := context.Background()
	must := func(_ sim.Faults, err error) {
		if err != nil {
			t.Errorf("simulator control: %v", err)
		}
	}

	// The polled nodes' broken servers.
	closedPort := strconv.Itoa(testenv.FreePort(t)) // nothing listens there
	hang := hangListener(t)
	untrusted := httptest.NewUnstartedServer(http.NotFoundHandler())
	untrusted.Config.ErrorLog = quietLog // the balancer's refused handshakes
	untrusted.StartTLS()                 // httptest's own certificate: trusted by nobody
	t.Cleanup(untrusted.Close)
	badGateway := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream down", http.StatusBadGateway)
	}))
	t.Cleanup(badGateway.Close)
	const simSecret = "health-sim-secret-0123456789"
	var wrongSecretSim *simtest.Node

	cases := []*healthCase{
		{name: "polled wrong secret", polled: true, class: "checksum_error", reason: "checksumError: wrong secret",
			start: func(f *healthFleet, c *healthCase) (string, string) {
				wrongSecretSim = f.sim("bbb-sim polled", simSecret, testenv.FreePort(t))
				return wrongSecretSim.URL, "not-the-secret-0123456789"
			},
			fix: func() { f.e.ok("servers", "add", wrongSecretSim.URL, simSecret) }},
		{name: "polled dead URL", polled: true, class: "not_answering", reason: "BBB not answering: dial tcp 127.0.0.1:" + closedPort + ": connect: connection refused",
			start: func(*healthFleet, *healthCase) (string, string) { return "http://127.0.0.1:" + closedPort, simSecret }},
		{name: "polled TLS error", polled: true, class: "tls_error", reason: "TLS: x509: certificate signed by unknown authority",
			start: func(*healthFleet, *healthCase) (string, string) { return untrusted.URL, simSecret }},
		{name: "polled hanging", polled: true, class: "hanging", reason: "BBB hanging: no answer in 1s",
			start: func(*healthFleet, *healthCase) (string, string) { return "http://" + hang.addr, simSecret }},
		{name: "polled BBB too old", polled: true, class: "version", reason: "version: BBB 2.3.18 takes only sha1 checksums, not sha256",
			start: func(f *healthFleet, c *healthCase) (string, string) {
				s := simtest.Start(t, testenv.SimOpts{Name: "bbb-sim 2.3", Bin: f.simBin, Secret: simSecret,
					Args: []string{"--bbb-version", "2.3.18", "--checksum-algorithms", "sha1"}})
				return s.URL, simSecret
			}},
		{name: "polled HTTP error", polled: true, class: "http_error", reason: "HTTP error: 502 Bad Gateway",
			start: func(*healthFleet, *healthCase) (string, string) { return badGateway.URL, simSecret }},

		{name: "agent wrong secret", class: "checksum_error", reason: "checksumError: wrong secret",
			agentLog: `level=ERROR msg="the node's BBB refuses the agent's checksum`,
			start: func(f *healthFleet, c *healthCase) (string, string) {
				port := testenv.FreePort(t)
				s := f.sim("bbb-sim "+c.node, simSecret, port)
				c.breakIt = func() {
					// bbb-conf --setsecret behind the agent's back.
					s.Stop(t, 5*time.Second)
					f.sim("bbb-sim "+c.node+" new secret", "another-secret-0123456789", port)
				}
				return s.URL, simSecret
			}},
		{name: "agent dead BBB", class: "not_answering", reason: "BBB not answering: dial tcp 127.0.0.1:",
			agentLog: `level=WARN msg="the node's BBB fails`,
			start: func(f *healthFleet, c *healthCase) (string, string) {
				s := f.sim("bbb-sim "+c.node, simSecret, testenv.FreePort(t))
				c.breakIt = func() { s.Stop(t, 5*time.Second) }
				return s.URL, simSecret
			}},
		{name: "agent TLS error", class: "tls_error", reason: "TLS: x509: certificate signed by unknown authority",
			agentLog: `level=WARN msg="the node's BBB fails`,
			start: func(f *healthFleet, c *healthCase) (string, string) {
				s := f.sim("bbb-sim "+c.node, simSecret, testenv.FreePort(t))
				p := newSwitchTLS(t, s.URL, f.trustedFile, f.trustedKey)
				c.breakIt = p.untrust
				c.fix = p.trust
				return p.url, simSecret
			}},
		{name: "agent hanging", class: "hanging", reason: "BBB hanging: no answer in 2s",
			agentLog: `level=WARN msg="the node's BBB fails`,
			start: func(f *healthFleet, c *healthCase) (string, string) {
				s := f.sim("bbb-sim "+c.node, simSecret, testenv.FreePort(t))
				c.breakIt = func() { must(s.Control.SetAnswering(ctx, sim.AnswerHang)) }
				c.fix = func() { must(s.Control.SetAnswering(ctx, sim.AnswerNormal)) }
				return s.URL, simSecret
			}},
		{name: "agent HTTP error", class: "http_error", reason: "HTTP error: 500 Internal Server Error",
			agentLog: `level=WARN msg="the node's BBB fails`,
			start: func(f *healthFleet, c *healthCase) (string, string) {
				s := f.sim("bbb-sim "+c.node, simSecret, testenv.FreePort(t))
				c.breakIt = func() { must(s.Control.SetFailureRate(ctx, 1, sim.FailHTTP500)) }
				c.fix = func() { must(s.Control.SetFailureRate(ctx, 0, sim.FailHTTP500)) }
				return s.URL, simSecret
			}},
		{name: "agent gone", class: "offline", reason: fmt.Sprintf("offline: no report for over %s (%d report intervals)", healthMissed*healthAgentEvery, healthMissed),
			start: func(f *healthFleet, c *healthCase) (string, string) {
				s := f.sim("bbb-sim "+c.node, simSecret, testenv.FreePort(t))
				c.breakIt = func() { c.agentProc.Kill() }
				return s.URL, simSecret
			}},
	}

	// Agent nodes register while their BBB is fine; polled nodes are added
	// broken, and servers add says so at once.
	for i, c := range cases {
		if c.polled {
			u, secret := c.start(f, c)
			r := f.e.cli("servers", "add", u, secret)
			if r.Code != 0 {
				t.Fatalf("%s: servers add: %s", c.name, r)
			}
			host, err := url.Parse(u)
			if err != nil {
				t.Fatal(err)
			}
			c.node = host.Host
			if !strings.Contains(r.Stderr, "is not healthy: "+c.reason) {
				t.Errorf("%s: servers add does not warn with the reason %q:\n%s", c.name, c.reason, r)
			}
			continue
		}
		c.node = fmt.Sprintf("agent-%d", i)
		u, secret := c.start(f, c)
		c.agentProc = f.agent(c.node, u, secret)
	}
	testenv.Eventually(t, 3*settle, "the agent nodes to be online and healthy", func() bool {
		healthy := 0
		for _, s := range f.e.status() {
			if strings.HasPrefix(s.Name, "agent-") && s.Online && s.Healthy && s.Reason == "" {
				healthy++
			}
		}
		return healthy == len(cases)-6
	})
	for _, c := range cases {
		want := fmt.Sprintf(`bbb_balancer_node_healthy{node=%q,reason=""} 1`, c.node)
		if m := f.metrics(); !c.polled && !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, grepLines(m, "bbb_balancer_node_healthy"))
		}
	}
	for _, c := range cases {
		if c.breakIt != nil {
			c.breakIt()
		}
	}

	// Every node shows its reason in status --json.
	testenv.Eventually(t, 3*settle, "every broken node to show its reason", func() bool {
		servers := f.e.status()
		for _, c := range cases {
			s, ok := findName(servers, c.node)
			if !ok || s.Healthy || !strings.HasPrefix(s.Reason, c.reason) || s.ReasonClass != c.class {
				return false
			}
		}
		return true
	})
	// Let polls and reports go round several times: the log must not repeat.
	reports := func() int {
		m := regexp.MustCompile(`(?m)^bbb_balancer_reports_total (\d+)`).FindStringSubmatch(f.metrics())
		if m == nil {
			t.Fatal("no bbb_balancer_reports_total in the metrics")
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	polls, rep := hang.accepted.Load(), reports()
	testenv.Eventually(t, 3*settle, "more polls and reports", func() bool {
		return hang.accepted.Load() >= polls+4 && reports() >= rep+20
	})

	servers := f.e.status()
	table := f.e.ok("status")
	metrics := f.metrics()
	out := f.bal.Output()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, ok := findName(servers, c.node)
			if !ok {
				t.Fatalf("%s is not in status --json", c.node)
			}
			if s.Healthy || !strings.HasPrefix(s.Reason, c.reason) || s.ReasonClass != c.class {
				t.Errorf("status --json: healthy %v, reason %q (%s), want %q... (%s)", s.Healthy, s.Reason, s.ReasonClass, c.reason, c.class)
			}
			if strings.Contains(s.Reason, "checksum=") || strings.Contains(s.Reason, simSecret) {
				t.Errorf("the reason carries a checksum or secret: %q", s.Reason)
			}
			row := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(c.node) + ` .*$`).FindString(table)
			if !strings.HasSuffix(row, s.Reason) {
				t.Errorf("the status table's row of %s does not end with its reason %q:\n%s", c.node, s.Reason, table)
			}
			want := fmt.Sprintf(`bbb_balancer_node_healthy{node=%q,reason=%q} 0`, c.node, c.class)
			if !strings.Contains(metrics, want) {
				t.Errorf("metrics lack %s:\n%s", want, grepLines(metrics, "bbb_balancer_node_healthy"))
			}
			// A WARN with the reason, once (a restarted BBB may have said
			// another reason on its way, once too).
			if n := logLines(out, "node unhealthy", c.node, `reason="`+s.Reason+`"`); n != 1 {
				t.Errorf("the balancer logged %s unhealthy with reason %q %d times, want once:\n%s", c.node, s.Reason, n, grepLines(out, "node="+c.node))
			}
			if c.agentLog != "" {
				if n := strings.Count(c.agentProc.Output(), c.agentLog); n != 1 {
					t.Errorf("the agent logged %q %d times, want once:\n%s", c.agentLog, n, c.agentProc.Output())
				}
			}
		})
	}

	// Mended nodes are healthy again, and the logs say it once.
	for _, c := range cases {
		if c.fix != nil {
			c.fix()
		}
	}
	testenv.Eventually(t, 3*settle, "mended nodes to be healthy", func() bool {
		servers := f.e.status()
		for _, c := range cases {
			if s, ok := findName(servers, c.node); c.fix != nil && (!ok || !s.Healthy || s.Reason != "") {
				return false
			}
		}
		return true
	})
	rep = reports()
	testenv.Eventually(t, 3*settle, "more reports", func() bool { return reports() >= rep+20 })
	out = f.bal.Output()
	for _, c := range cases {
		if c.fix == nil {
			continue
		}
		if n := logLines(out, "node healthy again", c.node, ""); n != 1 {
			t.Errorf("%s: the balancer logged %s healthy again %d times, want once:\n%s", c.name, c.node, n, grepLines(out, "node="+c.node))
		}
		if c.agentProc != nil {
			if n := strings.Count(c.agentProc.Output(), `msg="the node's BBB answers again"`); n != 1 {
				t.Errorf("%s: the agent logged its BBB answering again %d times, want once:\n%s", c.name, n, c.agentProc.Output())
			}
		}
	}
	m := f.metrics()
	for _, c := range cases {
		if want := fmt.Sprintf(`bbb_balancer_node_healthy{node=%q,reason=""} 1`, c.node); c.fix != nil && !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, grepLines(m, "bbb_balancer_node_healthy"))
		}
	}
	// A polled node shows its BBB version, as an agent's does.
	if s, _ := findName(f.e.status(), cases[0].node); s.BBBVersion != sim.DefaultBBBVersion {
		t.Errorf("the mended polled node shows BBB version %q, want %s", s.BBBVersion, sim.DefaultBBBVersion)
	}
}

func findName(servers []adminapi.Server, name string) (adminapi.Server, bool) {
	return balancertest.Find(servers, func(s adminapi.Server) bool { return s.Name == name })
}

// grepLines is the lines of s that contain sub, for failure messages.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// quietLog drops the test servers' log of handshakes the clients refuse,
// which are the point.
var quietLog = log.New(io.Discard, "", 0)

// hang is a listener that accepts connections and never answers.
type hang struct {
	addr     string
	accepted atomic.Int64
}

func hangListener(t *testing.T) *hang {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hang{addr: l.Addr().String()}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			h.accepted.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	return h
}

// switchTLS is an HTTPS reverse proxy to a simulator whose certificate can
// change from a trusted one to one nobody trusts (and back); a change closes
// the open connections, so clients shake hands again.
type switchTLS struct {
	url      string
	mu       sync.Mutex
	trusted  tls.Certificate
	stranger tls.Certificate
	current  *tls.Certificate
	conns    map[net.Conn]struct{}
}

func newSwitchTLS(t *testing.T, target, certFile, keyFile string) *switchTLS {
	trusted, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeSelfSigned(t, filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem"), "stranger")
	stranger, err := tls.LoadX509KeyPair(filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem"))
	if err != nil {
		t.Fatal(err)
	}
	to, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &switchTLS{trusted: trusted, stranger: stranger, conns: map[net.Conn]struct{}{}}
	p.current = &p.trusted
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.url = "https://" + l.Addr().String()
	srv := &http.Server{Handler: httputil.NewSingleHostReverseProxy(to), ErrorLog: quietLog, ConnState: func(c net.Conn, st http.ConnState) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if st == http.StateClosed || st == http.StateHijacked {
			delete(p.conns, c)
		} else {
			p.conns[c] = struct{}{}
		}
	}}
	cfg := &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.current, nil
	}}
	go srv.Serve(tls.NewListener(l, cfg))
	t.Cleanup(func() { srv.Close() })
	return p
}

func (p *switchTLS) use(c *tls.Certificate) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.current = c
	for c := range p.conns {
		c.Close()
	}
}

func (p *switchTLS) untrust() { p.use(&p.stranger) }
func (p *switchTLS) trust()   { p.use(&p.trusted) }
