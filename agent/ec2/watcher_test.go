package ec2

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// manualTicker is a ticker the test drives: each send on c is one tick.
type manualTicker struct {
	c     chan time.Time
	every time.Duration
}

func newManualTicker() *manualTicker { return &manualTicker{c: make(chan time.Time)} }

func (m *manualTicker) option() Option {
	return WithTicker(func(every time.Duration) (<-chan time.Time, func()) {
		m.every = every
		return m.c, func() {}
	})
}

func testLogger(t *testing.T) Option {
	return WithLogger(slog.New(slog.NewTextHandler(t.Output(), nil)))
}

// TestWatcherPollsEmulatedIMDS: the watcher reads the target lifecycle state
// through Metadata from the IMDSv2 emulation and sees InService turn into
// Terminated.
func TestWatcherPollsEmulatedIMDS(t *testing.T) {
	emu, m := emulatedIMDS(t)
	w := NewLifecycleWatcher(m, 0, testLogger(t))
	ctx := context.Background()

	if state, terminated, err := w.Poll(ctx); err != nil || terminated || state != StateInService {
		t.Fatalf("Poll: %q %v %v, want InService", state, terminated, err)
	}
	emu.Set("autoscaling/target-lifecycle-state", "Standby")
	if state, terminated, err := w.Poll(ctx); err != nil || terminated || state != "Standby" {
		t.Fatalf("Poll: %q %v %v, want Standby", state, terminated, err)
	}
	emu.Set("autoscaling/target-lifecycle-state", StateTerminated)
	if state, terminated, err := w.Poll(ctx); err != nil || !terminated || state != StateTerminated {
		t.Fatalf("Poll: %q %v %v, want Terminated", state, terminated, err)
	}
	emu.Delete("autoscaling/target-lifecycle-state")
	if _, terminated, err := w.Poll(ctx); !errors.Is(err, ErrNotFound) || terminated {
		t.Fatalf("Poll outside a group: %v %v", terminated, err)
	}
}

// scripted answers the states in order, then the last one for ever.
type scripted struct {
	mu     sync.Mutex
	states []string
	errs   []error
	reads  int
}

func (s *scripted) LifecycleState(context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := min(s.reads, len(s.states)-1)
	s.reads++
	return s.states[i], s.errs[i]
}

func TestWatcherRunUntilTerminated(t *testing.T) {
	src := &scripted{
		states: []string{StateInService, "", StateInService, StateTerminated},
		errs:   []error{nil, errors.New("IMDS hiccup"), nil, nil},
	}
	ticker := newManualTicker()
	w := NewLifecycleWatcher(src, 7*time.Second, ticker.option(), testLogger(t))
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background()) }()

	// Poll 1 happens at once; each tick is taken only after the previous
	// poll, so three ticks mean polls 2, 3 and 4.
	for range 3 {
		ticker.c <- time.Time{}
	}
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if src.reads != 4 {
		t.Errorf("reads: %d, want 4", src.reads)
	}
	if ticker.every != 7*time.Second {
		t.Errorf("ticker interval %v, want 7s", ticker.every)
	}
}

func TestWatcherRunCanceled(t *testing.T) {
	src := &scripted{states: []string{StateInService}, errs: []error{nil}}
	ticker := newManualTicker()
	w := NewLifecycleWatcher(src, 0, ticker.option(), testLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	ticker.c <- time.Time{}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run after cancel: %v", err)
	}
	if ticker.every != DefaultPollInterval {
		t.Errorf("default interval %v, want %v", ticker.every, DefaultPollInterval)
	}
}
