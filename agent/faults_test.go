package agent

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/agent/host"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
	"github.com/bbb-agent/bbb-agent/registrar"
)

// TestBalancerTroubles: a balancer that answers 500, garbage or 401, or not
// at all, leaves the agent running, measuring and retrying; when it is back
// the node registers. Nothing crashes, and a drain meanwhile does not hang.
func TestBalancerTroubles(t *testing.T) {
	f := newFleet(t)
	target, _ := url.Parse(f.lbURL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var mode atomic.Value
	mode.Store("500")
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch mode.Load().(string) {
		case "500":
			http.Error(w, "internal error", http.StatusInternalServerError)
		case "garbage":
			w.Write([]byte("<html>this is not json</html>"))
		case "401":
			http.Error(w, `{"error":"missing or wrong agent token","code":"unauthorized"}`, http.StatusUnauthorized)
		default:
			proxy.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(front.Close)

	n := newNode(t, "bbb1")
	reg, err := registrar.NewBalancer(front.URL, agentToken)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := bbb.NewClient(n.http.URL, n.secret)
	a, err := New(Config{Node: n.name, ServerURL: n.http.URL, Secret: n.secret, ReportInterval: interval, Logger: slog.New(slog.DiscardHandler)},
		Deps{Registrar: reg, BBB: c})
	if err != nil {
		t.Fatal(err)
	}
	// Short backoff so the test sees several tries.
	a.backoff = registrar.Backoff{Min: 5 * time.Millisecond, Max: 20 * time.Millisecond, Rand: func() float64 { return 1 }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(cancel)

	for _, m := range []string{"401", "500", "garbage"} {
		mode.Store(m)
		testenv.Eventually(t, time.Second, "the error of mode "+m+" in status", func() bool {
			st := a.Status()
			return st.State == Registering && !st.Registered && st.LastError != "" && st.BBBHealthy
		})
	}
	// The agent keeps its own figures while the balancer is away.
	if _, err := c.Create(ctx, bbb.CreateRequest{MeetingID: "local", Name: "Local"}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Second, "local figures", func() bool { return a.Status().Load.Meetings == 1 })

	mode.Store("ok")
	testenv.Eventually(t, 3*time.Second, "registered once the balancer is back", func() bool {
		s, ok := f.server(n.name)
		return ok && s.Online && a.Status().State == Ready
	})
	if st := a.Status(); st.LastError != "" {
		t.Fatalf("error kept after recovery: %q", st.LastError)
	}

	// The balancer goes away during a drain: the drain ends (with an error
	// about deregistration) instead of hanging past its deadline.
	c.End(ctx, "local", "")
	mode.Store("500")
	if err := a.Drain(ctx, SourceSignal); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "deregistration failed") {
			t.Fatalf("Run = %v, want a deregistration error", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("drain hung with the balancer down: %+v", a.Status())
	}
}

// TestNeverRegisteredDrain: a node that never reached its balancer has
// nothing to take back: a drain ends at once.
func TestNeverRegisteredDrain(t *testing.T) {
	n := newNode(t, "bbb1")
	reg, _ := registrar.NewBalancer("http://127.0.0.1:1", agentToken)
	c, _ := bbb.NewClient(n.http.URL, n.secret)
	a, err := New(Config{Node: n.name, ServerURL: n.http.URL, Secret: n.secret, ReportInterval: interval, Logger: slog.New(slog.DiscardHandler)},
		Deps{Registrar: reg, BBB: c, Host: func(context.Context) (host.Sample, error) { return host.Sample{}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	testenv.Eventually(t, time.Second, "a failed registration", func() bool { return a.Status().LastError != "" })
	if err := a.Drain(ctx, SourceSignal); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("drain of an unregistered node did not end")
	}
}
