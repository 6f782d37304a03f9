package systemd_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/bbb-agent/bbb-agent/systemd"
	"github.com/bbb-agent/bbb-agent/systemd/systemdtest"
)

const (
	systemdName    = "org.freedesktop.systemd1"
	systemdPath    = dbus.ObjectPath("/org/freedesktop/systemd1")
	systemdManager = "org.freedesktop.systemd1.Manager"
)

// fakeSystemd answers for systemd's manager on a private bus (startBus):
// RestartUnit queues a job and announces its end with JobRemoved, as
// systemd does.
type fakeSystemd struct {
	conn    *dbus.Conn
	results map[string]string // unit → job result; "" never finishes

	mu    sync.Mutex
	calls []string // "unit mode"
	jobs  uint32
}

func startFakeSystemd(t *testing.T, addr string, results map[string]string) *fakeSystemd {
	t.Helper()
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if reply, err := conn.RequestName(systemdName, dbus.NameFlagDoNotQueue); err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("own %s: %v (reply %v)", systemdName, err, reply)
	}
	f := &fakeSystemd{conn: conn, results: results}
	if err := conn.Export(f, systemdPath, systemdManager); err != nil {
		t.Fatal(err)
	}
	return f
}

// RestartUnit is systemd's org.freedesktop.systemd1.Manager.RestartUnit.
// JobRemoved goes out before the reply: go-systemd must not lose it.
func (f *fakeSystemd) RestartUnit(name, mode string) (dbus.ObjectPath, *dbus.Error) {
	f.mu.Lock()
	f.calls = append(f.calls, name+" "+mode)
	f.jobs++
	id := f.jobs
	f.mu.Unlock()
	result, ok := f.results[name]
	if !ok {
		return "", dbus.NewError("org.freedesktop.systemd1.NoSuchUnit", []any{"Unit " + name + " not found."})
	}
	job := dbus.ObjectPath(fmt.Sprintf("/org/freedesktop/systemd1/job/%d", id))
	if result != "" {
		if err := f.conn.Emit(systemdPath, systemdManager+".JobRemoved", id, job, name, result); err != nil {
			return "", dbus.MakeFailedError(err)
		}
	}
	return job, nil
}

func (f *fakeSystemd) restarts() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// TestUnitsRestartUnit runs the D-Bus implementation against a fake systemd
// on a private dbus-daemon rather than the host's system bus: restarting a
// real unit from a test is not safe, and CI has no system bus.
func TestUnitsRestartUnit(t *testing.T) {
	fake := startFakeSystemd(t, startBus(t), map[string]string{
		"bbb-web.service":    "done",
		"freeswitch.service": "failed",
		"slow.service":       "",
	})
	for _, tc := range []struct {
		unit    string
		timeout time.Duration
		err     string // "" for success
		is      error
	}{
		{"bbb-web.service", 5 * time.Second, "", nil},
		{"freeswitch.service", 5 * time.Second, `restart freeswitch.service: job finished with result "failed"`, nil},
		{"missing.service", 5 * time.Second, "restart missing.service: Unit missing.service not found.", nil},
		{"slow.service", 100 * time.Millisecond, "restart slow.service: waiting for the job", context.DeadlineExceeded},
	} {
		t.Run(tc.unit, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
			defer cancel()
			err := systemd.Units{}.RestartUnit(ctx, tc.unit)
			switch {
			case tc.err == "" && err != nil:
				t.Fatal(err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("got %v, want an error with %q", err, tc.err)
			case tc.is != nil && !errors.Is(err, tc.is):
				t.Fatalf("%v is not %v", err, tc.is)
			}
			if got := fake.restarts(); got[len(got)-1] != tc.unit+" replace" {
				t.Fatalf("systemd was asked %q, want %q", got[len(got)-1], tc.unit+" replace")
			}
		})
	}
}

func TestUnitsRestartUnitWithoutBus(t *testing.T) {
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path="+filepath.Join(t.TempDir(), "no-bus"))
	err := systemd.Units{}.RestartUnit(context.Background(), "bbb-web.service")
	if err == nil || !strings.Contains(err.Error(), "restart bbb-web.service: systemd not reachable over D-Bus") {
		t.Fatalf("got %v, want a clear error", err)
	}
}

func TestRestarterFake(t *testing.T) {
	var r systemdtest.Restarter
	r.Err = errors.New("boom")
	if err := r.RestartUnit(context.Background(), "bbb-web.service"); !errors.Is(err, r.Err) {
		t.Fatalf("got %v", err)
	}
	if got := r.Restarted(); !slices.Equal(got, []string{"bbb-web.service"}) {
		t.Fatalf("restarted %q", got)
	}
}
