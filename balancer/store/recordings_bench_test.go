package store

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// benchRecordings is the index size of BenchmarkGetRecordings: 10,000
// meetings with 10 recordings each, three metadata keys per recording.
const benchRecordings, benchMeetings = 100_000, 10_000

// loadRecordings bulk-inserts the benchmark's recordings in batches of
// multi-row INSERTs, in one transaction: the upsert path would take
// minutes for 100,000 rows and is not what is measured.
func loadRecordings(b *testing.B, s *Store) {
	b.Helper()
	tx, err := s.db.BeginTx(b.Context(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Rollback()
	const batch = 500
	formats := `[{"type":"presentation","link":"https://bbb1/playback/presentation/2.3/ID","processing_time_ms":2000,"duration_ms":3600000,"size":1000000}]`
	for lo := 0; lo < benchRecordings; lo += batch {
		var (
			recs, metas       []string
			recArgs, metaArgs []any
		)
		for i := lo; i < min(lo+batch, benchRecordings); i++ {
			id := fmt.Sprintf("%040x-%d", i, 1700000000000+int64(i)*60000)
			state := RecordingPublished
			switch i / benchMeetings { // each meeting: 8 published, 1 unpublished, 1 deleted
			case 7:
				state = RecordingUnpublished
			case 3:
				state = RecordingDeleted
			}
			origin := []string{"Greenlight", "Moodle"}[(i/1000)%2]
			course := fmt.Sprintf("course-%04d", i%1000)
			meta := fmt.Sprintf(`{"origin":%q,"course":%q,"bbb-context-id":"%d"}`, origin, course, i%5000)
			recs = append(recs, "(?, ?, ?, ?, 0, ?, ?, ?, 5, 2000000, 1000000, 0, ?, ?, 'bbb1', ?, ?)")
			recArgs = append(recArgs, id, fmt.Sprintf("meeting-%05d", i%benchMeetings), id, "Lecture", state,
				1700000000000+int64(i)*60000, 1700000000000+int64(i)*60000+3600000, meta, formats, int64(1), int64(1))
			for k, v := range map[string]string{"origin": origin, "course": course, "bbb-context-id": fmt.Sprint(i % 5000)} {
				metas = append(metas, "(?, ?, ?)")
				metaArgs = append(metaArgs, id, k, v)
			}
		}
		if _, err := tx.ExecContext(b.Context(), s.q(`INSERT INTO recordings (`+recordingColumns+`) VALUES `+strings.Join(recs, ",")), recArgs...); err != nil {
			b.Fatal(err)
		}
		if _, err := tx.ExecContext(b.Context(), s.q(`INSERT INTO recording_meta (record_id, key, value) VALUES `+strings.Join(metas, ",")), metaArgs...); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	if _, err := s.db.ExecContext(b.Context(), `ANALYZE`); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkGetRecordings measures getRecordings' queries on an index of
// 100,000 recordings: one meeting's recordings, a meta filter, and a page
// of the whole listing. p50 and p99 are reported per query.
func BenchmarkGetRecordings(b *testing.B) {
	pub := []string{RecordingPublished, RecordingUnpublished}
	queries := []struct {
		name string
		q    func(r *rand.Rand) RecordingQuery
	}{
		{"meetingID", func(r *rand.Rand) RecordingQuery {
			return RecordingQuery{MeetingIDs: []string{fmt.Sprintf("meeting-%05d", r.IntN(benchMeetings))}, States: pub}
		}},
		{"meta", func(r *rand.Rand) RecordingQuery {
			return RecordingQuery{States: pub, Meta: []MetaFilter{{"course", fmt.Sprintf("course-%04d", r.IntN(1000))}, {"origin", "Green%"}}}
		}},
		{"paged", func(r *rand.Rand) RecordingQuery {
			return RecordingQuery{States: pub, Offset: 100 * r.IntN(10), Limit: 100}
		}},
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			s := backend{dsn: be.dsn(b)}.open(b)
			start := time.Now()
			loadRecordings(b, s)
			b.Logf("%s: loaded %d recordings in %v", be.name, benchRecordings, time.Since(start).Round(time.Millisecond))
			for _, qq := range queries {
				b.Run(qq.name, func(b *testing.B) {
					r := rand.New(rand.NewPCG(1, 2))
					var lat []time.Duration
					for b.Loop() {
						q := qq.q(r)
						t := time.Now()
						recs, total, err := s.Recordings(b.Context(), q)
						lat = append(lat, time.Since(t))
						if err != nil || len(recs) == 0 || total == 0 {
							b.Fatalf("%+v: %d recordings, total %d, %v", q, len(recs), total, err)
						}
					}
					slices.Sort(lat)
					pct := func(p float64) float64 {
						return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds())
					}
					b.ReportMetric(pct(0.50), "p50-µs")
					b.ReportMetric(pct(0.99), "p99-µs")
				})
			}
		})
	}
}
