package systemdtest

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/bbb-agent/bbb-agent/systemd"
)

var (
	_ systemd.Inhibitor     = (*Inhibitor)(nil)
	_ systemd.Notifier      = (*Notifier)(nil)
	_ systemd.UnitRestarter = (*Restarter)(nil)
)

// Inhibitor is a fake logind. Its zero value is not usable; use NewInhibitor.
type Inhibitor struct {
	signals chan bool

	mu             sync.Mutex
	lockErr        error
	delayMax       time.Duration
	taken          int
	released       int
	doubleReleases int
	who, why       string
}

// NewInhibitor returns a fake logind whose InhibitDelayMax is delayMax.
func NewInhibitor(delayMax time.Duration) *Inhibitor {
	return &Inhibitor{signals: make(chan bool), delayMax: delayMax}
}

// Lock takes a lock unless FailLocks set an error.
func (f *Inhibitor) Lock(ctx context.Context, who, why string) (func() error, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lockErr != nil {
		return nil, f.lockErr
	}
	f.taken++
	f.who, f.why = who, why
	var once bool
	return func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		if once {
			f.doubleReleases++
			return errors.New("systemdtest: lock released twice")
		}
		once = true
		f.released++
		return nil
	}, nil
}

// Shutdowns delivers what PrepareForShutdown sends until ctx ends or
// Disconnect is called.
func (f *Inhibitor) Shutdowns(ctx context.Context) (<-chan bool, error) {
	out := make(chan bool)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case starting, ok := <-f.signals:
				if !ok {
					return
				}
				select {
				case out <- starting:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// InhibitDelayMax returns the delayMax given to NewInhibitor.
func (f *Inhibitor) InhibitDelayMax(context.Context) (time.Duration, error) {
	return f.delayMax, nil
}

// PrepareForShutdown sends logind's signal: true when a shutdown starts,
// false when it is cancelled. It blocks until a Shutdowns subscriber takes it.
func (f *Inhibitor) PrepareForShutdown(starting bool) { f.signals <- starting }

// Disconnect ends every Shutdowns subscription, as a lost bus connection
// does. Call it once.
func (f *Inhibitor) Disconnect() { close(f.signals) }

// FailLocks makes Lock fail with err from now on; nil lets it succeed again.
func (f *Inhibitor) FailLocks(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lockErr = err
}

// Counts reports how many locks were taken and released, and how many
// times a release function was called again after it had released.
func (f *Inhibitor) Counts() (taken, released, doubleReleases int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.taken, f.released, f.doubleReleases
}

// Held reports the number of locks taken and not released.
func (f *Inhibitor) Held() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.taken - f.released
}

// LastLock reports the who and why of the last lock taken.
func (f *Inhibitor) LastLock() (who, why string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.who, f.why
}

// Notifier records notifications as the sd_notify assignments SdNotifier
// would send ("READY=1", "STATUS=...", "STOPPING=1", "WATCHDOG=1"). The zero
// value is ready to use.
type Notifier struct {
	mu   sync.Mutex
	sent []string
	Err  error // returned by every call when set before use
}

// Ready records READY=1.
func (n *Notifier) Ready() error { return n.record("READY=1") }

// Status records STATUS=msg.
func (n *Notifier) Status(msg string) error { return n.record("STATUS=" + msg) }

// Stopping records STOPPING=1.
func (n *Notifier) Stopping() error { return n.record("STOPPING=1") }

// Watchdog records WATCHDOG=1.
func (n *Notifier) Watchdog() error { return n.record("WATCHDOG=1") }

func (n *Notifier) record(s string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.sent = append(n.sent, s)
	return n.Err
}

// Sent returns what was recorded, oldest first.
func (n *Notifier) Sent() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.sent)
}

// Restarter records unit restarts. The zero value is ready to use.
type Restarter struct {
	mu        sync.Mutex
	restarted []string
	Err       error // returned by RestartUnit when set before use
}

// RestartUnit records name and returns Err.
func (r *Restarter) RestartUnit(ctx context.Context, name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.restarted = append(r.restarted, name)
	return r.Err
}

// Restarted returns the units restarted, oldest first.
func (r *Restarter) Restarted() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.restarted)
}
