package simtest

import (
	"testing"

	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestStart: the clients reach the started bbb-sim with its secret, and
// Meetings and State show a meeting created through them.
func TestStart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs bbb-sim")
	}
	n := Start(t, testenv.SimOpts{Name: "bbb-sim simtest", Secret: "simtest-secret-0123456789"})
	if n.URL != n.Ready || n.Secret != "simtest-secret-0123456789" {
		t.Fatalf("node %q %q, want the ready URL and the secret", n.URL, n.Secret)
	}
	res, err := n.Client.Create(t.Context(), bbb.CreateRequest{MeetingID: "m1", Name: "M1"})
	if err != nil || res.ReturnCode != bbb.ReturnSuccess {
		t.Fatalf("create: %+v, %v", res, err)
	}
	if ms := n.Meetings(t); len(ms) != 1 || ms[0].MeetingID != "m1" {
		t.Errorf("Meetings: %+v, want m1", ms)
	}
	if st := n.State(t); st.Requests[bbb.CallCreate] != 1 {
		t.Errorf("State: %d create requests, want 1", st.Requests[bbb.CallCreate])
	}
}
