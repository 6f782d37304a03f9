package simtest

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/bbb/sim"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// callTimeout bounds each call of the clients.
const callTimeout = 5 * time.Second

// Node is a running bbb-sim; Ready (from the Proc) is its server URL.
type Node struct {
	*testenv.Proc
	URL     string // the server URL, for --bbb-url
	Secret  string
	Client  *bbb.Client
	Control *sim.ControlClient
}

// Start starts bbb-sim with o (testenv.StartSim) and makes its clients.
// o.Secret must be set: the clients sign with it.
func Start(t testing.TB, o testenv.SimOpts) *Node {
	t.Helper()
	if o.Secret == "" {
		t.Fatal("simtest: SimOpts.Secret is empty; the clients need the secret")
	}
	p := testenv.StartSim(t, o)
	c, err := bbb.NewClient(p.Ready, o.Secret, bbb.WithHTTPClient(&http.Client{Timeout: callTimeout}))
	if err != nil {
		t.Fatalf("simtest: %v", err)
	}
	return &Node{Proc: p, URL: p.Ready, Secret: o.Secret, Client: c,
		Control: sim.NewControlClient(p.Ready, &http.Client{Timeout: callTimeout})}
}

// Meetings is the simulator's getMeetings answer; it fails the test if the
// call fails.
func (n *Node) Meetings(t testing.TB) []bbb.Meeting {
	t.Helper()
	return call(t, n, "getMeetings", n.Client.GetMeetings)
}

// State is the simulator's /sim/state, ended meetings included; it fails
// the test if the call fails.
func (n *Node) State(t testing.TB) sim.State {
	t.Helper()
	return call(t, n, "/sim/state", n.Control.State)
}

// call makes one call of the clients, bounded by callTimeout, and fails the
// test if it fails.
func call[T any](t testing.TB, n *Node, what string, f func(context.Context) (T, error)) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	defer cancel()
	v, err := f(ctx)
	if err != nil {
		t.Fatalf("%s %s: %v", n.Name, what, err)
	}
	return v
}
