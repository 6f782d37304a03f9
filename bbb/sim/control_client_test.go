package sim

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/bbb"
)

// TestControlClient drives every control call over HTTP and checks each one
// against what the Server holds.
func TestControlClient(t *testing.T) {
	e := newEnv(t)
	c := NewControlClient(e.ts.URL+"/", e.client) // a trailing slash is fine
	ctx := t.Context()
	e.create(vals("meetingID", "cc", "record", "true"))

	ids, err := c.AddAttendees(ctx, "cc", AttendeeSpec{Count: 3, Role: "moderator", Voice: true, Video: true})
	if err != nil || len(ids) != 3 {
		t.Fatalf("AddAttendees: %v, %v", ids, err)
	}
	if _, err := c.AddAttendees(ctx, "cc", AttendeeSpec{Count: 2, ListenOnly: true, FullName: "Listener"}); err != nil {
		t.Fatal(err)
	}
	mi := e.info("cc")
	if mi.ParticipantCount != 5 || mi.ModeratorCount != 3 || mi.VideoCount != 3 || mi.ListenerCount != 2 || mi.VoiceParticipantCount != 5 {
		t.Errorf("after AddAttendees: %+v", mi.Meeting)
	}
	if mi.Attendees[0].UserID != ids[0] || mi.Attendees[4].FullName != "Listener" {
		t.Errorf("attendees %+v", mi.Attendees)
	}

	if n, err := c.RemoveAttendees(ctx, "cc", 2); err != nil || n != 2 || e.info("cc").ParticipantCount != 3 {
		t.Errorf("RemoveAttendees(2): %d, %v", n, err)
	}
	if n, err := c.RemoveAttendees(ctx, "cc", AllAttendees); err != nil || n != 3 || e.info("cc").ParticipantCount != 0 {
		t.Errorf("RemoveAttendees(AllAttendees): %d, %v", n, err)
	}
	if _, err := c.AddAttendees(ctx, "cc", AttendeeSpec{Count: 1}); err != nil {
		t.Fatal(err)
	}

	rooms, err := c.AddBreakouts(ctx, "cc", BreakoutSpec{Rooms: 2, AttendeesPerRoom: 3, FreeJoin: true})
	if err != nil || len(rooms) != 2 {
		t.Fatalf("AddBreakouts: %v, %v", rooms, err)
	}
	if mi := e.info(rooms[1]); !mi.IsBreakout || mi.ParticipantCount != 3 || mi.Sequence != 2 {
		t.Errorf("room %+v", mi.Meeting)
	}

	st, err := c.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := e.sim.Stats(); !reflect.DeepEqual(st, want) {
		t.Errorf("State: %+v\nServer: %+v", st, want)
	}
	if i := slices.IndexFunc(st.Meetings, func(m MeetingState) bool { return m.MeetingID == "cc" }); len(st.Meetings) != 3 || i < 0 ||
		len(st.Meetings[i].BreakoutRooms) != 2 || st.Meetings[i].ParticipantCount != 1 || st.Requests[bbb.CallCreate] != 1 || st.Faults != defaultFaults() {
		t.Errorf("State: %+v", st)
	}

	if err := c.EndMeeting(ctx, rooms[0], true); err != nil {
		t.Fatal(err)
	}
	if err := c.EndMeeting(ctx, "cc", false); err != nil {
		t.Fatal(err)
	}
	if mi := e.info("cc"); !mi.HasBeenForciblyEnded {
		t.Errorf("after EndMeeting(natural=false): %+v", mi.Meeting)
	}
	st = e.sim.Stats()
	// The room ended naturally is gone; the other ended with its parent.
	if len(st.Meetings) != 2 || st.Meetings[0].MeetingID != rooms[1] || !st.Meetings[0].Ended || !st.Meetings[1].Ended ||
		len(st.Recordings) != 1 || st.Recordings[0].MeetingID != "cc" {
		t.Errorf("after EndMeeting: %+v", st)
	}

	// Faults, which never apply to the control API itself.
	if f, err := c.SetLatency(ctx, 3*time.Millisecond); err != nil || f.Latency != Duration(3*time.Millisecond) {
		t.Errorf("SetLatency: %+v, %v", f, err)
	}
	if f, err := c.SetFailureRate(ctx, 0.25, FailClose); err != nil || f.FailureRate != 0.25 || f.FailureMode != FailClose {
		t.Errorf("SetFailureRate: %+v, %v", f, err)
	}
	if f, err := c.SetFailureRate(ctx, 0.5, ""); err != nil || f.FailureMode != FailHTTP500 {
		t.Errorf("SetFailureRate with no mode: %+v, %v", f, err)
	}
	if f, err := c.SetAnswering(ctx, AnswerHang); err != nil || f.Answering != AnswerHang {
		t.Errorf("SetAnswering: %+v, %v", f, err)
	}
	want := Faults{Latency: Duration(3 * time.Millisecond), FailureRate: 0.5, FailureMode: FailHTTP500, Answering: AnswerHang}
	if st, err := c.State(ctx); err != nil || st.Faults != want {
		t.Errorf("State while hanging: %+v, %v", st.Faults, err)
	}
	if f, _ := e.sim.currentFaults(); f != want {
		t.Errorf("Server faults %+v", f)
	}

	if err := c.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if st := e.sim.Stats(); len(st.Meetings) != 0 || st.Requests[bbb.CallGetMeetingInfo] != 0 || st.Faults != defaultFaults() {
		t.Errorf("after Reset: %+v", st)
	}
}

