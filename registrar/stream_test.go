package registrar

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/agentapi"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// front is an HTTP reverse proxy before a balancer that counts the
// requests it passes by method and path; strip makes it drop the upgrade
// headers, as a proxy not set up for upgrades does.
type front struct {
	url   string
	mu    sync.Mutex
	calls map[string]int // "POST /agent/v1/report": n
}

func newFront(t *testing.T, target string, strip bool) *front {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	f := &front{calls: map[string]int{}}
	proxy := httputil.NewSingleHostReverseProxy(u)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.calls[r.Method+" "+r.URL.Path]++
		f.mu.Unlock()
		if strip {
			r.Header.Del("Upgrade")
			r.Header.Del("Connection")
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	f.url = ts.URL
	return f
}

func (f *front) count(call string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[call]
}

// metric is a series without labels of the balancer's /metrics.
func (l lb) metric(t *testing.T, name string) float64 {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, l.url+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", name)
	return 0
}

const (
	streamCall = "GET " + agentapi.PathReportStream
	postReport = "POST " + agentapi.PathReport
)

// Reports go over one stream, through a proxy that passes upgrades: one
// upgrade, no POST; the answers are the POST's (an operator's cordon); a
// deregistered node's stream closes.
func TestReportStream(t *testing.T) {
	l := newLB(t)
	f := newFront(t, l.url, false)
	b, err := NewBalancer(f.url, agentToken, WithCredentialFile(t.TempDir()+"/node-credential"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := b.Register(ctx, l.registration("bbb1")); err != nil {
		t.Fatal(err)
	}
	for seq := int64(1); seq <= 5; seq++ {
		reply, err := b.Report(ctx, Report{Seq: seq, Load: fleet.Load{Meetings: 1, BBBHealthy: true}})
		if err != nil || reply.State != fleet.Enabled {
			t.Fatalf("report %d: %v %v", seq, reply, err)
		}
	}
	if f.count(streamCall) != 1 || f.count(postReport) != 0 {
		t.Errorf("calls %v; want one upgrade and no POST of a report", f.calls)
	}
	if got := l.metric(t, "bbb_balancer_report_streams"); got != 1 {
		t.Errorf("%v open streams, want 1", got)
	}
	if got := b.ReportTransport(); got != "stream" {
		t.Errorf("ReportTransport %q, want stream", got)
	}
	if got := l.metric(t, "bbb_balancer_reports_total"); got != 5 {
		t.Errorf("the balancer counted %v reports, want 5", got)
	}
	l.setState(t, "bbb1", fleet.Cordoned)
	if reply, err := b.Report(ctx, Report{Seq: 6, Load: fleet.Load{Meetings: 1, BBBHealthy: true}}); err != nil || reply.State != fleet.Cordoned {
		t.Errorf("after the operator's cordon: %v %v, want cordoned", reply, err)
	}
	if err := b.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, "the deregistered node's stream to close", func() bool {
		return l.metric(t, "bbb_balancer_report_streams") == 0
	})
}

// A balancer that serves HTTPS itself takes the stream over TLS.
func TestReportStreamOverTLS(t *testing.T) {
	l := newLB(t)
	ts := httptest.NewUnstartedServer(l.srv.Handler())
	ts.StartTLS()
	t.Cleanup(ts.Close)
	tr := NewTransport()
	tr.TLSClientConfig = ts.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	defer tr.CloseIdleConnections()
	b, err := NewBalancer(ts.URL, agentToken, WithHTTPClient(&http.Client{Transport: tr}))
	if err != nil {
		t.Fatal(err)
	}
	defer b.stream.close() // hijacked: ts.Close leaves it open
	ctx := t.Context()
	if _, err := b.Register(ctx, l.registration("bbb1")); err != nil {
		t.Fatal(err)
	}
	for seq := int64(1); seq <= 3; seq++ {
		if _, err := b.Report(ctx, Report{Seq: seq, Load: fleet.Load{BBBHealthy: true}}); err != nil {
			t.Fatalf("report %d: %v", seq, err)
		}
	}
	if got := b.ReportTransport(); got != "stream" {
		t.Errorf("reports go by %q over TLS, want the stream", got)
	}
	if got := l.metric(t, "bbb_balancer_report_streams"); got != 1 {
		t.Errorf("%v streams open, want 1", got)
	}
}

// A proxy that drops the upgrade headers: the balancer refuses the
// upgrade, every report goes by POST, and the upgrade is tried again only
// after streamRetryAfterRefusal of them.
func TestReportStreamRefused(t *testing.T) {
	l := newLB(t)
	f := newFront(t, l.url, true)
	b, err := NewBalancer(f.url, agentToken)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := b.Register(ctx, l.registration("bbb1")); err != nil {
		t.Fatal(err)
	}
	for seq := int64(1); seq <= streamRetryAfterRefusal+2; seq++ {
		if _, err := b.Report(ctx, Report{Seq: seq, Load: fleet.Load{BBBHealthy: true}}); err != nil {
			t.Fatalf("report %d: %v", seq, err)
		}
	}
	if f.count(streamCall) != 2 || f.count(postReport) != streamRetryAfterRefusal+2 {
		t.Errorf("calls %v; want 2 upgrades refused and every report by POST", f.calls)
	}
	if got := b.ReportTransport(); !strings.Contains(got, "POST: ") || !strings.Contains(got, "HTTP 426") ||
		!strings.Contains(got, "tried again in 120 reports") {
		t.Errorf("ReportTransport %q, want POST and why", got)
	}
	// Turned off: no upgrade at all.
	off, err := NewBalancer(f.url, agentToken, WithReportStream(false))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := off.Register(ctx, l.registration("bbb1")); err != nil { // the same node, as a restarted agent
		t.Fatal(err)
	}
	if _, err := off.Report(ctx, Report{Seq: 1, Load: fleet.Load{BBBHealthy: true}}); err != nil {
		t.Fatal(err)
	}
	if f.count(streamCall) != 2 {
		t.Errorf("WithReportStream(false) asked for an upgrade: %v", f.calls)
	}
}

// tcpProxy passes TCP connections to target and can cut them all, as a
// restarted balancer or a broken network does.
type tcpProxy struct {
	addr     string
	mu       sync.Mutex
	conns    []net.Conn
	accepted int
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{addr: ln.Addr().String()}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.accepted++
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	return p
}

func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// A stream cut between reports: the next report goes by POST at once, no
// error and nothing lost; the stream is opened again after
// streamRetryAfterFailure reports.
func TestReportStreamCut(t *testing.T) {
	l := newLB(t)
	u, _ := url.Parse(l.url)
	p := newTCPProxy(t, u.Host)
	b, err := NewBalancer("http://"+p.addr, agentToken, WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := b.Register(ctx, l.registration("bbb1")); err != nil {
		t.Fatal(err)
	}
	report := func(seq int64) {
		t.Helper()
		if _, err := b.Report(ctx, Report{Seq: seq, Load: fleet.Load{BBBHealthy: true}}); err != nil {
			t.Fatalf("report %d: %v", seq, err)
		}
	}
	report(1)
	testenv.Eventually(t, 5*time.Second, "the stream", func() bool { return l.metric(t, "bbb_balancer_report_streams") == 1 })
	p.cut()
	testenv.Eventually(t, 5*time.Second, "the balancer to see the stream cut", func() bool {
		return l.metric(t, "bbb_balancer_report_streams") == 0
	})
	seq := int64(2)
	for ; seq <= 2+streamRetryAfterFailure; seq++ {
		report(seq) // the first finds the stream cut and goes by POST; then POST
	}
	if got := l.metric(t, "bbb_balancer_reports_total"); got != float64(seq-1) {
		t.Errorf("the balancer counted %v reports, want %d", got, seq-1)
	}
	if got := l.metric(t, "bbb_balancer_report_streams"); got != 0 {
		t.Errorf("%v streams open while the agent waits to try again", got)
	}
	if got := b.ReportTransport(); !strings.Contains(got, "the report stream broke") {
		t.Errorf("ReportTransport %q, want why reports go by POST", got)
	}
	report(seq)
	if got := l.metric(t, "bbb_balancer_report_streams"); got != 1 {
		t.Errorf("%v streams open after the wait, want 1", got)
	}
}

// A balancer that does not answer the upgrade, or takes the stream and then
// answers nothing: the report fails within the request timeout, without a
// POST that would wait as long again, and the next one goes by POST.
func TestReportStreamHangs(t *testing.T) {
	for _, tt := range []struct {
		name    string
		upgrade func(w http.ResponseWriter, done <-chan struct{})
		message string
	}{
		{"the upgrade", func(http.ResponseWriter, <-chan struct{}) {}, "no answer to the report stream's upgrade within 100ms"},
		{"the stream", func(w http.ResponseWriter, done <-chan struct{}) {
			conn, rw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + agentapi.ReportStreamProtocol + "\r\n\r\n")
			_ = rw.Flush()
			<-done
		}, "no answer within 100ms"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var posts atomic.Int32
			done := make(chan struct{})
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Path {
				case agentapi.PathRegister:
					_, _ = io.WriteString(w, `{"node_id":"n1","state":"enabled"}`)
				case agentapi.PathReportStream:
					tt.upgrade(w, done)
					select { // hangs until the test ends, or the agent gives up
					case <-done:
					case <-r.Context().Done():
					}
				case agentapi.PathReport:
					posts.Add(1)
					_, _ = io.WriteString(w, `{"state":"enabled","turn_servers":[]}`)
				}
			}))
			defer ts.Close()
			defer close(done)
			b, err := NewBalancer(ts.URL, agentToken, WithTimeout(100*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if _, err := b.Register(ctx, Registration{Node: "bbb1", URL: "https://bbb1.example.com", Secret: nodeSecret}); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err = b.Report(ctx, Report{Seq: 1})
			if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), tt.message) {
				t.Fatalf("report: %v, want %q", err, tt.message)
			}
			if posts.Load() != 0 || time.Since(start) > 5*time.Second {
				t.Errorf("%d POSTs after the report timed out, %s", posts.Load(), time.Since(start))
			}
			if _, err := b.Report(ctx, Report{Seq: 2}); err != nil || posts.Load() != 1 {
				t.Errorf("the next report: %v, %d POSTs; want it by POST", err, posts.Load())
			}
			if got := b.ReportTransport(); !strings.Contains(got, "tried again in 119 reports") {
				t.Errorf("ReportTransport %q: want the stream tried again only after about ten minutes", got)
			}
		})
	}
}

