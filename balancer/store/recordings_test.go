package store

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/agentapi"
)

func shipped(id, meetingID string, start int64, meta map[string]string, formats ...string) agentapi.RecordingMetadata {
	m := agentapi.RecordingMetadata{
		RecordID: id, MeetingID: id, ExternalID: meetingID, Name: "Lecture " + meetingID, State: "published", Published: true,
		StartTime: time.UnixMilli(start), EndTime: time.UnixMilli(start + 600_000), Participants: 3, Meta: meta, RawSize: 1000,
		Storage: "s3://rec/prefix", Location: "prefix/" + id, ShippedAt: t0, SHA256: "aa",
	}
	for _, f := range formats {
		m.Formats = append(m.Formats, agentapi.RecordingFormat{Type: f, Link: "https://node/playback/" + f + "/2.3/" + id, Duration: 600_000, Size: 100})
	}
	return m
}

func TestUpsertRecording(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, _ backend) {
		ctx := t.Context()
		m := shipped("r1", "m1", 1000, map[string]string{"origin": "Greenlight"}, "presentation")
		created, changed, err := s.UpsertRecording(ctx, "bbb1", m, t0)
		if err != nil || !created || !changed {
			t.Fatalf("first upsert: created %v changed %v err %v", created, changed, err)
		}
		// The same shipment again changes nothing.
		created, changed, err = s.UpsertRecording(ctx, "bbb1", m, t0.Add(time.Minute))
		if err != nil || created || changed {
			t.Fatalf("re-ship: created %v changed %v err %v", created, changed, err)
		}
		r, err := s.Recording(ctx, "r1")
		if err != nil || !r.UpdatedAt.Equal(t0) || r.Size != 100 || r.State != RecordingPublished || r.MeetingID != "m1" {
			t.Fatalf("after re-ship: %+v %v", r, err)
		}
		// An operator unpublishes and changes metadata; then a format is
		// rebuilt and another one added: the decision and metadata stay.
		if _, err := s.SetRecordingState(ctx, []string{"r1"}, RecordingUnpublished, t0); err != nil {
			t.Fatal(err)
		}
		if n, err := s.UpdateRecordingMeta(ctx, []string{"r1"}, []MetaFilter{{"origin", ""}, {"course", "bio"}}, t0); err != nil || n != 1 {
			t.Fatal(n, err)
		}
		rebuilt := shipped("r1", "m1", 1000, map[string]string{"origin": "Greenlight"}, "presentation", "video")
		rebuilt.Formats[0].Size = 150
		rebuilt.ShippedAt = t0.Add(time.Hour)
		rebuilt.SHA256 = "bb"
		if _, changed, err := s.UpsertRecording(ctx, "bbb2", rebuilt, t0.Add(time.Hour)); err != nil || !changed {
			t.Fatal(changed, err)
		}
		r, _ = s.Recording(ctx, "r1")
		if r.State != RecordingUnpublished || r.Meta["course"] != "bio" || r.Meta["origin"] != "" || r.Size != 250 || len(r.Formats) != 2 {
			t.Fatalf("after rebuild: %+v", r)
		}
		if f, _ := r.Format("presentation"); f.SHA256 != "bb" || f.Node != "bbb2" || f.Size != 150 {
			t.Errorf("rebuilt format %+v", f)
		}
		// A late, older shipment does not replace the newer one.
		if _, changed, err := s.UpsertRecording(ctx, "bbb1", m, t0.Add(2*time.Hour)); err != nil || changed {
			t.Errorf("old shipment: changed %v err %v", changed, err)
		}
	})
}

func TestRecordingsQuery(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, _ backend) {
		ctx := t.Context()
		for i := range 12 {
			meta := map[string]string{"course": fmt.Sprintf("bio-%d", i%3), "Origin": "Greenlight"}
			if i%4 == 0 {
				meta["origin"] = "Moodle"
				delete(meta, "Origin")
			}
			m := shipped(fmt.Sprintf("rec-%02d", i), fmt.Sprintf("m%d", i%2), int64(1000+i), meta, "presentation")
			if _, _, err := s.UpsertRecording(ctx, "bbb1", m, t0); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.SetRecordingState(ctx, []string{"rec-00", "rec-01"}, RecordingDeleted, t0); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SetRecordingState(ctx, []string{"rec-02"}, RecordingUnpublished, t0); err != nil {
			t.Fatal(err)
		}
		pub := []string{RecordingPublished, RecordingUnpublished}
		tests := []struct {
			name  string
			q     RecordingQuery
			want  []string
			total int
		}{
			{"all listed", RecordingQuery{States: pub, Limit: 3}, []string{"rec-11", "rec-10", "rec-09"}, 10},
			{"page 2", RecordingQuery{States: pub, Offset: 8, Limit: 3}, []string{"rec-03", "rec-02"}, 10},
			{"past the end", RecordingQuery{States: pub, Offset: 10, Limit: 3}, nil, 10},
			{"any state", RecordingQuery{Offset: 10}, []string{"rec-01", "rec-00"}, 12},
			{"deleted", RecordingQuery{States: []string{RecordingDeleted}}, []string{"rec-01", "rec-00"}, 2},
			{"meeting", RecordingQuery{MeetingIDs: []string{"m1"}, States: pub}, []string{"rec-11", "rec-09", "rec-07", "rec-05", "rec-03"}, 5},
			{"record ID prefix wins over meeting", RecordingQuery{RecordIDs: []string{"rec-1", "rec-02"}, MeetingIDs: []string{"m1"}, States: pub},
				[]string{"rec-11", "rec-10", "rec-02"}, 3},
			{"meta exact, key case", RecordingQuery{Meta: []MetaFilter{{"COURSE", "bio-1"}}, States: pub}, []string{"rec-10", "rec-07", "rec-04"}, 3},
			{"meta ANDed", RecordingQuery{Meta: []MetaFilter{{"course", "bio-1"}, {"origin", "Moodle"}}, States: pub}, []string{"rec-04"}, 1},
			{"meta prefix", RecordingQuery{Meta: []MetaFilter{{"origin", "Moo%"}}, States: pub}, []string{"rec-08", "rec-04"}, 2},
			{"meta suffix", RecordingQuery{Meta: []MetaFilter{{"course", "%-2"}}, States: pub}, []string{"rec-11", "rec-08", "rec-05", "rec-02"}, 4},
			{"meta contains", RecordingQuery{Meta: []MetaFilter{{"origin", "%ee%"}}, States: pub}, []string{"rec-11", "rec-10", "rec-09", "rec-07", "rec-06", "rec-05", "rec-03", "rec-02"}, 8},
			{"meta case-sensitive value", RecordingQuery{Meta: []MetaFilter{{"origin", "moodle"}}, States: pub}, nil, 0},
			{"meta missing key", RecordingQuery{Meta: []MetaFilter{{"nope", "%"}}}, nil, 0},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				recs, total, err := s.Recordings(ctx, tt.q)
				if err != nil {
					t.Fatal(err)
				}
				var ids []string
				for _, r := range recs {
					ids = append(ids, r.RecordID)
				}
				if !slices.Equal(ids, tt.want) || total != tt.total {
					t.Errorf("got %v (total %d), want %v (total %d)", ids, total, tt.want, tt.total)
				}
			})
		}
	})
}
