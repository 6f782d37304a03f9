package systemd

import (
	"context"
	"errors"
	"log/slog"
	"sync"
)

// ShutdownGuard owns logind's shutdown delay lock for the agent: it holds
// the lock while the agent runs, passes PrepareForShutdown on as Events, lets
// the shutdown proceed once the agent's drain is done (Release), and takes
// the lock again when logind cancels the shutdown. It decides nothing about
// draining; the agent does.
type ShutdownGuard struct {
	inh      Inhibitor
	who, why string
	log      *slog.Logger
	events   chan bool

	mu      sync.Mutex
	started bool
	stopped bool
	release func() error // the held lock's; nil while none is held
}

// NewShutdownGuard returns a guard that takes its locks from inh in the
// name of who (the program) for why (shown by systemd-inhibit --list). A nil
// logger means slog.Default().
func NewShutdownGuard(inh Inhibitor, who, why string, logger *slog.Logger) *ShutdownGuard {
	if logger == nil {
		logger = slog.Default()
	}
	return &ShutdownGuard{inh: inh, who: who, why: why, log: logger, events: make(chan bool)}
}

// Start subscribes to shutdown signals and takes the delay lock, then
// watches until ctx ends. When it fails (typically ErrLogindUnreachable from
// the Inhibitor) the guard does nothing and Events is closed; the agent runs
// on without holding shutdowns back. Start is called once.
func (g *ShutdownGuard) Start(ctx context.Context) error {
	g.mu.Lock()
	if g.started {
		g.mu.Unlock()
		return errors.New("systemd: shutdown guard already started")
	}
	g.started = true
	g.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	// Subscribe first, so a shutdown that starts right after the lock is
	// taken is not missed.
	signals, err := g.inh.Shutdowns(ctx)
	if err == nil {
		err = g.Reacquire(ctx)
	}
	if err != nil {
		cancel()
		g.stop()
		close(g.events)
		return err
	}
	go g.watch(ctx, cancel, signals)
	return nil
}

// Events delivers true when a shutdown starts (drain, then Release) and
// false when logind cancels it (the lock is already taken again). It is
// closed when the guard stops: ctx ended, the subscription was lost, or
// Start failed. The guard waits for each event to be received.
func (g *ShutdownGuard) Events() <-chan bool { return g.events }

// Release lets a pending or future shutdown proceed: the agent calls it when
// its drain is done. Without a lock held it does nothing.
func (g *ShutdownGuard) Release() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.releaseLocked()
}

// Reacquire takes the delay lock unless it is held already. The guard calls
// it itself when a shutdown is cancelled; the agent may call it to retry
// after that failed.
func (g *ShutdownGuard) Reacquire(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return errors.New("systemd: shutdown guard stopped")
	}
	if g.release != nil {
		return nil
	}
	release, err := g.inh.Lock(ctx, g.who, g.why)
	if err != nil {
		return err
	}
	g.release = release
	g.log.Info("logind: shutdown delay lock taken")
	return nil
}

func (g *ShutdownGuard) watch(ctx context.Context, cancel context.CancelFunc, signals <-chan bool) {
	defer close(g.events)
	defer g.stop()
	defer cancel()
	for {
		select {
		case <-ctx.Done():
			return
		case starting, ok := <-signals:
			if !ok {
				if ctx.Err() == nil {
					g.log.Warn("logind: lost the PrepareForShutdown subscription: shutdown drain via inhibitor lock disabled")
				}
				return
			}
			if starting {
				g.log.Info("logind: shutdown starting")
			} else {
				g.log.Info("logind: shutdown cancelled")
				if err := g.Reacquire(ctx); err != nil {
					g.log.Warn("logind: taking the shutdown delay lock again", "err", err)
				}
			}
			select {
			case g.events <- starting:
			case <-ctx.Done():
				return
			}
		}
	}
}

// stop marks the guard stopped and lets any shutdown proceed: nobody is
// left to drain for it.
func (g *ShutdownGuard) stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stopped = true
	if err := g.releaseLocked(); err != nil {
		g.log.Warn("logind: releasing the shutdown delay lock", "err", err)
	}
}

func (g *ShutdownGuard) releaseLocked() error {
	if g.release == nil {
		return nil
	}
	release := g.release
	g.release = nil
	if err := release(); err != nil {
		return err
	}
	g.log.Info("logind: shutdown delay lock released")
	return nil
}
