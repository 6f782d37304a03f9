package registrar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/balancer"
	"github.com/bbb-agent/bbb-agent/balancer/adminapi"
	"github.com/bbb-agent/bbb-agent/balancer/balancertest"
	"github.com/bbb-agent/bbb-agent/balancer/records"
	"github.com/bbb-agent/bbb-agent/bbb/sim"
	"github.com/bbb-agent/bbb-agent/fleet"
)

const (
	agentToken = "agent-token-0123456789"
	adminToken = "admin-token-0123456789"
	nodeSecret = "node-secret-0123456789abcdef"
)

// lb is a real bbb-balancer on SQLite with one simulated BBB node beside it.
type lb struct {
	srv   *balancer.Server
	url   string
	admin *adminapi.Client
	node  string // the simulated node's server URL
}

func newLB(t *testing.T) lb {
	t.Helper()
	b := balancertest.Start(t, balancertest.Options{Config: balancer.Config{
		Secrets: []string{"balancer-secret-0123456789"}, AgentToken: agentToken, AdminToken: adminToken}})
	node := httptest.NewServer(sim.New(sim.Config{Secret: nodeSecret, Seed: 1}))
	t.Cleanup(node.Close)
	return lb{srv: b.Server, url: b.URL, admin: b.Admin, node: node.URL}
}

