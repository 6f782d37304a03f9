package turn

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/internal/testenv"
	"github.com/bbb-agent/bbb-agent/systemd/systemdtest"
)

const fleetSecret = "turn-fleet-secret-0123456789"

func newManager(t *testing.T, path string) (*Manager, *systemdtest.Restarter, *time.Time) {
	now := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	r := &systemdtest.Restarter{}
	m := &Manager{Path: path, Secret: fleetSecret, Restarter: r, Log: slog.New(slog.DiscardHandler),
		Clock: func() time.Time { return now },
		Probe: func(ctx context.Context, u URI, secret string) Result {
			return Probe(ctx, u, secret, WithTimeout(time.Second))
		}}
	return m, r, &now
}

func uri(s testenv.CoturnServer) string { return "turn:" + s.Addr }

func fileInfo(t *testing.T, path string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

// TestManagerAgainstCoturn: against real coturn servers, the file holds
// exactly the working servers, an unchanged set rewrites nothing and
// restarts nothing, a new server while meetings run waits for the node to
// be idle, a dead old set restarts at once, and a wrong secret is left out.
func TestManagerAgainstCoturn(t *testing.T) {
	ctx := context.Background()
	a := testenv.Coturn(t, fleetSecret)
	path := filepath.Join(t.TempDir(), "turn-stun-servers.xml")
	m, r, now := newManager(t, path)

	st := m.Sync(ctx, []string{uri(a)}, 3, nil)
	if !slices.Equal(st.InUse, []string{uri(a)}) || st.LastError != "" {
		t.Fatalf("first sync: %+v", st)
	}
	data, _ := os.ReadFile(path)
	set, err := Parse(data)
	if err != nil || len(set.TURN) != 1 || set.TURN[0].URL != uri(a) || set.TURN[0].Secret != fleetSecret {
		t.Fatalf("file: %+v, %v", set, err)
	}
	// No file before: nothing worked for bbb-web, so it restarts even with meetings.
	if got := r.Restarted(); !slices.Equal(got, []string{BBBWebUnit}) {
		t.Fatalf("restarts after the first write: %v", got)
	}

	before := fileInfo(t, path)
	*now = now.Add(2 * time.Minute) // probes are redone
	if st := m.Sync(ctx, []string{uri(a)}, 0, nil); st.Restarts != 1 {
		t.Fatalf("unchanged set restarted bbb-web: %+v", st)
	}
	if after := fileInfo(t, path); !after.ModTime().Equal(before.ModTime()) {
		t.Fatal("unchanged set rewrote the file")
	}

	// A second server while meetings run: written now, restart deferred.
	b := testenv.Coturn(t, fleetSecret)
	st = m.Sync(ctx, []string{uri(a), uri(b)}, 2, nil)
	if len(st.InUse) != 2 || !st.RestartPending || len(r.Restarted()) != 1 {
		t.Fatalf("with meetings running: %+v, restarts %v", st, r.Restarted())
	}
	if st = m.Sync(ctx, []string{uri(a), uri(b)}, 1, nil); !st.RestartPending || len(r.Restarted()) != 1 {
		t.Fatalf("still busy: %+v", st)
	}
	if st = m.Sync(ctx, []string{uri(a), uri(b)}, 0, nil); st.RestartPending || len(r.Restarted()) != 2 {
		t.Fatalf("idle: %+v, restarts %v", st, r.Restarted())
	}

	// A server with another secret is probed and left out.
	wrong := testenv.Coturn(t, "another-secret-0123456789")
	*now = now.Add(2 * time.Minute)
	st = m.Sync(ctx, []string{uri(a), uri(b), uri(wrong)}, 0, nil)
	if len(st.InUse) != 2 || slices.Contains(st.InUse, uri(wrong)) {
		t.Fatalf("wrong secret in use: %+v", st)
	}
	for _, p := range st.Probes {
		if p.URI == uri(wrong) && (p.OK || !strings.Contains(p.Error, "refuse")) {
			t.Fatalf("probe of the wrong-secret server: %+v", p)
		}
	}

	// Both old servers die; a new one replaces them: restart at once, meetings or not.
	a.Stop()
	b.Stop()
	c := testenv.Coturn(t, fleetSecret)
	*now = now.Add(2 * time.Minute)
	restarts := len(r.Restarted())
	st = m.Sync(ctx, []string{uri(a), uri(b), uri(c)}, 5, nil)
	if !slices.Equal(st.InUse, []string{uri(c)}) || len(r.Restarted()) != restarts+1 || st.RestartPending {
		t.Fatalf("after the replacement: %+v, restarts %v", st, r.Restarted())
	}
}

// TestManagerBadInput: no working server leaves the file alone; an
// unparsable file is kept aside and replaced; an unwritable path is an
// error and nothing restarts.
func TestManagerBadInput(t *testing.T) {
	ctx := context.Background()
	a := testenv.Coturn(t, fleetSecret)
	dir := t.TempDir()
	path := filepath.Join(dir, "turn-stun-servers.xml")
	m, r, _ := newManager(t, path)

	st := m.Sync(ctx, nil, 0, nil)
	if st.LastError == "" || len(r.Restarted()) != 0 {
		t.Fatalf("no servers: %+v", st)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("a file was written with no servers")
	}

	if err := os.WriteFile(path, []byte("<beans><bean class="), 0o640); err != nil {
		t.Fatal(err)
	}
	st = m.Sync(ctx, []string{uri(a)}, 0, nil)
	if st.LastError != "" || len(st.InUse) != 1 {
		t.Fatalf("unparsable file: %+v", st)
	}
	backups, _ := filepath.Glob(path + ".bak-*")
	if len(backups) != 1 {
		t.Fatalf("backups: %v", backups)
	}
	if b, _ := os.ReadFile(backups[0]); string(b) != "<beans><bean class=" {
		t.Fatalf("backup holds %q", b)
	}
	if fi := fileInfo(t, path); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode not kept: %v", fi.Mode())
	}

	// /etc/bigbluebutton missing: nothing can be written there.
	m2, r2, _ := newManager(t, filepath.Join(dir, "missing-dir", "turn-stun-servers.xml"))
	st = m2.Sync(ctx, []string{uri(a)}, 0, nil)
	if !strings.Contains(st.LastError, "writing") || len(r2.Restarted()) != 0 {
		t.Fatalf("unwritable path: %+v", st)
	}
}

