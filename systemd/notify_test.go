package systemd_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/systemd"
	"github.com/bbb-agent/bbb-agent/systemd/systemdtest"
)

// listenNotify plays systemd's side of sd_notify: a unixgram socket in a
// temporary directory, named by NOTIFY_SOCKET for the rest of the test.
func listenNotify(t *testing.T) *net.UnixConn {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", sock)
	return conn
}

// readDatagram returns the next datagram, failing the test if none arrives
// within a few seconds.
func readDatagram(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	return string(buf[:n])
}

// noDatagram fails the test if a datagram is waiting. The senders write
// synchronously, so whatever was sent is already queued.
func noDatagram(t *testing.T, conn *net.UnixConn) {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	if n, err := conn.Read(buf); err == nil {
		t.Fatalf("unexpected notification %q", buf[:n])
	} else if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal(err)
	}
}

func TestSdNotifierSendsDatagrams(t *testing.T) {
	conn := listenNotify(t)
	n := systemd.NewNotifier()
	for _, tc := range []struct {
		name string
		call func() error
		want string
	}{
		{"ready", n.Ready, "READY=1"},
		{"status", func() error { return n.Status("ready: reporting to bbb-balancer") }, "STATUS=ready: reporting to bbb-balancer"},
		{"status line breaks", func() error { return n.Status("draining\nREADY=1\r\nx") }, "STATUS=draining READY=1 x"},
		{"watchdog", n.Watchdog, "WATCHDOG=1"},
		{"stopping", n.Stopping, "STOPPING=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); err != nil {
				t.Fatal(err)
			}
			if got := readDatagram(t, conn); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			noDatagram(t, conn)
		})
	}
}

func TestSdNotifierWithoutSocketIsNoOp(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	var n systemd.SdNotifier
	for _, err := range []error{n.Ready(), n.Status("x"), n.Watchdog(), n.Stopping()} {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestSdNotifierSocketGone(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "gone"))
	err := systemd.NewNotifier().Ready()
	if err == nil || !strings.Contains(err.Error(), `notify "READY=1"`) {
		t.Fatalf("got %v, want an error naming READY=1", err)
	}
}

func TestWatchdogInterval(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	for _, tc := range []struct {
		name      string
		usec, pid string
		want      time.Duration
		ok        bool
	}{
		{"no watchdog", "", "", 0, false},
		{"this process", "30000000", self, 15 * time.Second, true},
		{"no pid given", "2000000", "", time.Second, true},
		{"another process", "30000000", strconv.Itoa(os.Getpid() + 1), 0, false},
		{"unreadable", "thirty", self, 0, false},
		{"zero", "0", self, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("WATCHDOG_USEC", tc.usec)
			t.Setenv("WATCHDOG_PID", tc.pid)
			got, ok := systemd.WatchdogInterval()
			if got != tc.want || ok != tc.ok {
				t.Fatalf("got %v, %v; want %v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

// runWatchdog runs RunWatchdog with a healthy func that answers, tick by
// tick, what the test sends on the returned channel, and false once the
// context is cancelled. stop cancels it and waits for it to return.
func runWatchdog(t *testing.T, n systemd.Notifier, logger *slog.Logger) (answers chan<- bool, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan bool)
	healthy := func() bool {
		select {
		case ok := <-ch:
			return ok
		case <-ctx.Done():
			return false
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		systemd.RunWatchdog(ctx, n, time.Millisecond, healthy, logger)
	}()
	stop = func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return ch, stop
}

func TestRunWatchdogPingsOnlyWhileHealthy(t *testing.T) {
	conn := listenNotify(t)
	var logs bytes.Buffer
	answers, stop := runWatchdog(t, systemd.NewNotifier(), slog.New(slog.NewTextHandler(&logs, nil)))

	// It ends unhealthy: a tick that sees the context cancelled by stop
	// (healthy answers false then) changes nothing.
	for _, healthy := range []bool{false, true, false, false, true, false} {
		answers <- healthy
	}
	// The last answer was taken, so the ticks before it are over.
	if got := readDatagram(t, conn); got != "WATCHDOG=1" {
		t.Fatalf("got %q, want WATCHDOG=1", got)
	}
	if got := readDatagram(t, conn); got != "WATCHDOG=1" {
		t.Fatalf("got %q, want WATCHDOG=1", got)
	}
	stop()
	noDatagram(t, conn)
	// Unhealthy at start-up is no news; turning unhealthy later is.
	for want, n := range map[string]int{"withholding pings": 2, "agent healthy, pinging": 2} {
		if got := strings.Count(logs.String(), want); got != n {
			t.Errorf("log has %q %d times, want %d:\n%s", want, got, n, logs.String())
		}
	}
}

func TestRunWatchdogGoesOnAfterFailedPing(t *testing.T) {
	n := &systemdtest.Notifier{Err: errors.New("connection refused")}
	var logs bytes.Buffer
	answers, stop := runWatchdog(t, n, slog.New(slog.NewTextHandler(&logs, nil)))
	answers <- true
	answers <- true
	answers <- true
	stop()
	// Each answer taken is followed by its ping; the tick after them sees
	// the cancelled context and pings no more.
	if got, want := n.Sent(), []string{"WATCHDOG=1", "WATCHDOG=1", "WATCHDOG=1"}; !slices.Equal(got, want) {
		t.Fatalf("sent %q, want %q", got, want)
	}
	if !strings.Contains(logs.String(), "ping failed") {
		t.Errorf("log lacks the failed ping:\n%s", logs.String())
	}
}