func (l lb) registrar(t *testing.T, opts ...Option) *Balancer {
	t.Helper()
	b, err := NewBalancer(l.url, agentToken, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (l lb) registration(name string) Registration {
	return Registration{Node: name, URL: l.node, Secret: nodeSecret, Role: fleet.RoleBBB,
		Tags: []string{"eu"}, AgentVersion: "test", ReportInterval: 5 * time.Second}
}

// servers lists the balancer's nodes through its admin API.
func (l lb) servers(t *testing.T) []adminapi.Server {
	t.Helper()
	s, err := l.admin.Servers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (l lb) setState(t *testing.T, node string, st fleet.AdminState) {
	t.Helper()
	if _, err := l.admin.SetState(context.Background(), node, adminapi.SetStateRequest{State: st}); err != nil {
		t.Fatal(err)
	}
}

func TestBalancerRegisterTwiceIsOneNode(t *testing.T) {
	l := newLB(t)
	ctx := context.Background()
	// The same registrar twice (a retry), then a fresh one (a reboot).
	b := l.registrar(t)
	for i, r := range []*Balancer{b, b, l.registrar(t)} {
		st, err := r.Register(ctx, l.registration("bbb1"))
		if err != nil {
			t.Fatalf("register %d: %v", i+1, err)
		}
		if st != fleet.Enabled {
			t.Errorf("register %d: state %q, want enabled", i+1, st)
		}
	}
	servers := l.servers(t)
	if len(servers) != 1 {
		t.Fatalf("balancer has %d nodes after registering one node three times, want 1: %+v", len(servers), servers)
	}
	if got := servers[0]; got.Name != "bbb1" || got.State != fleet.Enabled || got.Source != records.SourceAgent {
		t.Errorf("node = %+v, want bbb1, enabled, source agent", got)
	}
	if b.Kind() != "balancer" {
		t.Errorf("Kind() = %q", b.Kind())
	}
}

func TestBalancerReportReplyFollowsOperator(t *testing.T) {
	l := newLB(t)
	ctx := context.Background()
	b := l.registrar(t)
	if _, err := b.Register(ctx, l.registration("bbb1")); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name     string
		operator fleet.AdminState // set through the admin API first, unless empty
		meetings int
		want     fleet.AdminState
	}{
		{"fresh node", "", 2, fleet.Enabled},
		{"operator cordons", fleet.Cordoned, 2, fleet.Cordoned},
		{"cordoned node keeps its meetings", "", 1, fleet.Cordoned},
		{"cordoned node runs empty: the balancer disables it", "", 0, fleet.Disabled},
		{"operator enables", fleet.Enabled, 0, fleet.Enabled},
		{"operator disables", fleet.Disabled, 3, fleet.Disabled},
	}
	for i, s := range steps {
		if s.operator != "" {
			l.setState(t, "bbb1", s.operator)
		}
		reply, err := b.Report(ctx, Report{Seq: int64(i + 1), Load: fleet.Load{Meetings: s.meetings, BBBHealthy: true}})
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if reply.State != s.want {
			t.Errorf("%s: reply state %q, want %q", s.name, reply.State, s.want)
		}
	}
}

func TestBalancerDrainCycle(t *testing.T) {
	l := newLB(t)
	ctx := context.Background()
	b := l.registrar(t)
	if _, err := b.Register(ctx, l.registration("bbb1")); err != nil {
		t.Fatal(err)
	}
	state := func() fleet.AdminState {
		t.Helper()
		servers := l.servers(t)
		if len(servers) != 1 {
			t.Fatalf("balancer has %d nodes, want 1", len(servers))
		}
		return servers[0].State
	}
	if err := b.Cordon(ctx); err != nil {
		t.Fatal(err)
	}
	if got := state(); got != fleet.Cordoned {
		t.Fatalf("after Cordon: %q, want cordoned", got)
	}
	// A reboot mid-drain registers again: the node stays cordoned.
	st, err := l.registrar(t).Register(ctx, l.registration("bbb1"))
	if err != nil || st != fleet.Cordoned {
		t.Fatalf("register mid-drain = %q, %v; want cordoned", st, err)
	}
	if err := b.Enable(ctx); err != nil {
		t.Fatal(err)
	}
	if got := state(); got != fleet.Enabled {
		t.Fatalf("after Enable: %q, want enabled", got)
	}
	if err := b.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(l.servers(t)); n != 0 {
		t.Fatalf("balancer has %d nodes after Deregister, want 0", n)
	}
	if err := b.Deregister(ctx); err != nil {
		t.Errorf("Deregister of a node already gone: %v, want success", err)
	}
	_, err = b.Report(ctx, Report{Seq: 1})
	if !errors.Is(err, ErrNotRegistered) {
		t.Errorf("Report after Deregister: %v, want ErrNotRegistered", err)
	}
	for name, call := range map[string]func(context.Context) error{"Cordon": b.Cordon, "Enable": b.Enable} {
		if err := call(ctx); !errors.Is(err, ErrNotRegistered) {
			t.Errorf("%s after Deregister: %v, want ErrNotRegistered", name, err)
		}
	}
	// Registering again brings the node back.
	if _, err := b.Register(ctx, l.registration("bbb1")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Report(ctx, Report{Seq: 2}); err != nil {
		t.Errorf("Report after registering again: %v", err)
	}
}

func TestBalancerRefusals(t *testing.T) {
	l := newLB(t)
	ctx := context.Background()
	if _, err := l.registrar(t).Register(ctx, l.registration("bbb1")); err != nil {
		t.Fatal(err)
	}
	noSecret := l.registration("bbb2")
	noSecret.Secret = ""
	sameURL := l.registration("bbb3") // bbb1's URL under another agent's name
	tests := []struct {
		name    string
		token   string
		call    func(*Balancer) error
		want    error
		message string // in the error text
	}{
		{"wrong token", "wrong-token", func(b *Balancer) error {
			_, err := b.Register(ctx, l.registration("bbb1"))
			return err
		}, ErrUnauthorized, "missing or wrong credential"},
		{"report before register", agentToken, func(b *Balancer) error {
			_, err := b.Report(ctx, Report{})
			return err
		}, ErrNotRegistered, "register first"},
		{"deregister before register", agentToken, func(b *Balancer) error { return b.Deregister(ctx) }, ErrNotRegistered, "register first"},
		{"no BBB secret", agentToken, func(b *Balancer) error {
			_, err := b.Register(ctx, noSecret)
			return err
		}, ErrRejected, "BBB secret is empty"},
		{"URL of another agent's node", agentToken, func(b *Balancer) error {
			_, err := b.Register(ctx, sameURL)
			return err
		}, ErrRejected, "is already registered to node"},
		{"bad role", agentToken, func(b *Balancer) error {
			r := l.registration("bbb4")
			r.Role = "mcu"
			_, err := b.Register(ctx, r)
			return err
		}, ErrRejected, "unknown role"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := NewBalancer(l.url, tt.token)
			if err != nil {
				t.Fatal(err)
			}
			err = tt.call(b)
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.message) {
				t.Errorf("error %q does not say %q", err, tt.message)
			}
			assertNoSecrets(t, err, tt.token, nodeSecret)
		})
	}
}

// TestBalancerBrokenServer points the registrar at servers that are not a
// working bbb-balancer: every failure must be a plain error the caller
// retries, saying what happened.
func TestBalancerBrokenServer(t *testing.T) {
	arrived := make(chan struct{}, 1) // only the test that cancels uses hang(arrived)
	tests := []struct {
		name    string
		handler http.HandlerFunc
		opts    []Option
		cancel  bool   // cancel the caller's context once the request arrived
		is      error  // errors.Is must hold, if set
		message string // in the error text
	}{
		{"HTTP 500 with the agent API's error", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, `{"error":"the balancer's database did not answer; retry","code":"internal"}`)
		}, nil, false, nil, "HTTP 500: the balancer's database did not answer; retry"},
		{"HTTP 502 from a proxy", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			_, _ = io.WriteString(w, "<html>Bad Gateway "+agentToken+"</html>")
		}, nil, false, nil, "HTTP 502 Bad Gateway (text/html, "},
		{"garbage with HTTP 200", func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, "hello "+nodeSecret)
		}, nil, false, nil, "the answer is not the agent API's JSON"},
		{"JSON without a state", func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, `{"node_id":"x"}`)
		}, nil, false, nil, "no valid node state"},
		{"not a bbb-balancer", http.NotFound, nil, false, nil, "no agent API here"},
		{"redirect", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://lb.example.com/agent/v1/register?token="+agentToken, http.StatusMovedPermanently)
		}, nil, false, nil, `redirect to "https://lb.example.com/agent/v1/register"`},
		{"oversized answer", func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write(make([]byte, maxAnswerBytes+1))
		}, nil, false, nil, "larger than"},
		{"hangs past the request timeout", hang(nil), []Option{WithTimeout(20 * time.Millisecond)}, false,
			context.DeadlineExceeded, "no answer within 20ms"},
		{"hangs until the caller gives up", hang(arrived), nil, true, context.Canceled, "register"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := httptest.NewServer(tt.handler)
			defer ts.Close()
			b, err := NewBalancer(ts.URL, agentToken, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancel {
				go func() {
					<-arrived
					cancel()
				}()
			}
			_, err = b.Register(ctx, Registration{Node: "bbb1", URL: "https://bbb1.example.com", Secret: nodeSecret})
			if err == nil {
				t.Fatal("Register succeeded")
			}
			for _, sentinel := range []error{ErrUnauthorized, ErrRejected, ErrNotRegistered} {
				if errors.Is(err, sentinel) {
					t.Errorf("error %v wraps %v; want a plain error to retry", err, sentinel)
				}
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v, want it to wrap %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.message) {
				t.Errorf("error %q does not say %q", err, tt.message)
			}
			assertNoSecrets(t, err, agentToken, nodeSecret)
		})
	}
}

