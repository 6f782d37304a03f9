package systemd_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/systemd"
	"github.com/bbb-agent/bbb-agent/systemd/systemdtest"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil)).With("node", "bbb-test")
}

// startGuard starts a guard over a fake logind; cancel stops it.
func startGuard(t *testing.T) (g *systemd.ShutdownGuard, inh *systemdtest.Inhibitor, cancel context.CancelFunc) {
	t.Helper()
	inh = systemdtest.NewInhibitor(5 * time.Second)
	g = systemd.NewShutdownGuard(inh, "bbb-agent", "draining meetings before shutdown", testLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return g, inh, cancel
}

// nextEvent returns the guard's next event; ok is false once Events is closed.
func nextEvent(t *testing.T, g *systemd.ShutdownGuard) (starting, ok bool) {
	t.Helper()
	select {
	case starting, ok = <-g.Events():
		return starting, ok
	case <-time.After(5 * time.Second):
		t.Fatal("no event from the guard")
		return false, false
	}
}

func wantEvent(t *testing.T, g *systemd.ShutdownGuard, want bool) {
	t.Helper()
	if got, ok := nextEvent(t, g); !ok || got != want {
		t.Fatalf("event %v (open %v), want %v", got, ok, want)
	}
}

func wantClosed(t *testing.T, g *systemd.ShutdownGuard) {
	t.Helper()
	if got, ok := nextEvent(t, g); ok {
		t.Fatalf("event %v, want Events closed", got)
	}
}

func wantCounts(t *testing.T, inh *systemdtest.Inhibitor, taken, released int) {
	t.Helper()
	gotTaken, gotReleased, double := inh.Counts()
	if gotTaken != taken || gotReleased != released || double != 0 {
		t.Fatalf("locks taken %d, released %d, released twice %d; want %d, %d, 0", gotTaken, gotReleased, double, taken, released)
	}
}

func TestShutdownGuardShutdownReleaseCancel(t *testing.T) {
	g, inh, cancel := startGuard(t)

	wantCounts(t, inh, 1, 0)
	if who, why := inh.LastLock(); who != "bbb-agent" || why != "draining meetings before shutdown" {
		t.Fatalf("lock taken by %q for %q", who, why)
	}

	inh.PrepareForShutdown(true)
	wantEvent(t, g, true)
	wantCounts(t, inh, 1, 0) // held while the agent drains

	if err := g.Release(); err != nil { // drained
		t.Fatal(err)
	}
	wantCounts(t, inh, 1, 1)
	if err := g.Release(); err != nil { // a second Release does nothing
		t.Fatal(err)
	}
	wantCounts(t, inh, 1, 1)

	inh.PrepareForShutdown(false)
	wantEvent(t, g, false)
	wantCounts(t, inh, 2, 1) // taken again before the event was sent

	if err := g.Reacquire(context.Background()); err != nil { // already held
		t.Fatal(err)
	}
	wantCounts(t, inh, 2, 1)

	cancel()
	wantClosed(t, g)
	wantCounts(t, inh, 2, 2) // nobody drains any more: the shutdown may proceed
	if err := g.Reacquire(context.Background()); err == nil {
		t.Fatal("Reacquire after the guard stopped took a lock")
	}
	wantCounts(t, inh, 2, 2)
}

func TestShutdownGuardCancelDuringDrainKeepsLock(t *testing.T) {
	g, inh, _ := startGuard(t)
	inh.PrepareForShutdown(true)
	wantEvent(t, g, true)
	inh.PrepareForShutdown(false)
	wantEvent(t, g, false)
	wantCounts(t, inh, 1, 0)
	if inh.Held() != 1 {
		t.Fatalf("%d locks held, want 1", inh.Held())
	}
}

func TestShutdownGuardRetakeFailsAfterCancel(t *testing.T) {
	g, inh, _ := startGuard(t)
	inh.PrepareForShutdown(true)
	wantEvent(t, g, true)
	if err := g.Release(); err != nil {
		t.Fatal(err)
	}

	inh.FailLocks(errors.New("logind busy"))
	inh.PrepareForShutdown(false)
	wantEvent(t, g, false) // the agent hears of the cancel all the same
	if inh.Held() != 0 {
		t.Fatalf("%d locks held, want 0", inh.Held())
	}
	if err := g.Reacquire(context.Background()); err == nil {
		t.Fatal("Reacquire succeeded while logind fails")
	}

	inh.FailLocks(nil)
	if err := g.Reacquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, inh, 2, 1)
}

func TestShutdownGuardStartFails(t *testing.T) {
	inh := systemdtest.NewInhibitor(5 * time.Second)
	unreachable := fmt.Errorf("%w (no bus): shutdown drain via inhibitor lock disabled", systemd.ErrLogindUnreachable)
	inh.FailLocks(unreachable)
	g := systemd.NewShutdownGuard(inh, "bbb-agent", "drain", testLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	if err := g.Start(ctx); !errors.Is(err, systemd.ErrLogindUnreachable) {
		t.Fatalf("Start: %v, want ErrLogindUnreachable", err)
	}
	wantClosed(t, g)
	inh.FailLocks(nil)
	if err := g.Reacquire(ctx); err == nil {
		t.Fatal("Reacquire after a failed Start took a lock")
	}
	if err := g.Start(ctx); err == nil {
		t.Fatal("second Start succeeded")
	}
	wantCounts(t, inh, 0, 0)
}

func TestShutdownGuardLostSubscription(t *testing.T) {
	g, inh, _ := startGuard(t)
	inh.Disconnect()
	wantClosed(t, g)
	wantCounts(t, inh, 1, 1)
}
