package agent

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
	"github.com/bbb-agent/bbb-agent/systemd"
	"github.com/bbb-agent/bbb-agent/systemd/systemdtest"
)

// TestLogindShutdown: the agent holds logind's delay lock; a shutdown that
// is cancelled cancels the drain and the lock is taken again; a shutdown
// that goes on drains, and the lock is released only once the node has left
// the fleet.
func TestLogindShutdown(t *testing.T) {
	inh := systemdtest.NewInhibitor(2 * time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	guard := systemd.NewShutdownGuard(inh, "bbb-agent", "draining meetings", slog.New(slog.DiscardHandler))
	if err := guard.Start(ctx); err != nil {
		t.Fatal(err)
	}
	f := newFleet(t)
	n := newNode(t, "bbb1")
	n.start(t, f, Config{}, Deps{Shutdown: guard})
	testenv.Eventually(t, time.Second, "online", func() bool { s, ok := f.server(n.name); return ok && s.Online })
	if inh.Held() != 1 {
		t.Fatalf("delay locks held at start: %d", inh.Held())
	}
	if _, err := f.client.Create(ctx, bbb.CreateRequest{MeetingID: "late-class", Name: "x"}); err != nil {
		t.Fatal(err)
	}

	inh.PrepareForShutdown(true)
	testenv.Eventually(t, time.Second, "draining on shutdown", func() bool { return n.agent.State() == Draining })
	testenv.Eventually(t, time.Second, "cordoned", func() bool { s, _ := f.server(n.name); return s.State == fleet.Cordoned })
	inh.PrepareForShutdown(false) // shutdown -c
	testenv.Eventually(t, time.Second, "drain cancelled", func() bool { return n.agent.State() == Ready })
	testenv.Eventually(t, time.Second, "enabled again", func() bool { s, _ := f.server(n.name); return s.State == fleet.Enabled })
	testenv.Eventually(t, time.Second, "lock taken again", func() bool { return inh.Held() == 1 })

	inh.PrepareForShutdown(true)
	testenv.Eventually(t, time.Second, "draining again", func() bool { return n.agent.State() == Draining })
	time.Sleep(3 * interval)
	if inh.Held() != 1 {
		t.Fatal("lock released while a meeting runs")
	}
	if err := f.client.End(ctx, "late-class", ""); err != nil {
		t.Fatal(err)
	}
	if err := n.exited(t, 2*interval+time.Second); err != nil {
		t.Fatal(err)
	}
	if inh.Held() != 0 {
		t.Fatalf("lock still held after the drain: %d", inh.Held())
	}
	if _, _, double := inh.Counts(); double != 0 {
		t.Fatalf("%d double releases", double)
	}
}
