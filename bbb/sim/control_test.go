package sim

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/bbb-agent/bbb-agent/bbb"
)

// control posts a JSON body to a control endpoint and decodes the answer.
func (e *env) control(method, path string, in, out any) int {
	e.t.Helper()
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			e.t.Fatal(err)
		}
	}
	resp, b := e.do(method, e.ts.URL+path, body)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		e.t.Fatalf("%s %s: Content-Type %q: %s", method, path, ct, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.StatusCode
}

func TestControlAPI(t *testing.T) {
	e := newEnv(t)
	e.create(vals("meetingID", "c1", "record", "true"))

	var added struct{ UserIDs []string }
	if code := e.control(http.MethodPost, "/sim/attendees", map[string]any{
		"meetingID": "c1", "count": 3, "role": "moderator", "voice": true, "video": true,
	}, &added); code != http.StatusOK || len(added.UserIDs) != 3 {
		t.Fatalf("HTTP %d, %+v", code, added)
	}
	e.control(http.MethodPost, "/sim/attendees", map[string]any{"meetingID": "c1", "count": 2, "listenOnly": true, "fullName": "Listener"}, nil)
	mi := e.info("c1")
	if mi.ParticipantCount != 5 || mi.ModeratorCount != 3 || mi.VideoCount != 3 || mi.ListenerCount != 2 || mi.VoiceParticipantCount != 5 || !mi.Running {
		t.Errorf("after adding attendees: %+v", mi.Meeting)
	}
	if mi.Attendees[4].FullName != "Listener" || mi.Attendees[0].UserID != added.UserIDs[0] {
		t.Errorf("attendees %+v", mi.Attendees)
	}

	var removed struct{ Removed int }
	e.control(http.MethodPost, "/sim/attendees/remove", map[string]any{"meetingID": "c1", "count": 2}, &removed)
	if removed.Removed != 2 || e.info("c1").ParticipantCount != 3 {
		t.Errorf("removed %d", removed.Removed)
	}
	e.control(http.MethodPost, "/sim/attendees/remove", map[string]any{"meetingID": "c1", "all": true}, &removed)
	if mi := e.info("c1"); removed.Removed != 3 || mi.ParticipantCount != 0 || !mi.Running {
		t.Errorf("removed %d; the meeting must go on without users: %+v", removed.Removed, mi.Meeting)
	}

	var rooms struct{ MeetingIDs []string }
	e.control(http.MethodPost, "/sim/breakouts", map[string]any{"meetingID": "c1", "rooms": 2, "attendeesPerRoom": 2}, &rooms)
	if len(rooms.MeetingIDs) != 2 {
		t.Fatalf("rooms %+v", rooms)
	}

	var st State
	if code := e.control(http.MethodGet, "/sim/state", nil, &st); code != http.StatusOK {
		t.Fatalf("HTTP %d", code)
	}
	if len(st.Meetings) != 3 || st.Meetings[0].MeetingID != "c1" || len(st.Meetings[0].BreakoutRooms) != 2 {
		t.Errorf("state meetings %+v", st.Meetings)
	}
	if st.Requests[bbb.CallCreate] != 1 || st.Requests[bbb.CallGetMeetingInfo] != 3 || st.Requests[bbb.CallJoin] != 0 {
		t.Errorf("request counters %v", st.Requests)
	}
	if st.Faults.Answering != AnswerNormal || st.Faults.FailureMode != FailHTTP500 {
		t.Errorf("faults %+v", st.Faults)
	}

	if code := e.control(http.MethodPost, "/sim/end", map[string]any{"meetingID": "c1", "natural": true}, nil); code != http.StatusOK {
		t.Fatalf("natural end: HTTP %d", code)
	}
	// A natural end leaves nothing behind, so getMeetingInfo and join do not know it.
	wantFailed(t, e.get(bbb.CallGetMeetingInfo, vals("meetingID", "c1"), nil), bbb.KeyNotFound)
	env, _ := e.join(vals("meetingID", "c1", "fullName", "Late", "role", "viewer"))
	wantFailed(t, env, bbb.KeyInvalidMeetingIdentifier)
	if n := len(e.sim.Stats().Meetings); n != 0 {
		t.Errorf("%d meetings after the natural end", n)
	}
	// A meeting that ran with record=true and had users publishes at a natural end too.
	if st := e.sim.Stats(); len(st.Recordings) != 1 || st.Recordings[0].MeetingID != "c1" || st.Recordings[0].State != "published" {
		t.Errorf("recordings %+v", st.Recordings)
	}

	errorsCases := []struct {
		name, method, path string
		body               string
		want               int
	}{
		{"unknown meeting", http.MethodPost, "/sim/attendees", `{"meetingID":"nope","count":1}`, http.StatusNotFound},
		{"ended meeting", http.MethodPost, "/sim/end", `{"meetingID":"c1"}`, http.StatusNotFound},
		{"zero count", http.MethodPost, "/sim/attendees", `{"meetingID":"c1","count":0}`, http.StatusBadRequest},
		{"bad role", http.MethodPost, "/sim/attendees", `{"meetingID":"c1","count":1,"role":"owner"}`, http.StatusBadRequest},
		{"unknown field", http.MethodPost, "/sim/attendees", `{"meetingID":"c1","count":1,"colour":"red"}`, http.StatusBadRequest},
		{"not JSON", http.MethodPost, "/sim/latency", `fast`, http.StatusBadRequest},
		{"bad duration", http.MethodPost, "/sim/latency", `{"latency":"soon"}`, http.StatusBadRequest},
		{"negative latency", http.MethodPost, "/sim/latency", `{"latency":"-1s"}`, http.StatusBadRequest},
		{"rate above 1", http.MethodPost, "/sim/failures", `{"rate":1.5}`, http.StatusBadRequest},
		{"unknown failure mode", http.MethodPost, "/sim/failures", `{"rate":0.5,"mode":"explode"}`, http.StatusBadRequest},
		{"unknown answering mode", http.MethodPost, "/sim/answering", `{"mode":"sulk"}`, http.StatusBadRequest},
		{"no rooms", http.MethodPost, "/sim/breakouts", `{"meetingID":"c1","rooms":0}`, http.StatusBadRequest},
		{"unknown endpoint", http.MethodPost, "/sim/explode", `{}`, http.StatusNotFound},
		{"wrong method", http.MethodGet, "/sim/reset", ``, http.StatusNotFound},
	}
	for _, tt := range errorsCases {
		t.Run(tt.name, func(t *testing.T) {
			var out errorBody
			resp, b := e.do(tt.method, e.ts.URL+tt.path, []byte(tt.body))
			if err := json.Unmarshal(b, &out); err != nil || resp.StatusCode != tt.want || out.Error == "" {
				t.Errorf("HTTP %d, %s; want %d and a JSON error", resp.StatusCode, b, tt.want)
			}
		})
	}

	var faults Faults
	e.control(http.MethodPost, "/sim/latency", map[string]string{"latency": "1ms"}, &faults)
	if faults.Latency != Duration(1e6) {
		t.Errorf("faults %+v", faults)
	}
	e.control(http.MethodPost, "/sim/failures", map[string]any{"rate": 0.25, "mode": "close"}, &faults)
	e.control(http.MethodPost, "/sim/answering", map[string]any{"mode": "normal"}, &faults)
	if faults.FailureRate != 0.25 || faults.FailureMode != FailClose || faults.Answering != AnswerNormal {
		t.Errorf("faults %+v", faults)
	}

	// Reset: no meetings, zero counters, no faults.
	e.control(http.MethodPost, "/sim/reset", nil, nil)
	st = e.sim.Stats()
	if len(st.Meetings) != 0 || st.Requests[bbb.CallGetMeetingInfo] != 0 || st.Faults != defaultFaults() {
		t.Errorf("after reset: %+v", st)
	}
}

