package recordings

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/bbb/sim"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
	"github.com/bbb-agent/bbb-agent/recordings/storage"
)

// TestSimRecordingsToS3: meetings with record=true end on bbb-sim, which
// publishes their recordings as BBB does (then a second format, then a
// rebuild); the shipper puts every file into versitygw with its SHA-256.
func TestSimRecordingsToS3(t *testing.T) {
	srv := testenv.S3(t)
	srv.CreateBucket(t, "rec")
	root := t.TempDir()
	bbbSim := sim.New(sim.Config{Secret: "sim-secret", RecordingsDir: root, RecordingFileSize: 256 << 10,
		Logger: slog.New(slog.DiscardHandler)})
	ts := httptest.NewServer(bbbSim)
	defer ts.Close()
	client, err := bbb.NewClient(ts.URL, "sim-secret")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var ids []string
	for i := range 3 {
		mid := fmt.Sprintf("lecture-%d", i)
		cr, err := client.Create(ctx, bbb.CreateRequest{MeetingID: mid, Name: "Lecture", Record: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := client.Join(ctx, bbb.JoinRequest{MeetingID: mid, FullName: "Teacher", Role: "MODERATOR"}); err != nil {
			t.Fatal(err)
		}
		if err := bbbSim.EndMeeting(mid, false); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, cr.InternalMeetingID)
	}
	if err := bbbSim.PublishFormat(ids[0], "video"); err != nil {
		t.Fatal(err)
	}
	st := storage.NewS3Client(srv.Client(), "rec", "fleet")
	s, q := newShipper(t, root, st, Config{})
	runUntilShipped(t, s, q, len(ids)+1)

	// A rebuild of the second recording: shipped again, only what changed.
	before := len(srv.Requests(t, "PutObject"))
	if err := bbbSim.Rebuild(ids[1]); err != nil {
		t.Fatal(err)
	}
	if err := s.Notify(ctx, ids[1], "presentation"); err != nil {
		t.Fatal(err)
	}
	// The shipper is stopped: the row waits, queued again.
	if r, _, _ := q.Get(ctx, ids[1], "presentation"); r.State != StateQueued {
		t.Fatalf("after the rebuild's notify the row is %s, want queued", r.State)
	}
	runUntilShipped(t, s, q, len(ids)+1)
	rewritten := len(srv.Requests(t, "PutObject")) - before

	objects := 0
	for _, f := range mustScan(t, root) {
		pre := "fleet/" + f.Format + "/" + f.RecordID + "/"
		for rel, sum := range sums(t, f.Dir) {
			if got := srv.ObjectSum(t, "rec", pre+rel); got != sum {
				t.Errorf("%s%s: sha256 %s, want %s", pre, rel, got, sum)
			}
			objects++
		}
	}
	t.Logf("bbb-sim → s3: %d formats of %d recordings, %d objects match; a rebuild rewrote %d objects (metadata.xml, manifest)",
		len(mustScan(t, root)), len(ids), objects, rewritten)
	if rewritten < 2 {
		t.Errorf("the rebuild rewrote %d objects, want at least metadata.xml and the manifest", rewritten)
	}
	m, err := ReadMetadata(filepath.Join(root, "published", "video", ids[0]))
	if err != nil || m.State != "available" || !m.Published {
		t.Errorf("video metadata %+v, %v", m, err)
	}
}

func mustScan(t *testing.T, root string) []Found {
	t.Helper()
	found, err := Scan(root)
	if err != nil {
		t.Fatal(err)
	}
	return found
}
