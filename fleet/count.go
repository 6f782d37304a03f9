package fleet

import "github.com/bbb-agent/bbb-agent/bbb"

// CountMeetings fills the meeting figures of a Load from a node's getMeetings.
// Breakout rooms are not separate meetings for load purposes: their users are
// still members of the parent meeting, so only the parents' people are
// counted, while the breakout rooms' video streams, which are extra media
// load, are added. Ended meetings are skipped.
func CountMeetings(meetings []bbb.Meeting) Load {
	var l Load
	for i := range meetings {
		m := &meetings[i]
		if ended(m) {
			continue
		}
		l.Video += m.VideoCount
		if m.IsBreakout {
			continue
		}
		l.Meetings++
		l.Participants += m.ParticipantCount
		l.Voice += m.VoiceParticipantCount
		l.Listeners += m.ListenerCount
		if m.ParticipantCount > l.LargestMeeting {
			l.LargestMeeting = m.ParticipantCount
		}
	}
	return l
}

func ended(m *bbb.Meeting) bool { return m.HasBeenForciblyEnded || m.EndTime > 0 && !m.Running }

// MeetingIDs returns the external IDs of the running (not ended),
// non-breakout meetings.
func MeetingIDs(meetings []bbb.Meeting) []string {
	ids := make([]string, 0, len(meetings))
	for i := range meetings {
		if !meetings[i].IsBreakout && !ended(&meetings[i]) {
			ids = append(ids, meetings[i].MeetingID)
		}
	}
	return ids
}
