package systemd_test

import (
	"context"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/prop"

	"github.com/bbb-agent/bbb-agent/systemd"
)

const (
	logindName    = "org.freedesktop.login1"
	logindPath    = dbus.ObjectPath("/org/freedesktop/login1")
	logindManager = "org.freedesktop.login1.Manager"
)

// fakeLogind answers for logind on a private bus (startBus): Inhibit hands
// out the write end of a pipe, as logind hands out a FIFO, so the test sees
// a lock released when its read end reaches EOF.
type fakeLogind struct {
	conn *dbus.Conn

	mu    sync.Mutex
	locks []*fakeLock
}

type fakeLock struct {
	what, who, why, mode string
	held                 *os.File // read end: EOF once every write end is closed
	sent                 *os.File // the fake's own copy of the write end
}

// startFakeLogind starts a fake logind whose InhibitDelayMaxUSec is 5s.
func startFakeLogind(t *testing.T, addr string) *fakeLogind {
	return startFakeLogindDelay(t, addr, uint64(5_000_000))
}

func startFakeLogindDelay(t *testing.T, addr string, delayMaxUSec any) *fakeLogind {
	t.Helper()
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if reply, err := conn.RequestName(logindName, dbus.NameFlagDoNotQueue); err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("own %s: %v (reply %v)", logindName, err, reply)
	}
	f := &fakeLogind{conn: conn}
	if err := conn.Export(f, logindPath, logindManager); err != nil {
		t.Fatal(err)
	}
	_, err = prop.Export(conn, logindPath, prop.Map{
		logindManager: {"InhibitDelayMaxUSec": {Value: delayMaxUSec, Emit: prop.EmitFalse}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, l := range f.locks {
			l.held.Close()
			l.sent.Close()
		}
	})
	return f
}

