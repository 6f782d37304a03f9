package sim

import (
	"cmp"
	"slices"
	"strconv"
	"time"

	"github.com/bbb-agent/bbb-agent/bbb"
)

// defaultDialNumber is bbb-web's defaultDialAccessNumber.
const defaultDialNumber = "613-555-1234"

// noParent is the parentMeetingID bbb-web reports for a meeting that is not a breakout room.
const noParent = "bbb-none"

// meeting is one incarnation of a meeting. Every field is guarded by Server.mu.
type meeting struct {
	info         bbb.Meeting // counts kept current by recount
	host         string      // Host of the create request, for playback links
	ended        bool
	users        int      // distinct users who ever joined
	breakouts    []string // internal IDs of every breakout room it ever had
	documents    int      // presentations received by create and insertDocument
	chatMessages int      // public chat messages sent with sendChatMessage
	nextName     int      // numbers synthetic attendees' names
}

// createParams are a new meeting's settings, from a create call or the control API.
type createParams struct {
	meetingID       string
	name            string
	attendeePW      string
	moderatorPW     string
	voiceBridge     string
	record          bool
	duration        int
	maxParticipants int
	meta            bbb.Metadata
	parent          *meeting // set for breakout rooms
	sequence        int
	freeJoin        bool
	documents       int
	host            string
}

// newMeetingLocked creates and stores an incarnation; s.mu must be held.
// The caller has checked that no active meeting has the ID or the voice bridge.
func (s *Server) newMeetingLocked(p createParams) *meeting {
	createTime := s.now().UnixMilli()
	if prev := s.meetings[p.meetingID]; prev != nil && prev.info.CreateTime >= createTime {
		// A new incarnation always gets a new createTime, and so a new internal ID.
		createTime = prev.info.CreateTime + 1
	}
	if p.name == "" {
		p.name = p.meetingID
	}
	if p.attendeePW == "" {
		p.attendeePW = s.randString(alnum, 8)
	}
	if p.moderatorPW == "" {
		p.moderatorPW = s.randString(alnum, 8)
	}
	if p.voiceBridge == "" {
		p.voiceBridge = s.freeVoiceBridgeLocked()
	}
	m := &meeting{
		host:      p.host,
		documents: p.documents,
		info: bbb.Meeting{
			MeetingName:       p.name,
			MeetingID:         p.meetingID,
			InternalMeetingID: bbb.InternalMeetingID(p.meetingID, createTime),
			CreateTime:        createTime,
			CreateDate:        bbb.CreateDate(time.UnixMilli(createTime)),
			VoiceBridge:       p.voiceBridge,
			DialNumber:        defaultDialNumber,
			AttendeePW:        p.attendeePW,
			ModeratorPW:       p.moderatorPW,
			Duration:          p.duration,
			Recording:         p.record,
			MaxUsers:          p.maxParticipants,
			Metadata:          p.meta,
		},
	}
	if parent := p.parent; parent != nil {
		freeJoin := p.freeJoin
		m.info.IsBreakout = true
		m.info.ParentMeetingID = parent.info.InternalMeetingID
		m.info.Sequence = p.sequence
		m.info.FreeJoin = &freeJoin
		parent.info.BreakoutRooms = append(parent.info.BreakoutRooms, m.info.InternalMeetingID)
		parent.breakouts = append(parent.breakouts, m.info.InternalMeetingID)
	}
	s.meetings[p.meetingID] = m
	s.byVoiceBridge[m.info.VoiceBridge] = m
	s.byInternalID[m.info.InternalMeetingID] = m
	return m
}

// freeVoiceBridgeLocked draws a 5-digit voice bridge no active meeting uses,
// trying a few times as bbb-web does.
func (s *Server) freeVoiceBridgeLocked() string {
	var vb string
	for range 10 {
		vb = strconv.Itoa(10000 + s.randIntN(90000))
		if s.voiceBridgeOwnerLocked(vb) == nil {
			break
		}
	}
	return vb
}

// voiceBridgeOwnerLocked returns the active meeting using a voice bridge.
func (s *Server) voiceBridgeOwnerLocked(vb string) *meeting { return s.byVoiceBridge[vb] }

// byInternalIDLocked finds an active meeting by its internal ID.
func (s *Server) byInternalIDLocked(id string) *meeting { return s.byInternalID[id] }

// activeLocked returns the meetings that have not ended, oldest first.
func (s *Server) activeLocked() []*meeting {
	ms := make([]*meeting, 0, len(s.meetings))
	for _, m := range s.meetings {
		if !m.ended {
			ms = append(ms, m)
		}
	}
	sortMeetings(ms)
	return ms
}

func sortMeetings(ms []*meeting) {
	slices.SortFunc(ms, func(a, b *meeting) int {
		return cmp.Or(cmp.Compare(a.info.CreateTime, b.info.CreateTime), cmp.Compare(a.info.MeetingID, b.info.MeetingID))
	})
}

