package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bbb-agent/bbb-agent/bbb"
)

// Errors of the control methods. The control API answers ErrNoMeeting with
// HTTP 404 and ErrInvalid with 400.
var (
	ErrNoMeeting = errors.New("no active meeting with that meetingID")
	ErrInvalid   = errors.New("invalid control request")
)

// AllAttendees makes RemoveAttendees remove everyone.
const AllAttendees = -1

// AttendeeSpec describes synthetic attendees to add to a meeting.
type AttendeeSpec struct {
	// Count is how many to add (at least 1).
	Count int `json:"count"`
	// Role is MODERATOR or VIEWER (any case); empty means VIEWER.
	Role string `json:"role,omitempty"`
	// Voice joins them to the voice conference with a microphone.
	Voice bool `json:"voice,omitempty"`
	// ListenOnly joins them listen-only; they count as listeners and as voice participants.
	ListenOnly bool `json:"listenOnly,omitempty"`
	// Video gives each a webcam.
	Video bool `json:"video,omitempty"`
	// FullName names them; empty means "Sim User N".
	FullName string `json:"fullName,omitempty"`
}

// BreakoutSpec describes breakout rooms to open in a meeting.
type BreakoutSpec struct {
	// Rooms is how many rooms to open (at least 1).
	Rooms int `json:"rooms"`
	// AttendeesPerRoom are viewers added to each room. They are new users:
	// bbb-web also keeps a user who went to a room in the parent's list, so a
	// test that wants that double count adds them to the parent as well.
	AttendeesPerRoom int `json:"attendeesPerRoom,omitempty"`
	// Record makes the rooms record, so they publish their own recordings.
	Record bool `json:"record,omitempty"`
	// FreeJoin lets users pick their room.
	FreeJoin bool `json:"freeJoin,omitempty"`
}

// activeMeetingLocked finds a meeting that has not ended; s.mu must be held.
func (s *Server) activeMeetingLocked(meetingID string) (*meeting, error) {
	m := s.meetings[meetingID]
	if m == nil || m.ended {
		return nil, fmt.Errorf("%w: %q", ErrNoMeeting, meetingID)
	}
	return m, nil
}

