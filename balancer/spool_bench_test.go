package balancer

import (
	"context"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/bbb/sim"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
	"github.com/bbb-agent/bbb-agent/recordings/storage"
)

// BenchmarkSpoolImport imports b.N Scalelite tars (bbb-sim recordings of
// 256 KiB files, about 0.6 MiB a tar, written by the agent's spool writer) in one
// pass, on SQLite and PostgreSQL, and reports tars/s and MiB/s.
func BenchmarkSpoolImport(b *testing.B) {
	for _, bk := range []struct {
		name string
		dsn  func(b *testing.B) string
	}{
		{"sqlite", func(b *testing.B) string { return "sqlite:" + b.TempDir() + "/balancer.db" }},
		{"postgres", func(b *testing.B) string { return testenv.Postgres(b) }},
	} {
		b.Run(bk.name, func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
			defer cancel()
			simClock := testenv.NewClock()
			recDir := b.TempDir()
			srv := sim.New(sim.Config{Secret: "node-secret-1-abcdef", Seed: 1, RecordingsDir: recDir, RecordingFileSize: 256 << 10, Clock: simClock.Now})
			simHTTP := httptest.NewServer(srv)
			defer simHTTP.Close()
			cl, err := bbb.NewClient(simHTTP.URL, "node-secret-1-abcdef")
			if err != nil {
				b.Fatal(err)
			}
			spool := b.TempDir()
			writer := storage.NewSpool(spool)
			var bytes int64
			for i := range b.N {
				m := fmt.Sprintf("bench-%d", i)
				var cr bbb.CreateResponse
				if err := cl.Get(ctx, bbb.CallCreate, url.Values{"meetingID": {m}, "name": {m}, "record": {"true"}}, &cr); err != nil {
					b.Fatal(err)
				}
				if err := cl.Get(ctx, bbb.CallJoin, url.Values{"meetingID": {m}, "fullName": {"T"}, "role": {"moderator"}, "redirect": {"false"}}, nil); err != nil {
					b.Fatal(err)
				}
				simClock.Advance(10 * time.Minute)
				if err := cl.Get(ctx, bbb.CallEnd, url.Values{"meetingID": {m}}, nil); err != nil {
					b.Fatal(err)
				}
				simClock.Advance(time.Minute)
				id := cr.InternalMeetingID
				dir := filepath.Join(recDir, "published", "presentation", id)
				if _, err := writer.Ship(ctx, storage.Shipment{Item: storage.Item{RecordID: id, Format: "presentation", Dir: dir}}); err != nil {
					b.Fatal(err)
				}
				fi, err := os.Stat(writer.TarPath(id))
				if err != nil {
					b.Fatal(err)
				}
				bytes += fi.Size()
			}
			st := openStore(b, bk.dsn(b))
			lb := newRecReplica(b, st, testenv.NewClock(), RecordingsConfig{Storage: "dir:" + b.TempDir(), Spool: spool, Replica: "bench"})
			b.ResetTimer()
			n, err := lb.ImportSpool(ctx)
			b.StopTimer()
			if err != nil || n != b.N {
				b.Fatalf("imported %d of %d: %v", n, b.N, err)
			}
			secs := b.Elapsed().Seconds()
			b.ReportMetric(float64(b.N)/secs, "tars/s")
			b.ReportMetric(float64(bytes)/(1<<20)/secs, "MiB/s")
		})
	}
}
