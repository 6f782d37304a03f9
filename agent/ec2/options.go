package ec2

import (
	"log/slog"
	"time"
)

// Option adjusts a Metadata, a LifecycleWatcher or a Lifecycle; each option
// says which it applies to.
type Option func(*options)

type options struct {
	timeout   time.Duration
	newTicker func(time.Duration) (<-chan time.Time, func())
	logger    *slog.Logger
}

func newOptions(opts []Option) options {
	o := options{
		timeout: DefaultTimeout,
		newTicker: func(d time.Duration) (<-chan time.Time, func()) {
			t := time.NewTicker(d)
			return t.C, t.Stop
		},
		logger: slog.Default(),
	}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithTimeout sets the budget of one metadata lookup, its token request and
// retry included (Metadata; default DefaultTimeout).
func WithTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.timeout = d
		}
	}
}

// WithTicker replaces the time.Ticker that paces polling and heartbeats
// (LifecycleWatcher.Run, Lifecycle.KeepAlive): newTicker returns the tick
// channel and a stop function. Tests hand in a channel they fill themselves.
func WithTicker(newTicker func(every time.Duration) (<-chan time.Time, func())) Option {
	return func(o *options) { o.newTicker = newTicker }
}

// WithLogger sets the logger (LifecycleWatcher, Lifecycle; default
// slog.Default()). The agent passes one that carries the node name.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}