// addAttendeeLocked adds a user, or replaces the one with the same userID as
// a rejoin does, and starts the meeting on its first join.
func (s *Server) addAttendeeLocked(m *meeting, a bbb.Attendee) {
	if !m.info.Running {
		m.info.Running = true
		m.info.StartTime = s.now().UnixMilli()
	}
	m.info.HasUserJoined = true
	if i := m.attendeeIndex(a.UserID); i >= 0 {
		a.IsPresenter = m.info.Attendees[i].IsPresenter
		m.info.Attendees[i] = a
	} else {
		if a.Role == bbb.RoleModerator && !m.hasPresenter() {
			a.IsPresenter = true
		}
		m.info.Attendees = append(m.info.Attendees, a)
		m.users++
	}
	m.recount()
}

func (m *meeting) attendeeIndex(userID string) int {
	return slices.IndexFunc(m.info.Attendees, func(a bbb.Attendee) bool { return a.UserID == userID })
}

func (m *meeting) hasPresenter() bool {
	return slices.ContainsFunc(m.info.Attendees, func(a bbb.Attendee) bool { return a.IsPresenter })
}

// removeAttendees removes the n most recent attendees, or all when n < 0,
// and returns how many left. The meeting goes on without users, as BBB's does
// until its empty-meeting timeout, which the simulator does not emulate.
func (m *meeting) removeAttendees(n int) int {
	have := len(m.info.Attendees)
	if n < 0 || n > have {
		n = have
	}
	clear(m.info.Attendees[have-n:])
	m.info.Attendees = m.info.Attendees[:have-n]
	m.recount()
	return n
}

// recount derives the counts from the attendees as bbb-web does:
// participantCount includes moderators, listen-only users are also voice
// participants, and every webcam is one video.
func (m *meeting) recount() {
	i := &m.info
	i.ParticipantCount = len(i.Attendees)
	i.ModeratorCount, i.VoiceParticipantCount, i.ListenerCount, i.VideoCount = 0, 0, 0, 0
	for _, a := range i.Attendees {
		if a.Role == bbb.RoleModerator {
			i.ModeratorCount++
		}
		if a.HasJoinedVoice {
			i.VoiceParticipantCount++
		}
		if a.IsListeningOnly {
			i.ListenerCount++
		}
		if a.HasVideo {
			i.VideoCount++
		}
	}
}

// endLocked ends a meeting and its breakout rooms, and returns the
// recordings to publish. A forcibly ended meeting stays visible to
// getMeetingInfo (hasBeenForciblyEnded) until a new create replaces it; one
// that ends naturally is gone at once, as bbb-web destroys it.
func (s *Server) endLocked(m *meeting, forcibly bool) []recordingInput {
	var out []recordingInput
	for _, id := range m.breakouts {
		if b := s.byInternalID[id]; b != nil {
			out = append(out, s.endLocked(b, forcibly)...)
		}
	}
	if m.ended {
		return out
	}
	now := s.now().UnixMilli()
	m.ended = true
	if s.byVoiceBridge[m.info.VoiceBridge] == m {
		delete(s.byVoiceBridge, m.info.VoiceBridge)
	}
	delete(s.byInternalID, m.info.InternalMeetingID)
	m.info.Running = false
	m.info.EndTime = max(now, m.info.CreateTime)
	m.info.HasBeenForciblyEnded = forcibly
	m.removeAttendees(-1)
	if m.info.IsBreakout {
		if parent := s.byInternalIDLocked(m.info.ParentMeetingID); parent != nil {
			parent.info.BreakoutRooms = slices.DeleteFunc(parent.info.BreakoutRooms, func(id string) bool { return id == m.info.InternalMeetingID })
		}
	}
	if !forcibly && s.meetings[m.info.MeetingID] == m {
		delete(s.meetings, m.info.MeetingID)
	}
	// bbb-web records only what happened: a meeting nobody joined leaves no recording.
	if m.info.Recording && m.info.HasUserJoined {
		out = append(out, m.recordingInput())
	}
	return out
}

// recordingInput is what publishing needs to know of an ended meeting.
type recordingInput struct {
	recordID      string
	meetingID     string
	name          string
	host          string
	isBreakout    bool
	parentID      string
	sequence      int
	breakoutRooms []string
	meta          bbb.Metadata
	start, end    int64
	participants  int
}

func (m *meeting) recordingInput() recordingInput {
	start := m.info.StartTime
	if start == 0 {
		start = m.info.CreateTime
	}
	return recordingInput{
		recordID:      m.info.InternalMeetingID,
		meetingID:     m.info.MeetingID,
		name:          m.info.MeetingName,
		host:          m.host,
		isBreakout:    m.info.IsBreakout,
		parentID:      m.info.ParentMeetingID,
		sequence:      m.info.Sequence,
		breakoutRooms: slices.Clone(m.breakouts),
		meta:          m.info.Metadata,
		start:         start,
		end:           max(m.info.EndTime, start),
		participants:  m.users,
	}
}