// readmeNginx is the README's nginx example for a balancer at addr, on
// plain HTTP at testenv.NginxListen (the certificate lines left out).
func readmeNginx(t *testing.T, addr string) string {
	t.Helper()
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(raw), "**nginx instead.**")
	if ok {
		_, rest, ok = strings.Cut(rest, "```nginx\n")
	}
	conf, _, found := strings.Cut(rest, "```")
	if !ok || !found {
		t.Fatal("README.md: no nginx example after **nginx instead.**")
	}
	var out []string
	for _, line := range strings.Split(conf, "\n") {
		switch trimmed := strings.TrimSpace(line); {
		case strings.HasPrefix(trimmed, "ssl_certificate"):
			continue
		case strings.HasPrefix(trimmed, "listen 443 ssl;"):
			line = "    listen " + testenv.NginxListen + ";"
		case strings.HasPrefix(trimmed, "server 127.0.0.1:8090;"):
			line = "    server " + addr + ";"
		}
		out = append(out, line)
	}
	conf = strings.Join(out, "\n")
	for _, want := range []string{testenv.NginxListen, "server " + addr, "location = " + agentapi.PathReportStream} {
		if !strings.Contains(conf, want) {
			t.Fatalf("README.md's nginx example changed: no %q in\n%s", want, conf)
		}
	}
	return conf
}