func TestControlMethods(t *testing.T) {
	e := newEnv(t)
	if _, err := e.sim.AddAttendees("nope", AttendeeSpec{Count: 1}); !errors.Is(err, ErrNoMeeting) {
		t.Errorf("AddAttendees on an unknown meeting: %v", err)
	}
	if _, err := e.sim.RemoveAttendees("nope", AllAttendees); !errors.Is(err, ErrNoMeeting) {
		t.Errorf("RemoveAttendees on an unknown meeting: %v", err)
	}
	if err := e.sim.EndMeeting("nope", true); !errors.Is(err, ErrNoMeeting) {
		t.Errorf("EndMeeting on an unknown meeting: %v", err)
	}
	e.create(vals("meetingID", "mm"))
	if _, err := e.sim.RemoveAttendees("mm", -5); !errors.Is(err, ErrInvalid) {
		t.Errorf("RemoveAttendees(-5): %v", err)
	}
	if n, err := e.sim.RemoveAttendees("mm", 4); err != nil || n != 0 {
		t.Errorf("RemoveAttendees from an empty meeting: %d, %v", n, err)
	}
	rooms, err := e.sim.AddBreakouts("mm", BreakoutSpec{Rooms: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.sim.AddBreakouts(rooms[0], BreakoutSpec{Rooms: 1}); !errors.Is(err, ErrInvalid) {
		t.Errorf("breakouts of a breakout room: %v", err)
	}
	if err := e.sim.SetFailureRate(-0.1, FailClose); !errors.Is(err, ErrInvalid) {
		t.Errorf("SetFailureRate(-0.1): %v", err)
	}
}

// TestBreakoutsCountedOnce is what an agent relies on to count a meeting
// with breakout rooms once: the rooms are listed as meetings of their own,
// marked isBreakout, and point at their parent.
func TestBreakoutsCountedOnce(t *testing.T) {
	e := newEnv(t)
	parent := e.create(vals("meetingID", "lecture"))
	e.create(vals("meetingID", "other"))
	if _, err := e.sim.AddAttendees("lecture", AttendeeSpec{Count: 10}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sim.AddAttendees("other", AttendeeSpec{Count: 4}); err != nil {
		t.Fatal(err)
	}
	rooms, err := e.sim.AddBreakouts("lecture", BreakoutSpec{Rooms: 3, AttendeesPerRoom: 2, FreeJoin: true})
	if err != nil {
		t.Fatal(err)
	}
	ms := e.meetings()
	if len(ms) != 5 {
		t.Fatalf("getMeetings lists %d meetings, want 2 and 3 rooms", len(ms))
	}
	meetings, users, breakouts, breakoutUsers := 0, 0, 0, 0
	for _, m := range ms {
		if m.IsBreakout {
			breakouts++
			breakoutUsers += m.ParticipantCount
			if m.ParentMeetingID != parent.InternalMeetingID || m.Sequence < 1 || m.FreeJoin == nil || !*m.FreeJoin {
				t.Errorf("room %+v", m)
			}
			continue
		}
		meetings++
		users += m.ParticipantCount
		if m.MeetingID == "lecture" && len(m.BreakoutRooms) != 3 {
			t.Errorf("parent lists rooms %v", m.BreakoutRooms)
		}
	}
	if meetings != 2 || users != 14 || breakouts != 3 || breakoutUsers != 6 {
		t.Errorf("meetings %d, users %d, rooms %d, room users %d", meetings, users, breakouts, breakoutUsers)
	}
	seqs := map[int]bool{}
	for _, id := range rooms {
		mi := e.info(id)
		seqs[mi.Sequence] = true
		if !strings.Contains(mi.MeetingName, "(Room ") {
			t.Errorf("room name %q", mi.MeetingName)
		}
	}
	if len(seqs) != 3 {
		t.Errorf("sequences %v", seqs)
	}
	// Ending one room takes it off the parent's list.
	if err := e.sim.EndMeeting(rooms[0], true); err != nil {
		t.Fatal(err)
	}
	if p := e.info("lecture"); len(p.BreakoutRooms) != 2 {
		t.Errorf("parent lists rooms %v after one ended", p.BreakoutRooms)
	}
}

func TestConcurrentUse(t *testing.T) {
	e := newEnv(t)
	const workers, rounds = 8, 20
	// Goroutines must not call t.Fatal, so they check answers themselves.
	envelope := func(rawURL string) bbb.Envelope {
		resp, err := e.client.Get(rawURL)
		if err != nil {
			t.Error(err)
			return bbb.Envelope{}
		}
		defer resp.Body.Close()
		var env bbb.Envelope
		if err := xml.NewDecoder(resp.Body).Decode(&env); err != nil {
			t.Error(err)
		}
		return env
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			id := "conc-" + strconv.Itoa(w)
			for i := range rounds {
				key := ""
				if i > 0 {
					key = bbb.KeyDuplicateWarning
				}
				if env := envelope(e.signed(bbb.CallCreate, vals("meetingID", id))); env.ReturnCode != bbb.ReturnSuccess || env.MessageKey != key {
					t.Errorf("create: %+v", env)
				}
				if env := envelope(e.signed(bbb.CallJoin, vals("meetingID", id, "fullName", "U", "role", "viewer", "redirect", "false"))); env.ReturnCode != bbb.ReturnSuccess {
					t.Errorf("join: %+v", env)
				}
				if env := envelope(e.signed(bbb.CallGetMeetings, nil)); env.ReturnCode != bbb.ReturnSuccess {
					t.Errorf("getMeetings: %+v", env)
				}
				if _, err := e.sim.AddAttendees(id, AttendeeSpec{Count: 1, Video: true}); err != nil {
					t.Error(err)
				}
				e.sim.Stats()
			}
		})
	}
	wg.Wait()
	st := e.sim.Stats()
	if st.Requests[bbb.CallCreate] != workers*rounds || st.Requests[bbb.CallJoin] != workers*rounds {
		t.Errorf("counters %v", st.Requests)
	}
	if len(st.Meetings) != workers {
		t.Errorf("%d meetings", len(st.Meetings))
	}
	for _, m := range st.Meetings {
		if m.ParticipantCount != 2*rounds || m.VideoCount != rounds {
			t.Errorf("%s: %d participants, %d videos", m.MeetingID, m.ParticipantCount, m.VideoCount)
		}
	}
}
