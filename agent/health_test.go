package agent

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/bbb/sim"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
	"github.com/bbb-agent/bbb-agent/registrar"
)

// TestBBBFailureReason: when the node's BBB fails, the agent sends why with
// its reports (the balancer shows it) and logs it once, not per report; when
// BBB answers again it says so once.
func TestBBBFailureReason(t *testing.T) {
	f := newFleet(t)
	n := newNode(t, "bbb1")
	reg, err := registrar.NewBalancer(f.lbURL, agentToken)
	if err != nil {
		t.Fatal(err)
	}
	// The node's BBB, counting the agent's calls.
	var calls atomic.Int64
	counted := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		n.sim.ServeHTTP(w, r)
	}))
	t.Cleanup(counted.Close)
	c, _ := bbb.NewClient(counted.URL, n.secret)
	var logs testenv.Buffer
	a, err := New(Config{Node: n.name, ServerURL: counted.URL, Secret: n.secret, ReportInterval: interval,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}, Deps{Registrar: reg, BBB: c})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	testenv.Eventually(t, 3*time.Second, "the node registered and healthy", func() bool {
		s, ok := f.server(n.name)
		return ok && s.Online && s.Healthy
	})
	// cycles waits for the agent to ask its BBB a few more times.
	cycles := func(more int64) {
		t.Helper()
		start := calls.Load()
		testenv.Eventually(t, 3*time.Second, "more report cycles", func() bool { return calls.Load() >= start+more })
	}

	if err := n.sim.SetFailureRate(1, sim.FailHTTP500); err != nil {
		t.Fatal(err)
	}
	const reason = "HTTP error: 500 Internal Server Error"
	testenv.Eventually(t, 3*time.Second, "the balancer to show the reason", func() bool {
		s, _ := f.server(n.name)
		return !s.Healthy && s.Reason == reason && s.ReasonClass == "http_error" && s.Online
	})
	cycles(5)
	if got := strings.Count(logs.String(), `level=WARN msg="the node's BBB fails`); got != 1 {
		t.Errorf("the agent warned %d times, want once:\n%s", got, logs.String())
	}
	if !strings.Contains(logs.String(), `reason="`+reason+`"`) {
		t.Errorf("the warning does not give the reason:\n%s", logs.String())
	}

	if err := n.sim.SetFailureRate(0, sim.FailHTTP500); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 3*time.Second, "the balancer to show the node healthy", func() bool {
		s, _ := f.server(n.name)
		return s.Healthy && s.Reason == ""
	})
	cycles(5)
	if got := strings.Count(logs.String(), `level=INFO msg="the node's BBB answers again"`); got != 1 {
		t.Errorf("the agent said BBB answers again %d times, want once:\n%s", got, logs.String())
	}
}
