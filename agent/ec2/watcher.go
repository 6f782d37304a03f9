package ec2

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// DefaultPollInterval is how often a LifecycleWatcher asks for the target
// lifecycle state: well inside the shortest hook heartbeat timeout (30 s).
const DefaultPollInterval = 5 * time.Second

// StateSource is where a LifecycleWatcher reads the target lifecycle state;
// *Metadata is one.
type StateSource interface {
	LifecycleState(ctx context.Context) (string, error)
}

// LifecycleWatcher polls the instance's Auto Scaling target lifecycle state
// and reports when it becomes Terminated: the group is scaling the instance
// in, and a lifecycle hook holds it while the agent drains.
type LifecycleWatcher struct {
	source StateSource
	every  time.Duration
	opts   options

	mu      sync.Mutex
	state   string // last state read
	failure string // last failure logged, so a lasting one is logged once
}

// NewLifecycleWatcher returns a watcher that reads source every interval
// (DefaultPollInterval when zero). WithTicker and WithLogger apply.
func NewLifecycleWatcher(source StateSource, every time.Duration, opts ...Option) *LifecycleWatcher {
	if every <= 0 {
		every = DefaultPollInterval
	}
	return &LifecycleWatcher{source: source, every: every, opts: newOptions(opts)}
}

// Poll reads the target lifecycle state once. terminated is true when it is
// Terminated. Changes of state and new kinds of failure are logged.
func (w *LifecycleWatcher) Poll(ctx context.Context) (state string, terminated bool, err error) {
	state, err = w.source.LifecycleState(ctx)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		if msg := err.Error(); msg != w.failure {
			w.failure = msg
			level := slog.LevelWarn
			if errors.Is(err, ErrNotFound) {
				level = slog.LevelInfo // not (yet) in an Auto Scaling group
			}
			w.opts.logger.Log(ctx, level, "ec2: cannot read the Auto Scaling target lifecycle state", "err", err)
		}
		return "", false, err
	}
	w.failure = ""
	if state != w.state {
		w.opts.logger.Info("ec2: Auto Scaling target lifecycle state", "state", state, "previous", w.state)
		w.state = state
	}
	return state, state == StateTerminated, nil
}

// Run polls at once and then at every tick until the state is Terminated
// (it returns nil: drain now) or ctx ends (it returns ctx's error). A failed
// poll is retried at the next tick.
func (w *LifecycleWatcher) Run(ctx context.Context) error {
	ticks, stop := w.opts.newTicker(w.every)
	defer stop()
	for {
		if _, terminated, _ := w.Poll(ctx); terminated {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ticks:
		}
	}
}
