package recordings

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/bbb-agent/bbb-agent/agentapi"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
	"github.com/bbb-agent/bbb-agent/recordings/storage"
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newShipper(t *testing.T, root string, st storage.Storage, cfg Config) (*Shipper, *Queue) {
	t.Helper()
	q, err := OpenQueue(context.Background(), filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	cfg.Dir, cfg.Queue, cfg.Storage, cfg.Logger = root, q, st, quiet()
	if cfg.ScanInterval == 0 {
		cfg.ScanInterval = -1
	}
	return NewShipper(cfg), q
}

func row(t *testing.T, q *Queue, id, format string) Row {
	t.Helper()
	r, ok, err := q.Get(context.Background(), id, format)
	if err != nil || !ok {
		t.Fatalf("row %s/%s: %v, found %v", id, format, err, ok)
	}
	return r
}

// fakeStorage fails while err is set and counts calls.
type fakeStorage struct {
	mu      sync.Mutex
	err     error
	calls   int
	during  func() // runs inside Ship
	errOnce error  // the next Ship's error
	got     []storage.Shipment
}

func (f *fakeStorage) Ship(ctx context.Context, sh storage.Shipment) (storage.Receipt, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.during != nil {
		f.during()
		f.during = nil
	}
	if err := f.errOnce; err != nil {
		f.errOnce = nil
		return storage.Receipt{}, err
	}
	if f.err != nil {
		return storage.Receipt{}, f.err
	}
	f.got = append(f.got, sh)
	return storage.Receipt{Location: "fake/" + sh.RecordID, Size: 1, SHA256: "x", Written: 1}, nil
}
func (f *fakeStorage) Check(context.Context) error { return nil }
func (f *fakeStorage) String() string              { return "fake" }
func (f *fakeStorage) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func TestParseMetadata(t *testing.T) {
	id := recordID(1)
	dir := publish(t, t.TempDir(), id, "presentation", 1)
	m, err := ReadMetadata(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.RecordID != id || m.MeetingID != id || m.ExternalID != "ext-"+id || m.Name != "Meeting "+id ||
		m.State != "published" || !m.Published || m.Participants != 3 || m.RawSize != 123456 ||
		!m.StartTime.Equal(time.UnixMilli(1700000000000)) || !m.EndTime.Equal(time.UnixMilli(1700000600000)) {
		t.Errorf("metadata = %+v", m)
	}
	if m.Meta["bbb-origin"] != "Greenlight" || m.Meta["isBreakout"] != "false" || len(m.Meta) != 3 {
		t.Errorf("meta = %v", m.Meta)
	}
	want := agentapi.RecordingFormat{Type: "presentation", Link: "https://bbb1.example.com/playback/presentation/2.3/" + id,
		ProcessingTime: 4567, Duration: 600000, Size: 1234, Preview: []agentapi.RecordingImage{{
			URL: "https://bbb1.example.com/presentation/" + id + "/thumbnails/thumb-1.png", Alt: "Welcome", Width: 176, Height: 136}}}
	if len(m.Formats) != 1 || m.Formats[0].Link != want.Link || m.Formats[0].Size != want.Size ||
		m.Formats[0].Duration != want.Duration || len(m.Formats[0].Preview) != 1 || m.Formats[0].Preview[0] != want.Preview[0] {
		t.Errorf("formats = %+v, want %+v", m.Formats, want)
	}
	video := strings.Replace(strings.Replace(metadataTmpl, "<state>published</state>", "<state>available</state>", 1), "<published>true</published>", "", 1)
	if m, err := ParseMetadata(strings.NewReader(strings.ReplaceAll(video, "%[1]s", id))); err == nil && !m.Published {
		t.Error("state available is not published")
	}
	for name, bad := range map[string]string{
		"not xml":      "{}",
		"no id":        "<recording><playback><format>x</format></playback></recording>",
		"no playback":  "<recording><id>x</id></recording>",
		"bad duration": "<recording><id>x</id><playback><format>x</format><duration>long</duration></playback></recording>",
	} {
		if _, err := ParseMetadata(strings.NewReader(bad)); !errors.Is(err, ErrBadMetadata) {
			t.Errorf("%s: err = %v, want ErrBadMetadata", name, err)
		}
	}
}

func TestProcessingBacklog(t *testing.T) {
	root := t.TempDir()
	mark := func(step, name string) {
		p := filepath.Join(root, "recording", "status", step, name+".done")
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, nil, 0o644)
	}
	a, b, c := recordID(1), recordID(2), recordID(3)
	mark("recorded", a) // still archiving
	mark("recorded", b)
	mark("archived", b)
	mark("processed", b+"-presentation")
	mark("published", b+"-presentation") // done
	mark("recorded", c)
	mark("processed", c+"-presentation")
	mark("processed", c+"-video")
	mark("published", c+"-presentation") // video not yet published
	n, err := ProcessingBacklog(root)
	if err != nil || n != 2 {
		t.Errorf("ProcessingBacklog = %d, %v; want 2 (%s archiving, %s video)", n, err, a, c)
	}
}

func TestBackoffIsCappedJitteredAndNeverBusy(t *testing.T) {
	root := t.TempDir()
	id := recordID(1)
	publish(t, root, id, "presentation", 1)
	clock := testenv.NewClock()
	st := &fakeStorage{err: errors.New("403 Forbidden")}
	s, q := newShipper(t, root, st, Config{Clock: clock, MinBackoff: 10 * time.Second, MaxBackoff: time.Minute, Workers: 1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()

	var waits []time.Duration
	for attempt := 1; attempt <= 6; attempt++ {
		testenv.Eventually(t, 10*time.Second, "a failed attempt", func() bool {
			r, _, _ := q.Get(context.Background(), id, "presentation")
			return r.Attempts == attempt && r.State == StateFailed
		})
		r := row(t, q, id, "presentation")
		wait := r.NextTry.Sub(clock.Now())
		waits = append(waits, wait)
		full := min(10*time.Second<<(attempt-1), time.Minute)
		if wait < full/2 || wait > full {
			t.Errorf("attempt %d: next try in %s, want within [%s, %s]", attempt, wait, full/2, full)
		}
		if !strings.Contains(r.LastError, "403") {
			t.Errorf("last error %q, want the 403", r.LastError)
		}
		// Nothing more happens until the clock reaches the next try.
		testenv.Eventually(t, 10*time.Second, "the worker waiting on the clock", func() bool { return clock.Waiters() > 0 })
		if st.Calls() != attempt {
			t.Fatalf("%d Ship calls after %d attempts: a busy loop", st.Calls(), attempt)
		}
		clock.Advance(wait - time.Millisecond)
		if st.Calls() != attempt {
			t.Fatalf("retried before its next try")
		}
		if attempt < 6 {
			clock.Advance(time.Second)
		}
	}
	t.Logf("backoff waits: %v", waits)
	b, err := s.Backlog(context.Background())
	if err != nil || b.LastFailure == "" || b.Pending() == 0 {
		t.Errorf("Backlog = %+v, %v; want the failure", b, err)
	}
	// The storage comes back.
	st.mu.Lock()
	st.err = nil
	st.mu.Unlock()
	clock.Advance(time.Second)
	testenv.Eventually(t, 10*time.Second, "shipped", func() bool {
		r, _, _ := q.Get(context.Background(), id, "presentation")
		return r.State == StateShipped
	})
	if got := s.Stats(); got.Shipped != 1 || got.Failed != 6 {
		t.Errorf("Stats = %+v", got)
	}
}

func TestQuarantine(t *testing.T) {
	root := t.TempDir()
	good, corrupt, missing := recordID(1), recordID(2), recordID(3)
	publish(t, root, good, "presentation", 1)
	dir := publish(t, root, corrupt, "presentation", 2)
	os.WriteFile(filepath.Join(dir, "metadata.xml"), []byte("<recording><id>"), 0o644)
	st := &fakeStorage{}
	s, q := newShipper(t, root, st, Config{Clock: testenv.NewClock()})
	ctx := context.Background()
	if _, err := s.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Notify(ctx, missing, "video"); err != nil {
		t.Fatal(err)
	}
	if err := s.Notify(ctx, missing, ""); !errors.Is(err, ErrNotPublished) {
		t.Errorf("Notify without a format of an unknown recording = %v, want ErrNotPublished", err)
	}
	for range 5 {
		if _, err := s.step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if r := row(t, q, good, "presentation"); r.State != StateShipped {
		t.Errorf("good recording %s, want shipped", r.State)
	}
	if r := row(t, q, corrupt, "presentation"); r.State != StateQuarantined || !strings.Contains(r.LastError, "metadata.xml") {
		t.Errorf("corrupt: %s %q, want quarantined with the reason", r.State, r.LastError)
	}
	if r := row(t, q, missing, "video"); r.State != StateQuarantined || !strings.Contains(r.LastError, "does not exist") {
		t.Errorf("missing: %s %q, want quarantined: metadata.xml does not exist", r.State, r.LastError)
	}
	if st.Calls() != 1 {
		t.Errorf("%d Ship calls, want 1 (the good one)", st.Calls())
	}
	// Fixed by a rebuild: the next scan sees the change and ships it.
	publish(t, root, corrupt, "presentation", 3)
	if _, err := s.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	s.step(ctx)
	if r := row(t, q, corrupt, "presentation"); r.State != StateShipped {
		t.Errorf("after the fix: %s %q, want shipped", r.State, r.LastError)
	}
	b, _ := s.Backlog(ctx)
	if b.Quarantined != 1 || b.Pending() != 0 || !strings.Contains(b.LastFailure, missing) {
		t.Errorf("Backlog = %+v, want 1 quarantined, nothing pending, the last failure", b)
	}
	// The operator publishes it and retries.
	publish(t, root, missing, "video", 4)
	if n, err := s.Retry(ctx, missing); n != 1 || err != nil {
		t.Fatalf("Retry = %d, %v; want 1 row", n, err)
	}
	s.step(ctx)
	rows, err := s.List(ctx)
	if err != nil || len(rows) != 3 {
		t.Fatalf("List = %d rows, %v", len(rows), err)
	}
	for _, r := range rows {
		if r.State != StateShipped || r.Attempts > 1 {
			t.Errorf("%s/%s: %s after %d attempts, want shipped", r.RecordID, r.Format, r.State, r.Attempts)
		}
	}
}

type fakeIndexer struct {
	mu  sync.Mutex
	err error
	got []agentapi.RecordingMetadata
}

func (f *fakeIndexer) Index(_ context.Context, m agentapi.RecordingMetadata) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.got = append(f.got, m)
	return nil
}

func TestRebuildIndexAndDelete(t *testing.T) {
	root := t.TempDir()
	id := recordID(1)
	dir := publish(t, root, id, "presentation", 1)
	clock := testenv.NewClock()
	st := &fakeStorage{}
	// A rebuild lands while the first attempt ships.
	st.during = func() { os.WriteFile(filepath.Join(dir, "shapes.svg"), []byte("rebuilt"), 0o644) }
	ix := &fakeIndexer{err: errors.New("balancer unreachable")}
	s, q := newShipper(t, root, st, Config{Clock: clock, Indexer: ix, DeleteAfter: time.Hour, MinBackoff: time.Second})
	ctx := context.Background()
	if err := s.Notify(ctx, id, "presentation"); err != nil {
		t.Fatal(err)
	}
	s.step(ctx)
	if r := row(t, q, id, "presentation"); r.State != StateQueued || s.Stats().Rebuilds != 1 {
		t.Fatalf("after a rebuild during shipping: %s, stats %+v; want queued again", r.State, s.Stats())
	}
	s.step(ctx)
	r := row(t, q, id, "presentation")
	if r.State != StateShipped || !strings.Contains(r.LastError, "balancer unreachable") {
		t.Fatalf("row %s %q, want shipped, not indexed", r.State, r.LastError)
	}
	fp, _, _ := Fingerprint(dir)
	if r.Fingerprint != fp {
		t.Errorf("shipped fingerprint %s, want the rebuilt tree's %s", r.Fingerprint, fp)
	}
	// Not due yet: nothing happens; the local copy stays.
	s.step(ctx)
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("local copy gone early: %v", err)
	}
	ix.mu.Lock()
	ix.err = nil
	ix.mu.Unlock()
	clock.Advance(10 * time.Second)
	s.step(ctx)
	if r := row(t, q, id, "presentation"); r.State != StateIndexed {
		t.Fatalf("row %s, want indexed", r.State)
	}
	if len(ix.got) != 1 || ix.got[0].RecordID != id || ix.got[0].Storage != "fake" || ix.got[0].Formats[0].Type != "presentation" {
		t.Errorf("indexed %+v", ix.got)
	}
	clock.Advance(59 * time.Minute)
	s.step(ctx)
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("local copy deleted before DeleteAfter: %v", err)
	}
	clock.Advance(time.Minute)
	if did, err := s.step(ctx); !did || err != nil {
		t.Fatalf("step = %v, %v; want the delete", did, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("local copy still there after DeleteAfter: %v", err)
	}
	b, _ := s.Backlog(ctx)
	if b.FreedBytes <= 0 || b.Pending() != 0 {
		t.Errorf("Backlog = %+v, want freed bytes", b)
	}
	// A scan does not queue it again.
	if n, _ := s.Scan(ctx); n != 0 {
		t.Errorf("scan queued %d rows after the delete", n)
	}
}

// runUntilShipped runs the shipper until every found format is shipped.
func runUntilShipped(t *testing.T, s *Shipper, q *Queue, n int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	testenv.Eventually(t, 2*time.Minute, "every format shipped", func() bool {
		rows, _ := q.List(context.Background())
		shipped := 0
		for _, r := range rows {
			if r.State == StateShipped {
				shipped++
			}
		}
		return shipped == n
	})
}

func TestEndToEndS3(t *testing.T) {
	srv := testenv.S3(t)
	srv.CreateBucket(t, "recordings")
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	t.Setenv("AWS_REGION", srv.Region)
	ctx := context.Background()
	st, err := storage.Open(ctx, "s3://recordings/fleet", storage.Options{S3Endpoint: srv.Endpoint})
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	var dirs []string
	for i := range 4 {
		id := recordID(i)
		dirs = append(dirs, publish(t, root, id, "presentation", i), publish(t, root, id, "video", i))
	}
	s, q := newShipper(t, root, st, Config{})
	runUntilShipped(t, s, q, len(dirs))
	client := srv.Client()
	objects := 0
	for _, dir := range dirs {
		id, format := filepath.Base(dir), filepath.Base(filepath.Dir(dir))
		pre := "fleet/" + format + "/" + id + "/"
		want := sums(t, dir)
		for rel, sum := range want {
			if got := srv.ObjectSum(t, "recordings", pre+rel); got != sum {
				t.Errorf("%s%s: sha256 %s, want %s", pre, rel, got, sum)
			}
			objects++
		}
		out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("recordings"), Key: aws.String(pre + storage.ManifestName)})
		if err != nil {
			t.Fatalf("manifest of %s: %v", pre, err)
		}
		var m storage.Manifest
		json.NewDecoder(out.Body).Decode(&m)
		out.Body.Close()
		if len(m.Files) != len(want) {
			t.Errorf("manifest of %s lists %d files, want %d", pre, len(m.Files), len(want))
		}
		// The manifest is the format's last write.
		var last string
		for _, r := range srv.Requests(t, "PutObject") {
			if strings.HasPrefix(r.Key, pre) {
				last = r.Key
			}
		}
		if last != pre+storage.ManifestName {
			t.Errorf("last write under %s is %s, want the manifest", pre, last)
		}
	}
	st2 := s.Stats()
	t.Logf("s3: %d formats, %d objects with matching SHA-256, %d bytes shipped", st2.Shipped, objects, st2.BytesShipped)
	if st2.Shipped != uint64(len(dirs)) {
		t.Errorf("Stats.Shipped = %d, want %d", st2.Shipped, len(dirs))
	}
}

