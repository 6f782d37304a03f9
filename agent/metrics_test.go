package agent

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/bbb/sim"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
	"github.com/bbb-agent/bbb-agent/recordings"
)

// scrape reads a metrics handler's samples: "name{labels}" -> value text.
func scrape(t *testing.T, a *Agent) map[string]string {
	t.Helper()
	srv := httptest.NewServer(a.MetricsHandler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		out[line[:i]] = line[i+1:]
	}
	return out
}

// TestExporterMetrics: the bigbluebutton-exporter series of a node whose
// meetings are known: two with people (one with origin metadata and a
// breakout room), one nobody joined.
func TestExporterMetrics(t *testing.T) {
	ctx := context.Background()
	s := sim.New(sim.Config{Secret: "metrics-secret", BBBVersion: "3.0.9"})
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	c, err := bbb.NewClient(srv.URL, "metrics-secret")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []bbb.CreateRequest{
		{MeetingID: "ma", Name: "A"},
		{MeetingID: "mb", Name: "B", Meta: map[string]string{"bbb-origin-server-name": "LMS.example.org", "bbb-origin": "Moodle"}},
		{MeetingID: "mc", Name: "C"},
	} {
		if _, err := c.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for _, add := range []struct {
		id   string
		spec sim.AttendeeSpec
	}{
		{"ma", sim.AttendeeSpec{Count: 3, Voice: true}},
		{"ma", sim.AttendeeSpec{Count: 2, ListenOnly: true}},
		{"ma", sim.AttendeeSpec{Count: 1, Video: true}},
		{"ma", sim.AttendeeSpec{Count: 1}},
		{"mb", sim.AttendeeSpec{Count: 2, Video: true, Voice: true}},
		{"mb", sim.AttendeeSpec{Count: 2}},
	} {
		if _, err := s.AddAttendees(add.id, add.spec); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.AddBreakouts("mb", sim.BreakoutSpec{Rooms: 1, AttendeesPerRoom: 2}); err != nil {
		t.Fatal(err)
	}

	a, err := New(Config{Node: "bbb1", Clock: testenv.NewClock(), Logger: slog.New(slog.DiscardHandler)},
		Deps{Registrar: &fakeRegistrar{}, BBB: c})
	if err != nil {
		t.Fatal(err)
	}
	if got := scrape(t, a); got[`bbb_api_up{node="bbb1"}`] != "0" || got[`bbb_meetings{node="bbb1"}`] != "" {
		t.Errorf("before the first poll: bbb_api_up %q, bbb_meetings %q; want 0 and absent", got[`bbb_api_up{node="bbb1"}`], got[`bbb_meetings{node="bbb1"}`])
	}
	a.tick(ctx)
	got := scrape(t, a)
	// Meetings a (7 people: 3 voice, 2 listen-only, 1 video, 1 neither), b (4:
	// 2 with microphone and webcam) and its room (2), c (nobody): like the
	// exporter, every meeting BBB lists counts, the room included.
	want := map[string]float64{
		`bbb_exporter{node="bbb1",version="` + Version + `"}`:                                  1,
		`bbb_version{node="bbb1",version="3.0.9"}`:                                             1,
		`bbb_api_up{node="bbb1"}`:                                                              1,
		`bbb_meetings{node="bbb1"}`:                                                            4,
		`bbb_meetings_participants{node="bbb1"}`:                                               13,
		`bbb_meetings_participants_max{node="bbb1"}`:                                           7,
		`bbb_meetings_listeners{node="bbb1"}`:                                                  2,
		`bbb_meetings_voice_participants{node="bbb1"}`:                                         7,
		`bbb_meetings_video_participants{node="bbb1"}`:                                         3,
		`bbb_meetings_participant_clients{node="bbb1",type="html5"}`:                           13,
		`bbb_meetings_participant_clients{node="bbb1",type="dial-in"}`:                         0,
		`bbb_meetings_participants_origin{name="",node="bbb1",server=""}`:                      7,
		`bbb_meetings_participants_origin{name="moodle",node="bbb1",server="lms.example.org"}`: 6,
		`bbb_unique_meetings_total{node="bbb1"}`:                                               3,
		`bbb_unique_breakout_rooms_total{node="bbb1"}`:                                         1,
		`bbb_room_participants_bucket{le="0.0",node="bbb1"}`:                                   1,
		`bbb_room_participants_bucket{le="1.0",node="bbb1"}`:                                   1,
		`bbb_room_participants_bucket{le="5.0",node="bbb1"}`:                                   3,
		`bbb_room_participants_bucket{le="15.0",node="bbb1"}`:                                  4,
		`bbb_room_participants_bucket{le="+Inf",node="bbb1"}`:                                  4,
		`bbb_room_participants_gcount{node="bbb1"}`:                                            4,
		`bbb_room_participants_gsum{node="bbb1"}`:                                              13,
		`bbb_room_listeners_bucket{le="1.0",node="bbb1"}`:                                      3,
		`bbb_room_listeners_gsum{node="bbb1"}`:                                                 2,
		`bbb_room_voice_participants_bucket{le="1.0",node="bbb1"}`:                             2,
		`bbb_room_voice_participants_gsum{node="bbb1"}`:                                        7,
		`bbb_room_video_participants_bucket{le="0.0",node="bbb1"}`:                             2,
		`bbb_room_video_participants_bucket{le="120.0",node="bbb1"}`:                           4,
		`bbb_room_video_participants_gcount{node="bbb1"}`:                                      4,
		`bbb_api_latency_count{endpoint="getMeetings",node="bbb1",parameters=""}`:              1,
		`bbb_api_latency_bucket{endpoint="getMeetings",node="bbb1",parameters="",le="0.01"}`:   1,
		// The agent's own figures count running non-breakout meetings.
		`bbb_agent_meetings`:     3,
		`bbb_agent_participants`: 11,
	}
	checkSamples(t, got, want)
	// Every series the exporter's own Grafana dashboards (all servers, server
	// instance) query, but the recordings counts: bbb_recordings_processing
	// needs the recordings shipper (TestExporterRecordings), the other four
	// the agent does not have (README.md says so).
	names := map[string]bool{}
	for k := range got {
		names[strings.FieldsFunc(k, func(r rune) bool { return r == '{' })[0]] = true
	}
	for _, n := range []string{"bbb_exporter", "bbb_api_up", "bbb_meetings_participants", "bbb_meetings_listeners",
		"bbb_meetings_voice_participants", "bbb_meetings_video_participants", "bbb_meetings_participant_clients",
		"bbb_meetings_participants_origin", "bbb_room_participants_gcount", "bbb_room_participants_bucket",
		"bbb_room_listeners_bucket", "bbb_room_voice_participants_bucket", "bbb_room_video_participants_bucket",
		"bbb_unique_meetings_total", "bbb_unique_breakout_rooms_total", "bbb_api_latency_bucket"} {
		if !names[n] {
			t.Errorf("%s missing: the exporter's dashboards query it", n)
		}
	}

	// BBB stops answering: api down, the meeting figures unknown (absent,
	// not zero), the counters kept.
	if err := s.SetAnswering(sim.AnswerRefuse); err != nil {
		t.Fatal(err)
	}
	a.tick(ctx)
	got = scrape(t, a)
	checkSamples(t, got, map[string]float64{
		`bbb_api_up{node="bbb1"}`:                                                 0,
		`bbb_unique_meetings_total{node="bbb1"}`:                                  3,
		`bbb_api_latency_count{endpoint="getMeetings",node="bbb1",parameters=""}`: 2,
	})
	for _, absent := range []string{`bbb_meetings{node="bbb1"}`, `bbb_meetings_participants{node="bbb1"}`, `bbb_room_participants_gcount{node="bbb1"}`} {
		if v, ok := got[absent]; ok {
			t.Errorf("%s = %s while BBB does not answer; want it absent", absent, v)
		}
	}

	// Back, with c ended and d new: one more unique meeting, c not counted twice.
	if err := s.SetAnswering(sim.AnswerNormal); err != nil {
		t.Fatal(err)
	}
	if err := s.EndMeeting("mc", true); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, bbb.CreateRequest{MeetingID: "md", Name: "D"}); err != nil {
		t.Fatal(err)
	}
	a.tick(ctx)
	checkSamples(t, scrape(t, a), map[string]float64{
		`bbb_api_up{node="bbb1"}`:                1,
		`bbb_meetings{node="bbb1"}`:              4,
		`bbb_unique_meetings_total{node="bbb1"}`: 4,
	})
}

// TestExporterRecordings: bbb_recordings_processing is the recordings
// backlog's processing count, and absent while the backlog cannot be read.
func TestExporterRecordings(t *testing.T) {
	rec := &fakeRecordings{backlog: recordings.Backlog{Processing: 2, Queued: 1}}
	c, err := bbb.NewClient("http://127.0.0.1:9", "never-answers")
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{Node: "bbb1", Logger: slog.New(slog.DiscardHandler)}, Deps{Registrar: &fakeRegistrar{}, BBB: c, Recordings: rec})
	if err != nil {
		t.Fatal(err)
	}
	a.measureRecordings(context.Background())
	checkSamples(t, scrape(t, a), map[string]float64{`bbb_recordings_processing{node="bbb1"}`: 2})
	rec.set(recordings.Backlog{}, errors.New("queue locked"))
	a.measureRecordings(context.Background())
	if v, ok := scrape(t, a)[`bbb_recordings_processing{node="bbb1"}`]; ok {
		t.Errorf("bbb_recordings_processing = %s while the backlog cannot be read; want it absent", v)
	}
}

// checkSamples compares scraped samples with wanted values.
func checkSamples(t *testing.T, got map[string]string, want map[string]float64) {
	t.Helper()
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s missing", k)
			continue
		}
		if v, err := strconv.ParseFloat(g, 64); err != nil || v != w {
			t.Errorf("%s = %s, want %v", k, g, w)
		}
	}
}
