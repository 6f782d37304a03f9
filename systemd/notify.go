package systemd

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier tells the service manager what the agent is doing.
type Notifier interface {
	// Ready says start-up is finished (READY=1).
	Ready() error
	// Status sets the one-line status systemctl status shows (STATUS=...).
	Status(msg string) error
	// Stopping says the agent is shutting down (STOPPING=1).
	Stopping() error
	// Watchdog feeds the service watchdog (WATCHDOG=1).
	Watchdog() error
}

// SdNotifier sends notifications to the socket named by $NOTIFY_SOCKET.
// When the variable is unset (not started by systemd, or not Type=notify)
// every call is a no-op that returns nil. The zero value is ready to use.
type SdNotifier struct{}

// NewNotifier returns a Notifier that talks to systemd.
func NewNotifier() *SdNotifier { return &SdNotifier{} }

// Ready sends READY=1.
func (*SdNotifier) Ready() error { return sdNotify(daemon.SdNotifyReady) }

// Status sends STATUS=msg. Line breaks in msg become spaces: the protocol
// is one assignment per line, so a line break would start another one.
func (*SdNotifier) Status(msg string) error {
	return sdNotify("STATUS=" + strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(msg))
}

// Stopping sends STOPPING=1.
func (*SdNotifier) Stopping() error { return sdNotify(daemon.SdNotifyStopping) }

// Watchdog sends WATCHDOG=1.
func (*SdNotifier) Watchdog() error { return sdNotify(daemon.SdNotifyWatchdog) }

func sdNotify(state string) error {
	if _, err := daemon.SdNotify(false, state); err != nil {
		return fmt.Errorf("systemd: notify %q: %w", state, err)
	}
	return nil
}

// WatchdogInterval says whether systemd watches this process (WatchdogSec=
// in the unit, passed as $WATCHDOG_USEC and $WATCHDOG_PID) and, if so, how
// often to ping: half the watchdog timeout, as sd_watchdog_enabled(3)
// advises. Variables meant for another process, or unreadable, count as no
// watchdog.
func WatchdogInterval() (time.Duration, bool) {
	timeout, err := daemon.SdWatchdogEnabled(false)
	if err != nil || timeout <= 0 {
		return 0, false
	}
	return timeout / 2, true
}

// RunWatchdog pings n's watchdog every interval while healthy reports true,
// until ctx ends. While healthy reports false it sends nothing, so systemd
// kills and restarts an agent whose loop is stuck. A failed ping is logged
// and the next one is tried as usual. A nil logger means slog.Default().
func RunWatchdog(ctx context.Context, n Notifier, interval time.Duration, healthy func() bool, logger *slog.Logger) {
	if logger == nil {
		logger = slog.Default()
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	// Until the agent first reports healthy there is nothing to warn about.
	withheld := true
	for {
		if ok := healthy(); ok == withheld { // health changed since the last tick
			withheld = !ok
			if withheld {
				logger.Warn("systemd watchdog: agent unhealthy, withholding pings; systemd restarts the agent if this lasts")
			} else {
				logger.Info("systemd watchdog: agent healthy, pinging")
			}
		}
		if !withheld {
			if err := n.Watchdog(); err != nil {
				logger.Warn("systemd watchdog: ping failed", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
