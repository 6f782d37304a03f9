package systemd

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
)

// Inhibitor is the part of logind the agent needs to hold a shutdown back
// while it drains.
type Inhibitor interface {
	// Lock takes a shutdown delay lock. Calling release lets a pending
	// shutdown proceed; release is safe to call more than once.
	Lock(ctx context.Context, who, why string) (release func() error, err error)
	// Shutdowns delivers logind's PrepareForShutdown signals until ctx ends:
	// true when a shutdown starts, false when it is cancelled. The channel
	// is closed when ctx ends or the connection to logind is lost.
	Shutdowns(ctx context.Context) (<-chan bool, error)
	// InhibitDelayMax is how long logind honours a delay lock
	// (InhibitDelayMaxSec= in logind.conf).
	InhibitDelayMax(ctx context.Context) (time.Duration, error)
}

// ErrLogindUnreachable says logind cannot be asked for anything: no system
// bus (containers, CI) or no logind on it. The agent goes on without the
// delay lock.
var ErrLogindUnreachable = errors.New("logind not reachable over D-Bus")

const (
	logindName    = "org.freedesktop.login1"
	logindPath    = dbus.ObjectPath("/org/freedesktop/login1")
	logindManager = "org.freedesktop.login1.Manager"

	// logindProbeTimeout bounds NewLogind's check that logind answers.
	logindProbeTimeout = 10 * time.Second
)

// Logind is the Inhibitor of the running system, over its own private
// connection to the system bus.
//
// It talks to logind with godbus directly rather than through go-systemd's
// login1 package, whose calls take no context, whose subscriptions cannot be
// ended, and which cannot read the manager's properties.
type Logind struct {
	conn    *dbus.Conn
	manager dbus.BusObject
}

var _ Inhibitor = (*Logind)(nil)

// NewLogind connects to the system bus and checks that logind answers. Its
// error wraps ErrLogindUnreachable when either is missing. Close the
// connection when done.
func NewLogind() (*Logind, error) {
	conn, err := dbus.ConnectSystemBus()
	if err != nil {
		return nil, unreachable(err)
	}
	l := &Logind{conn: conn, manager: conn.Object(logindName, logindPath)}
	ctx, cancel := context.WithTimeout(context.Background(), logindProbeTimeout)
	defer cancel()
	if err := l.manager.CallWithContext(ctx, "org.freedesktop.DBus.Peer.Ping", 0).Err; err != nil {
		conn.Close()
		return nil, unreachable(err)
	}
	return l, nil
}

func unreachable(err error) error {
	return fmt.Errorf("%w (%w): shutdown drain via inhibitor lock disabled", ErrLogindUnreachable, err)
}

// Close closes the connection to the bus. Locks taken stay held until
// released (or until the process exits).
func (l *Logind) Close() error { return l.conn.Close() }

// Lock takes a "shutdown" inhibitor lock in "delay" mode. logind hands back
// a file descriptor; closing it releases the lock.
func (l *Logind) Lock(ctx context.Context, who, why string) (func() error, error) {
	var fd dbus.UnixFD
	if err := l.manager.CallWithContext(ctx, logindManager+".Inhibit", 0, "shutdown", who, why, "delay").Store(&fd); err != nil {
		return nil, fmt.Errorf("logind: take shutdown delay lock: %w", err)
	}
	f := os.NewFile(uintptr(fd), "logind-inhibit")
	return sync.OnceValue(func() error {
		if err := f.Close(); err != nil {
			return fmt.Errorf("logind: release shutdown delay lock: %w", err)
		}
		return nil
	}), nil
}

// Shutdowns subscribes to the manager's PrepareForShutdown signal.
func (l *Logind) Shutdowns(ctx context.Context) (<-chan bool, error) {
	match := []dbus.MatchOption{
		dbus.WithMatchSender(logindName),
		dbus.WithMatchObjectPath(logindPath),
		dbus.WithMatchInterface(logindManager),
		dbus.WithMatchMember("PrepareForShutdown"),
	}
	if err := l.conn.AddMatchSignalContext(ctx, match...); err != nil {
		return nil, fmt.Errorf("logind: subscribe to PrepareForShutdown: %w", err)
	}
	signals := make(chan *dbus.Signal, 8)
	l.conn.Signal(signals)
	out := make(chan bool)
	go func() {
		defer close(out)
		defer l.conn.RemoveSignal(signals)
		// Best effort: fails only when the connection is gone, and with it the match.
		defer l.conn.RemoveMatchSignal(match...)
		for {
			select {
			case <-ctx.Done():
				return
			case s, ok := <-signals:
				if !ok { // the connection closed
					return
				}
				starting, ok := prepareForShutdown(s)
				if !ok {
					continue
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

// prepareForShutdown reads a PrepareForShutdown signal. The connection
// delivers every signal it receives, so anything else, or a malformed one,
// is not ok.
func prepareForShutdown(s *dbus.Signal) (starting, ok bool) {
	if s.Path != logindPath || s.Name != logindManager+".PrepareForShutdown" {
		return false, false
	}
	err := dbus.Store(s.Body, &starting)
	return starting, err == nil
}

// InhibitDelayMax reads the manager's InhibitDelayMaxUSec property.
// "infinity" comes back as the longest time.Duration.
func (l *Logind) InhibitDelayMax(ctx context.Context) (time.Duration, error) {
	var v dbus.Variant
	if err := l.manager.CallWithContext(ctx, "org.freedesktop.DBus.Properties.Get", 0, logindManager, "InhibitDelayMaxUSec").Store(&v); err != nil {
		return 0, fmt.Errorf("logind: read InhibitDelayMaxUSec: %w", err)
	}
	usec, ok := v.Value().(uint64)
	if !ok {
		return 0, fmt.Errorf("logind: InhibitDelayMaxUSec is %s, want uint64", v.Signature())
	}
	if usec > math.MaxInt64/uint64(time.Microsecond) {
		return time.Duration(math.MaxInt64), nil
	}
	return time.Duration(usec) * time.Microsecond, nil
}

// drainCleanup is the time the agent needs after the drain deadline to
// deregister and remove its DNS records before it releases the lock.
const drainCleanup = 5 * time.Minute

// logindDropIn is where packaging installs logind-bbb-agent.conf.
const logindDropIn = "/etc/systemd/logind.conf.d/bbb-agent.conf"

// CheckInhibitDelay returns a warning for the operator when logind would
// end the delay lock (after delayMax, its InhibitDelayMaxSec) before the agent
// is done with a drain that runs to drainDeadline plus drainCleanup, and ""
// when the lock lasts long enough.
func CheckInhibitDelay(delayMax, drainDeadline time.Duration) string {
	need := drainDeadline + drainCleanup
	if delayMax >= need {
		return ""
	}
	secs := int64((need + time.Second - 1) / time.Second)
	return fmt.Sprintf("logind holds a shutdown for at most %s (InhibitDelayMaxSec), less than the drain deadline %s plus %s to deregister: "+
		"a shutdown would end running meetings early; install the drop-in %s with \"[Login]\" and \"InhibitDelayMaxSec=%d\" (or more), then restart systemd-logind",
		delayMax, drainDeadline, drainCleanup, logindDropIn, secs)
}