// Inhibit is logind's org.freedesktop.login1.Manager.Inhibit.
func (f *fakeLogind) Inhibit(what, who, why, mode string) (dbus.UnixFD, *dbus.Error) {
	r, w, err := os.Pipe()
	if err != nil {
		return 0, dbus.MakeFailedError(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.locks = append(f.locks, &fakeLock{what: what, who: who, why: why, mode: mode, held: r, sent: w})
	return dbus.UnixFD(w.Fd()), nil
}

// lock returns the i-th lock taken, with the fake's copy of its write end
// closed: the reply that carried it has arrived, so only the client's copy
// keeps the lock.
func (f *fakeLogind) lock(t *testing.T, i int) *fakeLock {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.locks) <= i {
		t.Fatalf("%d locks taken, want lock #%d", len(f.locks), i)
	}
	l := f.locks[i]
	l.sent.Close()
	return l
}

func (f *fakeLogind) emit(t *testing.T, body ...any) {
	t.Helper()
	if err := f.conn.Emit(logindPath, logindManager+".PrepareForShutdown", body...); err != nil {
		t.Fatal(err)
	}
}

// released reports whether the lock's holder closed it, waiting up to wait.
func (l *fakeLock) released(t *testing.T, wait time.Duration) bool {
	t.Helper()
	if err := l.held.SetReadDeadline(time.Now().Add(wait)); err != nil {
		t.Fatal(err)
	}
	_, err := l.held.Read(make([]byte, 1))
	switch {
	case errors.Is(err, io.EOF):
		return true
	case errors.Is(err, os.ErrDeadlineExceeded):
		return false
	default:
		t.Fatalf("read lock pipe: %v", err)
		return false
	}
}

func newLogind(t *testing.T) *systemd.Logind {
	t.Helper()
	l, err := systemd.NewLogind()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestLogindLock(t *testing.T) {
	fake := startFakeLogind(t, startBus(t))
	l := newLogind(t)

	release, err := l.Lock(context.Background(), "bbb-agent", "draining meetings before shutdown")
	if err != nil {
		t.Fatal(err)
	}
	lock := fake.lock(t, 0)
	if lock.what != "shutdown" || lock.who != "bbb-agent" || lock.why != "draining meetings before shutdown" || lock.mode != "delay" {
		t.Fatalf("Inhibit(%q, %q, %q, %q), want a shutdown delay lock", lock.what, lock.who, lock.why, lock.mode)
	}
	if lock.released(t, 50*time.Millisecond) {
		t.Fatal("lock released before release was called")
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if !lock.released(t, 5*time.Second) {
		t.Fatal("lock still held after release")
	}
	if err := release(); err != nil {
		t.Fatalf("second release: %v", err)
	}
}

func TestLogindShutdowns(t *testing.T) {
	addr := startBus(t)
	fake := startFakeLogind(t, addr)
	l := newLogind(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	shutdowns, err := l.Shutdowns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	next := func() (bool, bool) {
		t.Helper()
		select {
		case starting, ok := <-shutdowns:
			return starting, ok
		case <-time.After(5 * time.Second):
			t.Fatal("no PrepareForShutdown delivered")
			return false, false
		}
	}

	// Another peer on the bus cannot start a drain by sending the signal.
	impostor, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer impostor.Close()
	if err := impostor.Emit(logindPath, logindManager+".PrepareForShutdown", true); err != nil {
		t.Fatal(err)
	}
	fake.emit(t, "yes") // malformed: skipped
	fake.emit(t, false)
	if starting, ok := next(); !ok || starting {
		t.Fatalf("got %v (open %v), want false from logind", starting, ok)
	}
	fake.emit(t, true)
	if starting, ok := next(); !ok || !starting {
		t.Fatalf("got %v (open %v), want true", starting, ok)
	}

	cancel()
	if _, ok := next(); ok {
		t.Fatal("channel still open after ctx ended")
	}
}

func TestLogindShutdownsEndWithConnection(t *testing.T) {
	startFakeLogind(t, startBus(t))
	l := newLogind(t)
	shutdowns, err := l.Shutdowns(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	select {
	case _, ok := <-shutdowns:
		if ok {
			t.Fatal("got a signal, want the channel closed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("channel still open after the connection closed")
	}
}

func TestLogindInhibitDelayMax(t *testing.T) {
	for _, tc := range []struct {
		name  string
		value any
		want  time.Duration
		err   string
	}{
		{"default", uint64(5_000_000), 5 * time.Second, ""},
		{"drop-in", uint64(2 * time.Hour / time.Microsecond), 2 * time.Hour, ""},
		{"infinity", uint64(math.MaxUint64), time.Duration(math.MaxInt64), ""},
		{"wrong type", uint32(5), 0, "want uint64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			startFakeLogindDelay(t, startBus(t), tc.value)
			got, err := newLogind(t).InhibitDelayMax(context.Background())
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, %v; want an error with %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestNewLogindUnreachable(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T)
	}{
		{"no system bus", func(t *testing.T) {
			t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path="+filepath.Join(t.TempDir(), "no-bus"))
		}},
		{"no logind on the bus", func(t *testing.T) { startBus(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.setup(t)
			l, err := systemd.NewLogind()
			if err == nil {
				l.Close()
				t.Fatal("NewLogind succeeded")
			}
			if !errors.Is(err, systemd.ErrLogindUnreachable) {
				t.Fatalf("%v does not wrap ErrLogindUnreachable", err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "logind not reachable over D-Bus (") || !strings.HasSuffix(msg, "): shutdown drain via inhibitor lock disabled") {
				t.Fatalf("unclear error: %s", msg)
			}
			t.Log(msg)
		})
	}
}

// TestShutdownGuardOverDBus runs the guard against Logind and a fake logind
// on a real bus daemon: lock at start, drain on PrepareForShutdown(true),
// release, lock again on PrepareForShutdown(false).
func TestShutdownGuardOverDBus(t *testing.T) {
	fake := startFakeLogind(t, startBus(t))
	g := systemd.NewShutdownGuard(newLogind(t), "bbb-agent", "draining meetings before shutdown", testLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	first := fake.lock(t, 0)

	fake.emit(t, true)
	wantEvent(t, g, true)
	if first.released(t, 50*time.Millisecond) {
		t.Fatal("lock released before the drain was done")
	}
	if err := g.Release(); err != nil {
		t.Fatal(err)
	}
	if !first.released(t, 5*time.Second) {
		t.Fatal("lock still held after Release")
	}

	fake.emit(t, false)
	wantEvent(t, g, false)
	second := fake.lock(t, 1)
	cancel()
	wantClosed(t, g)
	if !second.released(t, 5*time.Second) {
		t.Fatal("lock still held after the guard stopped")
	}
}

func TestCheckInhibitDelay(t *testing.T) {
	for _, tc := range []struct {
		name           string
		max, deadline  time.Duration
		warn           bool
		recommendation string
	}{
		{"logind default", 5 * time.Second, 90 * time.Minute, true, "InhibitDelayMaxSec=5700"},
		{"drop-in installed", 2 * time.Hour, 90 * time.Minute, false, ""},
		{"exactly enough", 95 * time.Minute, 90 * time.Minute, false, ""},
		{"no room to deregister", 90 * time.Minute, 90 * time.Minute, true, "InhibitDelayMaxSec=5700"},
		{"fractional deadline rounds up", time.Minute, 90*time.Minute + time.Millisecond, true, "InhibitDelayMaxSec=5701"},
		{"infinity", time.Duration(math.MaxInt64), 90 * time.Minute, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := systemd.CheckInhibitDelay(tc.max, tc.deadline)
			if !tc.warn {
				if got != "" {
					t.Fatalf("unexpected warning: %s", got)
				}
				return
			}
			for _, want := range []string{"/etc/systemd/logind.conf.d/bbb-agent.conf", "[Login]", tc.recommendation, tc.max.String(), tc.deadline.String()} {
				if !strings.Contains(got, want) {
					t.Errorf("warning lacks %q: %s", want, got)
				}
			}
		})
	}
}
