package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
	"github.com/bbb-agent/bbb-agent/recordings"
)

// fakeRecordings is a shipper whose backlog the test sets.
type fakeRecordings struct {
	mu       sync.Mutex
	backlog  recordings.Backlog
	err      error
	scans    int
	notified []string
	retried  []string
	rows     []recordings.Row
}

func (f *fakeRecordings) set(b recordings.Backlog, err error) {
	f.mu.Lock()
	f.backlog, f.err = b, err
	f.mu.Unlock()
}

func (f *fakeRecordings) Backlog(context.Context) (recordings.Backlog, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.backlog, f.err
}

func (f *fakeRecordings) Scan(context.Context) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.scans++
	return 4, nil
}

func (f *fakeRecordings) Notify(_ context.Context, id, format string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id == "unknown" {
		return recordings.ErrNotPublished
	}
	f.notified = append(f.notified, id+"/"+format)
	return nil
}

func (f *fakeRecordings) List(context.Context) ([]recordings.Row, error) { return f.rows, nil }

func (f *fakeRecordings) Retry(_ context.Context, id string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.retried = append(f.retried, id)
	if id == "unknown" {
		return 0, nil
	}
	return 2, nil
}

func (f *fakeRecordings) Stats() recordings.Stats {
	return recordings.Stats{Shipped: 3, BytesShipped: 4096}
}

// TestDrainWaitsForRecordings: with no meetings left, the drain waits for
// BBB's processing and the ship queue (sd_notify STATUS says how many),
// unless told not to; a backlog it cannot read holds it too; the deadline
// ends the wait whatever is left.
func TestDrainWaitsForRecordings(t *testing.T) {
	const deadline = time.Hour
	processing := recordings.Backlog{Processing: 2, Queued: 1}
	tests := []struct {
		name    string
		wait    bool
		backlog []recordings.Backlog // per measurement; the last repeats
		err     error                // reading the backlog fails (first two measurements)
		late    bool                 // the clock passes the deadline after the fourth
		ticks   int                  // measurements until the drain is done
		why     string
		status  string // an sd_notify STATUS the drain must have sent
		scans   int    // scans the drain must have made (0: at least one)
	}{
		{name: "waits for processing and shipping", wait: true,
			backlog: []recordings.Backlog{processing, processing, processing, {Shipping: 1}, {}},
			ticks:   5, why: "no meetings or recordings left", status: "draining: 0 meetings, 2 recordings processing, 1 shipping",
			scans: 2}, // when the drain starts, and when BBB has finished processing
		{name: "failed and unindexed rows hold it, quarantined ones do not", wait: true,
			backlog: []recordings.Backlog{{Failed: 1}, {Unindexed: 1}, {Quarantined: 3}},
			ticks:   3, why: "no meetings or recordings left", status: "draining: 0 meetings, 0 recordings processing, 1 shipping"},
		{name: "storage none: only processing holds it", wait: true,
			backlog: []recordings.Backlog{{KeptLocally: true, Processing: 1}, {KeptLocally: true, Queued: 5}},
			ticks:   2, why: "no meetings or recordings left", status: "draining: 0 meetings, 1 recordings processing, 0 shipping"},
		{name: "an unreadable backlog holds it", wait: true, err: errors.New("permission denied"),
			backlog: []recordings.Backlog{{}}, ticks: 3, why: "no meetings or recordings left"},
		{name: "--drain-wait-recordings=false", wait: false,
			backlog: []recordings.Backlog{processing}, ticks: 2, why: "no meetings left", status: "draining: 0 meetings left"},
		{name: "deadline", wait: true, late: true,
			backlog: []recordings.Backlog{processing}, ticks: 5, why: "deadline reached"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := testenv.NewClock()
			rec := &fakeRecordings{}
			n := &notes{}
			c, err := bbb.NewClient("http://127.0.0.1:9", "never-called")
			if err != nil {
				t.Fatal(err)
			}
			a, err := New(Config{Node: "bbb1", ReportInterval: 5 * time.Second, DrainDeadline: deadline, Clock: clk,
				DrainWaitRecordings: tt.wait, RecordingsStorage: "spool:/spool", Logger: slog.New(slog.DiscardHandler)},
				Deps{Registrar: &fakeRegistrar{}, BBB: c, Recordings: rec, Notifier: n})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			a.registered, a.everRegistered = true, true
			a.setState(Ready)
			a.startDrain(ctx, SourceAdmin)
			for i := 0; a.drain != nil && a.drain.phase != drainDone; i++ {
				if i >= 10 {
					t.Fatalf("the drain still waits after %d measurements: %v", i, n)
				}
				rec.set(tt.backlog[min(i, len(tt.backlog)-1)], nil)
				if i < 2 && tt.err != nil {
					rec.set(recordings.Backlog{}, tt.err)
				}
				if tt.late && i == 4 {
					clk.Advance(deadline)
				}
				m := measurement{now: clk.Now(), load: fleet.Load{}, afterCordon: a.drain.cordonTried()}
				m.rec, m.recOK = a.measureRecordings(ctx)
				a.advanceDrain(ctx, &m)
				if a.drain.phase == drainDone && i+1 != tt.ticks {
					t.Fatalf("the drain finished after %d measurements, want %d: %v", i+1, tt.ticks, n)
				}
			}
			st := a.Status()
			if st.Drain == nil || st.Drain.Finished != tt.why {
				t.Fatalf("drain %+v, want finished %q", st.Drain, tt.why)
			}
			if tt.status != "" && !slices.Contains(n.all(), "STATUS="+tt.status) {
				t.Errorf("sd_notify %v, want STATUS=%s", n, tt.status)
			}
			if rec.scans == 0 || tt.scans > 0 && rec.scans != tt.scans {
				t.Errorf("the drain scanned %d times for recordings BBB published meanwhile, want %d (0: some)", rec.scans, tt.scans)
			}
			if st.Recordings == nil || st.Recordings.Storage != "spool:/spool" || st.Recordings.Shipped != 3 || st.Recordings.DrainWaits != tt.wait {
				t.Errorf("status recordings %+v", st.Recordings)
			}
		})
	}
}