// AddAttendees joins synthetic users to an active meeting, as join would
// (the first one starts the meeting), and returns their userIDs. It ignores
// maxParticipants, so tests can overfill a meeting.
func (s *Server) AddAttendees(meetingID string, spec AttendeeSpec) ([]string, error) {
	role := strings.ToUpper(spec.Role)
	switch {
	case spec.Count < 1:
		return nil, fmt.Errorf("%w: count must be at least 1", ErrInvalid)
	case role == "":
		role = bbb.RoleViewer
	case role != bbb.RoleViewer && role != bbb.RoleModerator:
		return nil, fmt.Errorf("%w: role %q: want MODERATOR or VIEWER", ErrInvalid, spec.Role)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.activeMeetingLocked(meetingID)
	if err != nil {
		return nil, err
	}
	return s.addSyntheticLocked(m, spec.Count, role, spec), nil
}

func (s *Server) addSyntheticLocked(m *meeting, n int, role string, spec AttendeeSpec) []string {
	ids := make([]string, n)
	for i := range ids {
		m.nextName++
		name := spec.FullName
		if name == "" {
			name = "Sim User " + strconv.Itoa(m.nextName)
		}
		ids[i] = "w_" + s.randString(lowerAlnum, 12)
		s.addAttendeeLocked(m, bbb.Attendee{
			UserID:          ids[i],
			FullName:        name,
			Role:            role,
			IsListeningOnly: spec.ListenOnly,
			HasJoinedVoice:  spec.Voice || spec.ListenOnly,
			HasVideo:        spec.Video,
			ClientType:      "HTML5",
		})
	}
	return ids
}

// RemoveAttendees makes the n most recent attendees of an active meeting
// leave (AllAttendees: everyone) and returns how many left. The meeting goes
// on without users until it is ended.
func (s *Server) RemoveAttendees(meetingID string, n int) (int, error) {
	if n < 0 && n != AllAttendees {
		return 0, fmt.Errorf("%w: count %d is negative", ErrInvalid, n)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.activeMeetingLocked(meetingID)
	if err != nil {
		return 0, err
	}
	return m.removeAttendees(n), nil
}

// AddBreakouts opens breakout rooms in an active meeting, as a moderator
// would, and returns their meetingIDs. The rooms are meetings of their own
// (isBreakout, parentMeetingID, sequence) and the parent lists them in
// breakoutRooms; they end with it.
func (s *Server) AddBreakouts(meetingID string, spec BreakoutSpec) ([]string, error) {
	if spec.Rooms < 1 || spec.AttendeesPerRoom < 0 {
		return nil, fmt.Errorf("%w: want at least 1 room and no negative attendee count", ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	parent, err := s.activeMeetingLocked(meetingID)
	if err != nil {
		return nil, err
	}
	if parent.info.IsBreakout {
		return nil, fmt.Errorf("%w: %q is itself a breakout room", ErrInvalid, meetingID)
	}
	ids := make([]string, spec.Rooms)
	for i := range ids {
		seq := len(parent.breakouts) + 1
		sum := bbb.InternalMeetingID(parent.info.InternalMeetingID+"-"+strconv.Itoa(seq), s.now().UnixMilli())
		m := s.newMeetingLocked(createParams{
			meetingID: sum,
			name:      fmt.Sprintf("%s (Room %d)", parent.info.MeetingName, seq),
			record:    spec.Record,
			parent:    parent,
			sequence:  seq,
			freeJoin:  spec.FreeJoin,
			host:      parent.host,
			meta:      parent.info.Metadata,
		})
		if spec.AttendeesPerRoom > 0 {
			s.addSyntheticLocked(m, spec.AttendeesPerRoom, bbb.RoleViewer, AttendeeSpec{})
		}
		ids[i] = m.info.MeetingID
	}
	return ids, nil
}

// EndMeeting ends an active meeting and its breakout rooms. natural ends it
// as BBB does when it runs out (the last user left, or its duration passed):
// it disappears at once. Otherwise it is ended as by the end call:
// hasBeenForciblyEnded, and still known to getMeetingInfo. Either way a
// meeting created with record=true that someone joined publishes its
// recording before EndMeeting returns.
func (s *Server) EndMeeting(meetingID string, natural bool) error {
	s.mu.Lock()
	m, err := s.activeMeetingLocked(meetingID)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	recs := s.endLocked(m, !natural)
	s.mu.Unlock()
	s.log.Info("meeting ended", "meeting_id", meetingID, "forcibly", !natural)
	s.publish(recs)
	return nil
}

// State is a snapshot of the simulator, for tests.
type State struct {
	// Meetings are the meetings not yet forgotten, ended ones included, oldest first.
	Meetings   []MeetingState   `json:"meetings"`
	Recordings []RecordingState `json:"recordings"`
	// Requests counts API requests per call name since New or Reset, every
	// request included (failed, refused, or faulted); "root" is the API root
	// and "unknown" any call the simulator does not serve.
	Requests map[string]int64 `json:"requests"`
	Faults   Faults           `json:"faults"`
}

// MeetingState is one meeting in a State; the counts are getMeetings'.
type MeetingState struct {
	MeetingID             string   `json:"meetingID"`
	InternalMeetingID     string   `json:"internalMeetingID"`
	MeetingName           string   `json:"meetingName"`
	CreateTime            int64    `json:"createTime"`
	Running               bool     `json:"running"`
	Ended                 bool     `json:"ended"`
	HasBeenForciblyEnded  bool     `json:"hasBeenForciblyEnded"`
	Recording             bool     `json:"recording"`
	IsBreakout            bool     `json:"isBreakout"`
	ParentMeetingID       string   `json:"parentMeetingID,omitempty"`
	BreakoutRooms         []string `json:"breakoutRooms,omitempty"`
	ParticipantCount      int      `json:"participantCount"`
	ModeratorCount        int      `json:"moderatorCount"`
	VoiceParticipantCount int      `json:"voiceParticipantCount"`
	ListenerCount         int      `json:"listenerCount"`
	VideoCount            int      `json:"videoCount"`
	MaxUsers              int      `json:"maxUsers"`
	Documents             int      `json:"documents"`
}

// RecordingState is one recording in a State.
type RecordingState struct {
	RecordID  string `json:"recordID"`
	MeetingID string `json:"meetingID"`
	State     string `json:"state"`
	Size      int64  `json:"size"`
}

// Stats returns a snapshot of the meetings, recordings, request counters and faults.
func (s *Server) Stats() State {
	st := State{Requests: make(map[string]int64, len(s.requests))}
	for i := range s.requests {
		st.Requests[counterName(i)] = s.requests[i].Load()
	}
	st.Faults, _ = s.currentFaults()

	s.mu.RLock()
	ms := make([]*meeting, 0, len(s.meetings))
	for _, m := range s.meetings {
		ms = append(ms, m)
	}
	sortMeetings(ms)
	st.Meetings = make([]MeetingState, len(ms))
	for i, m := range ms {
		in := &m.info
		st.Meetings[i] = MeetingState{
			MeetingID: in.MeetingID, InternalMeetingID: in.InternalMeetingID, MeetingName: in.MeetingName,
			CreateTime: in.CreateTime, Running: in.Running, Ended: m.ended, HasBeenForciblyEnded: in.HasBeenForciblyEnded,
			Recording: in.Recording, IsBreakout: in.IsBreakout, ParentMeetingID: in.ParentMeetingID,
			BreakoutRooms:    slices.Clone(in.BreakoutRooms),
			ParticipantCount: in.ParticipantCount, ModeratorCount: in.ModeratorCount,
			VoiceParticipantCount: in.VoiceParticipantCount, ListenerCount: in.ListenerCount,
			VideoCount: in.VideoCount, MaxUsers: in.MaxUsers, Documents: m.documents,
		}
	}
	s.mu.RUnlock()

	s.recMu.Lock()
	st.Recordings = make([]RecordingState, 0, len(s.recordings))
	for _, r := range s.recordings {
		st.Recordings = append(st.Recordings, RecordingState{RecordID: r.ID, MeetingID: r.Meeting.ExternalID, State: r.State, Size: r.Playback.Size})
	}
	s.recMu.Unlock()
	slices.SortFunc(st.Recordings, func(a, b RecordingState) int { return strings.Compare(a.RecordID, b.RecordID) })
	return st
}

// Reset returns the simulator to its state after New: no meetings, zero
// counters, no faults (held requests are released), and the recordings read
// again from RecordingsDir.
func (s *Server) Reset() {
	s.changeFaults(func(f *Faults) { *f = defaultFaults() })
	for i := range s.requests {
		s.requests[i].Store(0)
	}
	s.resetState()
}

// maxControlBody bounds a control request's JSON body.
const maxControlBody = 1 << 20

// controlMux serves the control API; see the package documentation.
func (s *Server) controlMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sim/state", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Stats())
	})
	mux.HandleFunc("POST /sim/reset", func(w http.ResponseWriter, r *http.Request) {
		s.Reset()
		writeJSON(w, http.StatusOK, struct{}{})
	})
	mux.HandleFunc("POST /sim/attendees", control(func(in struct {
		MeetingID string `json:"meetingID"`
		AttendeeSpec
	}) (any, error) {
		ids, err := s.AddAttendees(in.MeetingID, in.AttendeeSpec)
		return map[string][]string{"userIDs": ids}, err
	}))
	mux.HandleFunc("POST /sim/attendees/remove", control(func(in struct {
		MeetingID string `json:"meetingID"`
		Count     int    `json:"count"`
		All       bool   `json:"all"`
	}) (any, error) {
		n := in.Count
		if in.All {
			n = AllAttendees
		}
		removed, err := s.RemoveAttendees(in.MeetingID, n)
		return map[string]int{"removed": removed}, err
	}))
	mux.HandleFunc("POST /sim/breakouts", control(func(in struct {
		MeetingID string `json:"meetingID"`
		BreakoutSpec
	}) (any, error) {
		ids, err := s.AddBreakouts(in.MeetingID, in.BreakoutSpec)
		return map[string][]string{"meetingIDs": ids}, err
	}))
	mux.HandleFunc("POST /sim/end", control(func(in struct {
		MeetingID string `json:"meetingID"`
		Natural   bool   `json:"natural"`
	}) (any, error) {
		return struct{}{}, s.EndMeeting(in.MeetingID, in.Natural)
	}))
	mux.HandleFunc("POST /sim/latency", control(func(in struct {
		Latency Duration `json:"latency"`
	}) (any, error) {
		return s.faultsAfter(s.SetLatency(time.Duration(in.Latency)))
	}))
	mux.HandleFunc("POST /sim/failures", control(func(in struct {
		Rate float64     `json:"rate"`
		Mode FailureMode `json:"mode"`
	}) (any, error) {
		return s.faultsAfter(s.SetFailureRate(in.Rate, in.Mode))
	}))
	mux.HandleFunc("POST /sim/answering", control(func(in struct {
		Mode AnswerMode `json:"mode"`
	}) (any, error) {
		return s.faultsAfter(s.SetAnswering(in.Mode))
	}))
	mux.HandleFunc("/sim/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "no control endpoint " + r.Method + " " + r.URL.Path})
	})
	return mux
}

func (s *Server) faultsAfter(err error) (any, error) {
	f, _ := s.currentFaults()
	return f, err
}

type errorBody struct {
	Error string `json:"error"`
}

// control adapts a JSON-in, JSON-out control handler.
func control[In any](handle func(In) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in In
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxControlBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad JSON body: " + err.Error()})
			return
		}
		out, err := handle(in)
		switch {
		case errors.Is(err, ErrNoMeeting):
			writeJSON(w, http.StatusNotFound, errorBody{Error: err.Error()})
		case err != nil:
			writeJSON(w, http.StatusBadRequest, errorBody{Error: err.Error()})
		default:
			writeJSON(w, http.StatusOK, out)
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"encoding the answer failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