// Behind nginx as the README sets it up, reports go over a stream; behind
// an nginx without the stream's location (its Connection "" drops the
// upgrade), by POST, and none fails.
func TestReportStreamThroughNginx(t *testing.T) {
	for _, tt := range []struct {
		name    string
		edit    func(conf string) string
		streams float64
	}{
		{"as the README sets it up", func(conf string) string { return conf }, 1},
		{"without the stream's location", func(conf string) string {
			start := strings.Index(conf, "    location = "+agentapi.PathReportStream)
			end := start + strings.Index(conf[start:], "    }\n") + len("    }\n")
			return conf[:start] + conf[end:]
		}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := newLB(t)
			u, _ := url.Parse(l.url)
			conf := tt.edit(readmeNginx(t, u.Host))
			ngx := testenv.Nginx(t, conf)
			b, err := NewBalancer("http://"+ngx.Addr, agentToken, WithCredentialFile(t.TempDir()+"/node-credential"))
			if err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()
			if _, err := b.Register(ctx, l.registration("bbb1")); err != nil {
				t.Fatal(err)
			}
			for seq := int64(1); seq <= 3; seq++ {
				reply, err := b.Report(ctx, Report{Seq: seq, Load: fleet.Load{BBBHealthy: true}})
				if err != nil || reply.State != fleet.Enabled {
					t.Fatalf("report %d: %v %v", seq, reply, err)
				}
			}
			if got := l.metric(t, "bbb_balancer_report_streams"); got != tt.streams {
				t.Errorf("%v streams open, want %v", got, tt.streams)
			}
			if got := l.metric(t, "bbb_balancer_reports_total"); got != 3 {
				t.Errorf("the balancer counted %v reports, want 3", got)
			}
			b.stream.close() // before nginx stops: a graceful stop waits for it
		})
	}
}