// TestRecordingsAdmin: the recordings commands over the admin socket.
func TestRecordingsAdmin(t *testing.T) {
	dir, err := os.MkdirTemp("", "bbb-agent-rec-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	rec := &fakeRecordings{rows: []recordings.Row{{RecordID: "r1", Format: "presentation", State: recordings.StateQueued}}}
	c, err := bbb.NewClient("http://127.0.0.1:9", "never-called")
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{Node: "bbb1", Logger: slog.New(slog.DiscardHandler)}, Deps{Registrar: &fakeRegistrar{}, BBB: c, Recordings: rec})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "admin.sock")
	ln, err := ListenAdmin(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.ServeAdmin(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	cl := NewAdminClient(sock)

	if err := cl.RecordingsNotify(ctx, "r1", "video"); err != nil {
		t.Fatal(err)
	}
	if err := cl.RecordingsNotify(ctx, "unknown", ""); err == nil || !strings.Contains(err.Error(), "no published format") {
		t.Errorf("notify of an unknown recording: %v", err)
	}
	rows, err := cl.RecordingsList(ctx)
	if err != nil || len(rows) != 1 || rows[0].RecordID != "r1" {
		t.Errorf("list: %+v, %v", rows, err)
	}
	if n, err := cl.RecordingsShip(ctx, "r1"); err != nil || n != 2 {
		t.Errorf("ship: %d, %v", n, err)
	}
	if n, err := cl.RecordingsRetry(ctx, "r1"); err != nil || n != 2 {
		t.Errorf("retry: %d, %v", n, err)
	}
	if _, err := cl.RecordingsRetry(ctx, "unknown"); err == nil || !strings.Contains(err.Error(), "nothing to retry") {
		t.Errorf("retry of an unknown recording: %v", err)
	}
	if _, err := cl.RecordingsShip(ctx, "unknown"); err == nil {
		t.Error("ship of an unknown recording succeeded")
	}
	if n, err := cl.RecordingsBackfill(ctx); err != nil || n != 4 {
		t.Errorf("backfill: %d, %v", n, err)
	}
	if want := []string{"r1/video", "r1/"}; !slices.Equal(rec.notified, want) {
		t.Errorf("notified %v, want %v", rec.notified, want)
	}
}

// TestRecordingsMetrics: the recordings counters and the backlog by state.
func TestRecordingsMetrics(t *testing.T) {
	rec := &fakeRecordings{backlog: recordings.Backlog{Processing: 2, Queued: 1, Failed: 4}}
	c, err := bbb.NewClient("http://127.0.0.1:9", "never-called")
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{Node: "bbb1", Logger: slog.New(slog.DiscardHandler)}, Deps{Registrar: &fakeRegistrar{}, BBB: c, Recordings: rec})
	if err != nil {
		t.Fatal(err)
	}
	a.measureRecordings(context.Background())
	srv := httptest.NewServer(a.MetricsHandler())
	t.Cleanup(srv.Close)
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		"bbb_agent_recordings_shipped_total 3", "bbb_agent_recordings_failed_total 0", "bbb_agent_recordings_bytes_shipped_total 4096",
		`bbb_agent_recordings_backlog{state="processing"} 2`, `bbb_agent_recordings_backlog{state="queued"} 1`,
		`bbb_agent_recordings_backlog{state="failed"} 4`, `bbb_agent_recordings_backlog{state="shipping"} 0`,
	} {
		if !strings.Contains(string(body), want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
}
