package balancer

import (
	"fmt"
	"math"

	"github.com/bbb-agent/bbb-agent/agentapi"
)

// Bounds of a believable load report: far above any real node, far below
// what would break placement arithmetic.
const (
	maxMeetings   = 100_000
	maxPeople     = 1_000_000 // participants, voice, video, listeners, largest meeting
	maxBacklog    = 1_000_000
	maxCPUCores   = 100_000
	maxLoadAvg    = 1_000_000
	maxBytesPerS  = 1e13 // 80 Tbit/s
	maxMeetingIDs = maxMeetings
	maxVersionLen = 128
)

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// validateReport checks a report's figures: finite, not negative and within
// bounds. It returns the JSON name of the first bad field and why, or "".
func validateReport(req *agentapi.ReportRequest) (field, msg string) {
	if req.Seq < 0 {
		return "seq", "must not be negative"
	}
	l := req.Load
	floats := []struct {
		name string
		v    float64
		max  float64
	}{
		{"load.cpu_percent", l.CPUPercent, 100},
		{"load.load1", l.Load1, maxLoadAvg},
		{"load.load5", l.Load5, maxLoadAvg},
		{"load.load15", l.Load15, maxLoadAvg},
		{"load.net_rx_bps", l.NetRxBytesPerSec, maxBytesPerS},
		{"load.net_tx_bps", l.NetTxBytesPerSec, maxBytesPerS},
	}
	for _, f := range floats {
		if !finite(f.v) || f.v < 0 || f.v > f.max {
			return f.name, fmt.Sprintf("%v is not between 0 and %v", f.v, f.max)
		}
	}
	ints := []struct {
		name string
		v    int
		max  int
	}{
		{"load.meetings", l.Meetings, maxMeetings},
		{"load.participants", l.Participants, maxPeople},
		{"load.voice", l.Voice, maxPeople},
		{"load.video", l.Video, maxPeople},
		{"load.listeners", l.Listeners, maxPeople},
		{"load.largest_meeting", l.LargestMeeting, maxPeople},
		{"load.recording_backlog", l.RecordingBacklog, maxBacklog},
		{"load.cpu_cores", l.CPUCores, maxCPUCores},
	}
	for _, f := range ints {
		if f.v < 0 || f.v > f.max {
			return f.name, fmt.Sprintf("%d is not between 0 and %d", f.v, f.max)
		}
	}
	if l.MemTotalBytes > 0 && l.MemUsedBytes > l.MemTotalBytes {
		return "load.mem_used_bytes", "is more than load.mem_total_bytes"
	}
	if len(l.BBBVersion) > maxVersionLen {
		return "load.bbb_version", fmt.Sprintf("is longer than %d characters", maxVersionLen)
	}
	if len(req.MeetingIDs) > maxMeetingIDs {
		return "meeting_ids", fmt.Sprintf("lists more than %d meetings", maxMeetingIDs)
	}
	return "", ""
}
