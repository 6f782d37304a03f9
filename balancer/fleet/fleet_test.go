package fleet

import (
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/bbb"
)

func TestLiveness(t *testing.T) {
	now := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		last     time.Duration // age of the newest report; <0 = never
		interval time.Duration
		want     Liveness
	}{
		{"fresh", time.Second, 5 * time.Second, Online},
		{"two missed", 10 * time.Second, 5 * time.Second, Online},
		{"exactly three", 15 * time.Second, 5 * time.Second, Online},
		{"past three", 15*time.Second + time.Millisecond, 5 * time.Second, Offline},
		{"never reported", -1, 5 * time.Second, Offline},
		{"no interval", time.Second, 0, Offline},
	}
	for _, tt := range tests {
		n := Node{ReportInterval: tt.interval}
		if tt.last >= 0 {
			n.LastReportAt = now.Add(-tt.last)
		}
		if got := n.Liveness(now, 3); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
}

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