func TestEndToEndSpool(t *testing.T) {
	spool := t.TempDir()
	st, err := storage.Open(context.Background(), "spool:"+spool, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	ids := []string{recordID(1), recordID(2), recordID(3)}
	for i, id := range ids {
		publish(t, root, id, "presentation", i)
	}
	s, q := newShipper(t, root, st, Config{})
	runUntilShipped(t, s, q, len(ids))
	// A second format published later: the tar is written again with both.
	publish(t, root, ids[0], "video", 9)
	if err := s.Notify(context.Background(), ids[0], "video"); err != nil {
		t.Fatal(err)
	}
	runUntilShipped(t, s, q, len(ids)+1)
	for _, id := range ids {
		got := testenv.TarSums(t, filepath.Join(spool, id+".tar"))
		want := map[string]string{}
		for _, tree := range []string{"presentation", "video"} {
			dir := filepath.Join(root, "published", tree, id)
			if _, err := os.Stat(dir); err != nil {
				continue
			}
			for rel, sum := range sums(t, dir) {
				want[tree+"/"+id+"/"+rel] = sum
			}
		}
		if len(got) != len(want) {
			t.Errorf("%s.tar: %d files, want %d", id, len(got), len(want))
		}
		for name, sum := range want {
			if got[name] != sum {
				t.Errorf("%s.tar: %s sha256 %q, want %q", id, name, got[name], sum)
			}
		}
	}
	entries, _ := os.ReadDir(spool)
	if len(entries) != len(ids) {
		t.Errorf("spool holds %d files, want one tar per recording", len(entries))
	}
}

func TestRebuildThatFailsTheShipmentIsNotAnAttempt(t *testing.T) {
	root := t.TempDir()
	id := recordID(1)
	dir := publish(t, root, id, "presentation", 1)
	st := &fakeStorage{errOnce: errors.New("read shapes.svg: unexpected EOF (did it change while shipping?)")}
	st.during = func() { os.WriteFile(filepath.Join(dir, "shapes.svg"), []byte("shorter"), 0o644) }
	s, q := newShipper(t, root, st, Config{Clock: testenv.NewClock()})
	ctx := context.Background()
	if err := s.Notify(ctx, id, ""); err != nil {
		t.Fatal(err)
	}
	s.step(ctx)
	if r := row(t, q, id, "presentation"); r.State != StateQueued || r.Attempts != 0 || !r.NextTry.IsZero() {
		t.Fatalf("row %+v, want queued again at once, no attempt counted", r)
	}
	s.step(ctx)
	if r := row(t, q, id, "presentation"); r.State != StateShipped {
		t.Fatalf("row %s, want shipped", r.State)
	}
	if got := s.Stats(); got.Rebuilds != 1 || got.Failed != 0 || got.Shipped != 1 {
		t.Errorf("Stats = %+v", got)
	}
}

// TestNoDeleteBeforeIndexed: the local copy holds the metadata the fleet
// needs; with an Indexer, a copy shipped but not yet indexed (the balancer
// unreachable, or the agent killed between the two) stays until the index
// succeeds, however short DeleteAfter is. Found by cmd/bbb-agent's
// TestAgentCrashWhileShipping: recordings indexed with an empty meeting ID.
func TestNoDeleteBeforeIndexed(t *testing.T) {
	root := t.TempDir()
	id := recordID(1)
	dir := publish(t, root, id, "presentation", 1)
	clock := testenv.NewClock()
	ix := &fakeIndexer{err: errors.New("balancer unreachable")}
	s, q := newShipper(t, root, &fakeStorage{}, Config{Clock: clock, Indexer: ix, DeleteAfter: time.Nanosecond, MinBackoff: time.Minute})
	ctx := context.Background()
	if err := s.Notify(ctx, id, "presentation"); err != nil {
		t.Fatal(err)
	}
	s.step(ctx)
	if r := row(t, q, id, "presentation"); r.State != StateShipped {
		t.Fatalf("row %s, want shipped, not indexed", r.State)
	}
	clock.Advance(time.Second) // past DeleteAfter, before the index retry
	if did, err := s.step(ctx); did || err != nil {
		t.Errorf("step = %v, %v; want nothing to do until the index retry", did, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "metadata.xml")); err != nil {
		t.Fatalf("local copy deleted before the fleet was told: %v", err)
	}
	ix.mu.Lock()
	ix.err = nil
	ix.mu.Unlock()
	clock.Advance(time.Hour)
	for range 2 {
		s.step(ctx)
	}
	if r := row(t, q, id, "presentation"); r.State != StateIndexed || r.DeletedAt.IsZero() {
		t.Fatalf("row %s deleted at %v, want indexed and deleted", r.State, r.DeletedAt)
	}
	if len(ix.got) != 1 || ix.got[0].MeetingID == "" {
		t.Errorf("indexed %+v, want the metadata.xml's meeting ID", ix.got)
	}
}

// TestIndexNotYet: an index the fleet cannot take yet (the node is not
// registered again after a restart) is asked again within seconds, and is
// no failed attempt: no backoff grows, nothing counts as failed.
func TestIndexNotYet(t *testing.T) {
	root := t.TempDir()
	id := recordID(1)
	publish(t, root, id, "presentation", 1)
	clock := testenv.NewClock()
	ix := &fakeIndexer{err: fmt.Errorf("%w: register first", ErrNotYet)}
	s, q := newShipper(t, root, &fakeStorage{}, Config{Clock: clock, Indexer: ix, MinBackoff: time.Minute})
	ctx := context.Background()
	if err := s.Notify(ctx, id, "presentation"); err != nil {
		t.Fatal(err)
	}
	s.step(ctx)
	if r := row(t, q, id, "presentation"); r.State != StateShipped || r.Attempts != 0 || r.LastError != "" || s.Stats().Failed != 0 {
		t.Fatalf("after a not-yet: %s, %d attempts, %q, stats %+v; want shipped, no attempt, no error", r.State, r.Attempts, r.LastError, s.Stats())
	}
	ix.mu.Lock()
	ix.err = nil
	ix.mu.Unlock()
	clock.Advance(notYetWait)
	s.step(ctx)
	if r := row(t, q, id, "presentation"); r.State != StateIndexed {
		t.Fatalf("%s after %v, want indexed (not after the %v backoff)", r.State, notYetWait, time.Minute)
	}
}
