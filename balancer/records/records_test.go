package records

import (
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/fleet"
)

func TestLiveness(t *testing.T) {
	now := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		last     time.Duration // age of the newest report; <0 = never
		interval time.Duration
		want     fleet.Liveness
	}{
		{"fresh", time.Second, 5 * time.Second, fleet.Online},
		{"two missed", 10 * time.Second, 5 * time.Second, fleet.Online},
		{"exactly three", 15 * time.Second, 5 * time.Second, fleet.Online},
		{"past three", 15*time.Second + time.Millisecond, 5 * time.Second, fleet.Offline},
		{"never reported", -1, 5 * time.Second, fleet.Offline},
		{"no interval", time.Second, 0, fleet.Offline},
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
