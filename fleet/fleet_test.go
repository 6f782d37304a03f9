package fleet

import (
	"testing"

	"github.com/bbb-agent/bbb-agent/bbb"
)

func TestParseAdminState(t *testing.T) {
	for in, want := range map[string]AdminState{"enabled": Enabled, "enable": Enabled, " Cordon ": Cordoned, "cordoned": Cordoned, "disable": Disabled, "DISABLED": Disabled} {
		if got, err := ParseAdminState(in); err != nil || got != want {
			t.Errorf("%q: %s, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "panic", "drained"} {
		if _, err := ParseAdminState(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestCountMeetings(t *testing.T) {
	meetings := []bbb.Meeting{
		{MeetingID: "lecture", Running: true, ParticipantCount: 40, VoiceParticipantCount: 10, ListenerCount: 25, VideoCount: 2},
		// Its breakout rooms: users are still counted in the parent; video adds.
		{MeetingID: "lecture-room-1", IsBreakout: true, Running: true, ParticipantCount: 5, VideoCount: 3},
		{MeetingID: "lecture-room-2", IsBreakout: true, Running: true, ParticipantCount: 5, VideoCount: 1},
		{MeetingID: "seminar", Running: true, ParticipantCount: 8, VoiceParticipantCount: 8, VideoCount: 8},
		{MeetingID: "waiting", Running: false, ParticipantCount: 0},
		{MeetingID: "ended", Running: false, HasBeenForciblyEnded: true, EndTime: 1, ParticipantCount: 30, VideoCount: 30},
	}
	got := CountMeetings(meetings)
	want := Load{Meetings: 3, Participants: 48, Voice: 18, Listeners: 25, Video: 14, LargestMeeting: 40}
	if got != want {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if ids := MeetingIDs(meetings); len(ids) != 3 || ids[0] != "lecture" || ids[2] != "waiting" {
		t.Fatalf("MeetingIDs = %v", ids)
	}
}
