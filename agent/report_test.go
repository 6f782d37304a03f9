package agent

import (
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/agent/host"
	"github.com/bbb-agent/bbb-agent/fleet"
)

// TestApplyHost: the host's figures land in the report, the BBB figures stay.
func TestApplyHost(t *testing.T) {
	s := host.Sample{
		Time: time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC), Interval: 5 * time.Second,
		CPUPercent: 42.5, CPUCores: 8, Load1: 1, Load5: 2, Load15: 3,
		MemTotalBytes: 1000, MemUsedBytes: 400,
		NetRxBytesPerSec: 10, NetTxBytesPerSec: 20, DiskFreeBytes: 5000,
	}
	l := fleet.Load{Meetings: 3, Participants: 40, BBBHealthy: true, BBBVersion: "3.0.10"}
	applyHost(&l, s)
	want := fleet.Load{
		CPUPercent: 42.5, CPUCores: 8, Load1: 1, Load5: 2, Load15: 3,
		MemTotalBytes: 1000, MemUsedBytes: 400,
		NetRxBytesPerSec: 10, NetTxBytesPerSec: 20, DiskFreeBytes: 5000,
		Meetings: 3, Participants: 40, BBBHealthy: true, BBBVersion: "3.0.10",
	}
	if l != want {
		t.Errorf("applyHost:\n got %+v\nwant %+v", l, want)
	}
}