// hang answers nothing until the client goes away, and tells when a
// request arrived. It reads the body first: only then does the server notice
// a client that hangs up.
func hang(arrived chan<- struct{}) http.HandlerFunc {
	return func(_ http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case arrived <- struct{}{}:
		default:
		}
		<-r.Context().Done()
	}
}

func TestNewBalancerChecksItsArguments(t *testing.T) {
	tests := []struct {
		url, token string
		opts       []Option
		message    string
	}{
		{"lb.example.com", agentToken, nil, "want http(s)://host"},
		{"ftp://lb.example.com", agentToken, nil, "want http(s)://host"},
		{"https://user:hunter2@lb.example.com:bad", agentToken, nil, "want http(s)://host"},
		{"https://lb.example.com", "", nil, "no agent token"},
		{"https://lb.example.com", agentToken, []Option{WithTimeout(0)}, "want a positive duration"},
		{"https://lb.example.com", agentToken, []Option{WithChecksumAlgorithm("md5")}, "unknown checksum algorithm"},
	}
	for _, tt := range tests {
		_, err := NewBalancer(tt.url, tt.token, tt.opts...)
		if err == nil || !strings.Contains(err.Error(), tt.message) {
			t.Errorf("NewBalancer(%q): %v, want an error saying %q", tt.url, err, tt.message)
			continue
		}
		assertNoSecrets(t, err, "hunter2")
	}
}

func assertNoSecrets(t *testing.T, err error, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("error %q contains a secret", err)
		}
	}
}

func ExampleBalancer() {
	b, err := NewBalancer("https://lb.example.com", "agent-token")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(b.Kind())
	// Output: balancer
}

// TestBalancerSpeaksHTTP1: an agent's calls reach an HTTPS balancer that
// offers HTTP/2 over HTTP/1.1 (NewTransport, the default client's); the
// default transport, the control, would have negotiated HTTP/2.
func TestBalancerSpeaksHTTP1(t *testing.T) {
	for _, tt := range []struct {
		name      string
		transport *http.Transport
		want      string
	}{
		{"NewTransport", NewTransport(), "HTTP/1.1"},
		{"http.DefaultTransport (control)", http.DefaultTransport.(*http.Transport).Clone(), "HTTP/2.0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := newLB(t)
			target, err := url.Parse(l.url)
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			protos := map[string]int{}
			front := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				protos[r.Proto]++
				mu.Unlock()
				httputil.NewSingleHostReverseProxy(target).ServeHTTP(w, r)
			}))
			front.EnableHTTP2 = true
			front.StartTLS()
			t.Cleanup(front.Close)
			tt.transport.TLSClientConfig = front.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
			defer tt.transport.CloseIdleConnections()

			r, err := NewBalancer(front.URL, agentToken, WithHTTPClient(&http.Client{Transport: tt.transport}))
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if _, err := r.Register(ctx, l.registration("bbb1")); err != nil {
				t.Fatal(err)
			}
			if _, err := r.Report(ctx, Report{Seq: 1, Load: fleet.Load{BBBHealthy: true}}); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(protos) != 1 || protos[tt.want] != 2 {
				t.Errorf("requests by protocol %v; want 2 of %s", protos, tt.want)
			}
		})
	}
	if o, err := buildOptions(nil); err != nil || o.client.Transport.(*http.Transport).Protocols.HTTP2() {
		t.Errorf("the default client's transport speaks HTTP/2 (%v)", err)
	}
}