// TestManagerProbesInParallel: candidates that never answer are probed all
// at once under one budget, and each counts as failed when it runs out.
func TestManagerProbesInParallel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "turn-stun-servers.xml")
	m, _, _ := newManager(t, path)
	const n = 4
	var mu sync.Mutex
	inFlight, most := 0, 0
	allIn := make(chan struct{})
	m.ProbeBudget = time.Minute
	m.Probe = func(ctx context.Context, u URI, _ string) Result {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		if inFlight == n {
			close(allIn)
		}
		mu.Unlock()
		<-ctx.Done() // a blackhole: nothing ever answers
		return Result{URI: u, Err: fmt.Errorf("%w: %w", ErrUnreachable, ctx.Err())}
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-allIn; cancel() }() // only once every probe is under way
	var offered []string
	for i := range n {
		offered = append(offered, fmt.Sprintf("turn:127.0.0.1:%d", 3478+i))
	}
	st := m.Sync(ctx, offered, 0, nil)
	if most != n {
		t.Fatalf("at most %d probes ran at once, want all %d", most, n)
	}
	if len(st.Probes) != n || len(st.InUse) != 0 || st.LastError == "" {
		t.Fatalf("status: %+v", st)
	}
	for _, p := range st.Probes {
		if p.OK || !strings.Contains(p.Error, "unreachable") {
			t.Fatalf("probe: %+v", p)
		}
	}
}

// TestManagerProbeBudget: the budget alone ends probes that never answer.
func TestManagerProbeBudget(t *testing.T) {
	m, _, _ := newManager(t, filepath.Join(t.TempDir(), "turn-stun-servers.xml"))
	m.ProbeBudget = 20 * time.Millisecond
	m.Probe = func(ctx context.Context, u URI, _ string) Result {
		<-ctx.Done()
		return Result{URI: u, Err: fmt.Errorf("%w: %w", ErrUnreachable, ctx.Err())}
	}
	st := m.Sync(context.Background(), []string{"turn:127.0.0.1:3478", "turn:127.0.0.1:3479"}, 0, nil)
	if len(st.Probes) != 2 || st.Probes[0].OK || st.Probes[1].OK || len(st.InUse) != 0 {
		t.Fatalf("status: %+v", st)
	}
}

// TestManagerPublishesBeforeWriting: the status naming the new servers is
// published before the file changes, and not at all when nothing changes.
func TestManagerPublishesBeforeWriting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "turn-stun-servers.xml")
	m, _, _ := newManager(t, path)
	m.Probe = func(_ context.Context, u URI, _ string) Result { return Result{URI: u, STUNOK: true, AllocateOK: true} }
	const server = "turn:127.0.0.1:3478"
	var published []Status
	publish := func(st Status) {
		if _, err := os.Stat(path); err == nil {
			t.Error("published after the file was written")
		}
		published = append(published, st)
	}
	st := m.Sync(context.Background(), []string{server}, 0, publish)
	if len(published) != 1 || !slices.Equal(published[0].InUse, []string{server}) || published[0].WrittenAt.IsZero() {
		t.Fatalf("published %+v", published)
	}
	if !slices.Equal(st.InUse, []string{server}) || st.Restarts != 1 {
		t.Fatalf("status %+v", st)
	}
	m.Sync(context.Background(), []string{server}, 0, publish)
	if len(published) != 1 {
		t.Fatalf("an unchanged file published again: %+v", published[1:])
	}
}