func TestControlClientErrors(t *testing.T) {
	e := newEnv(t)
	c := NewControlClient(e.ts.URL, nil)
	ctx := t.Context()
	e.create(vals("meetingID", "ee"))

	// The simulator's refusals: its message, the HTTP status, and the
	// sentinel errors of the Server methods.
	cases := []struct {
		name string
		call func() error
		is   error
		code int
		msg  string
	}{
		{"unknown meeting", func() error { _, err := c.AddAttendees(ctx, "nope", AttendeeSpec{Count: 1}); return err },
			ErrNoMeeting, 404, `no active meeting with that meetingID: "nope"`},
		{"end unknown meeting", func() error { return c.EndMeeting(ctx, "nope", true) }, ErrNoMeeting, 404, `"nope"`},
		{"zero count", func() error { _, err := c.AddAttendees(ctx, "ee", AttendeeSpec{}); return err },
			ErrInvalid, 400, "count must be at least 1"},
		{"negative removal", func() error { _, err := c.RemoveAttendees(ctx, "ee", -5); return err },
			ErrInvalid, 400, "count -5 is negative"},
		{"no rooms", func() error { _, err := c.AddBreakouts(ctx, "ee", BreakoutSpec{}); return err },
			ErrInvalid, 400, "at least 1 room"},
		{"negative latency", func() error { _, err := c.SetLatency(ctx, -time.Second); return err },
			ErrInvalid, 400, "latency -1s is negative"},
		{"rate above 1", func() error { _, err := c.SetFailureRate(ctx, 1.5, FailClose); return err },
			ErrInvalid, 400, "not between 0 and 1"},
		{"unknown answering mode", func() error { _, err := c.SetAnswering(ctx, "sulk"); return err },
			ErrInvalid, 400, `answering mode "sulk"`},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var ce *ControlError
			if !errors.As(err, &ce) || ce.StatusCode != tt.code || !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.msg) ||
				!strings.Contains(err.Error(), "(HTTP "+strconv.Itoa(tt.code)+")") {
				t.Errorf("got %v (%#v), want HTTP %d, %v and %q", err, ce, tt.code, tt.is, tt.msg)
			}
		})
	}
	if n := len(e.sim.Stats().Meetings[0].BreakoutRooms); n != 0 || e.info("ee").ParticipantCount != 0 {
		t.Errorf("refused calls changed the meeting: %d rooms", n)
	}

	// An unknown endpoint is a 404 without ErrNoMeeting.
	err := NewControlClient(e.ts.URL+"/sim/nothing", nil).EndMeeting(ctx, "ee", true)
	if !strings.Contains(err.Error(), "no control endpoint POST /sim/nothing/sim/end (HTTP 404)") || errors.Is(err, ErrNoMeeting) || errors.Is(err, ErrInvalid) {
		t.Errorf("unknown endpoint: %v", err)
	}
}

// TestControlClientAnswers checks what the client makes of answers the
// simulator does not give: a proxy's error page, an oversized or garbled
// body, no server at all, a cancelled call.
func TestControlClientAnswers(t *testing.T) {
	ctx := t.Context()
	var answer func(w http.ResponseWriter, r *http.Request)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { answer(w, r) }))
	defer ts.Close()
	c := NewControlClient(ts.URL, ts.Client())

	answer = func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "<html>Bad Gateway</html>"+strings.Repeat("x", 500), http.StatusBadGateway)
	}
	_, err := c.State(ctx)
	var ce *ControlError
	if !errors.As(err, &ce) || ce.StatusCode != http.StatusBadGateway || !strings.HasPrefix(ce.Message, "<html>Bad Gateway</html>xxx") ||
		len(ce.Message) > 210 || errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "bbb-sim GET /sim/state: ") {
		t.Errorf("a plain-text 502: %v", err)
	}

	answer = func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadRequest) }
	if err := c.EndMeeting(ctx, "m", true); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "empty answer (HTTP 400)") {
		t.Errorf("an empty 400: %v", err)
	}

	answer = func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(`{"userIDs": "w_1"}`)) }
	if _, err := c.AddAttendees(ctx, "m", AttendeeSpec{Count: 1}); err == nil || !strings.Contains(err.Error(), "not the expected JSON") {
		t.Errorf("a garbled answer: %v", err)
	}

	answer = func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(`{"meetings": [`))
		w.Write(bytes.Repeat([]byte(`{"meetingID": "m"},`), maxControlAnswer/19+1))
	}
	if _, err := c.State(ctx); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("an oversized answer: %v", err)
	}

	answer = func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := c.Reset(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a call past its deadline: %v", err)
	}

	ts.Close()
	if _, err := c.SetAnswering(ctx, AnswerNormal); err == nil || !strings.Contains(err.Error(), "bbb-sim control API: ") ||
		!strings.Contains(err.Error(), ts.URL+"/sim/answering") {
		t.Errorf("no server: %v", err)
	}
}
