// Package fleet is the balancer's vocabulary: nodes with their admin state,
// liveness and reported load, and the placement of meetings on nodes. It holds
// types and the rules that follow from them, no I/O.
package fleet

import (
	"fmt"
	"strings"
	"time"
)

// AdminState is set by an operator or by the node's agent.
type AdminState string

// The admin states (DESIGN.md).
const (
	// Enabled nodes get new meetings.
	Enabled AdminState = "enabled"
	// Cordoned nodes get no new meetings; running meetings and their joins go on.
	Cordoned AdminState = "cordoned"
	// Disabled nodes get nothing.
	Disabled AdminState = "disabled"
)

// ParseAdminState accepts enabled|cordoned|disabled and Scalelite's
// enable|cordon|disable.
func ParseAdminState(s string) (AdminState, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "enabled", "enable":
		return Enabled, nil
	case "cordoned", "cordon":
		return Cordoned, nil
	case "disabled", "disable":
		return Disabled, nil
	}
	return "", fmt.Errorf("unknown node state %q: want enabled, cordoned or disabled", s)
}

// Liveness is derived by the balancer from report (or poll) freshness.
type Liveness string

// The liveness values (DESIGN.md).
const (
	Online  Liveness = "online"
	Offline Liveness = "offline"
)

// Role is what a node serves.
type Role string

// The roles.
const (
	RoleBBB  Role = "bbb"
	RoleTURN Role = "turn"
)

// ParseRole accepts bbb|turn.
func ParseRole(s string) (Role, error) {
	switch r := Role(strings.ToLower(strings.TrimSpace(s))); r {
	case RoleBBB, RoleTURN:
		return r, nil
	case "":
		return RoleBBB, nil
	}
	return "", fmt.Errorf("unknown role %q: want bbb or turn", s)
}

// Source says how the balancer learns a node's load.
type Source string

// The sources.
const (
	// SourceAgent nodes push reports through the agent API.
	SourceAgent Source = "agent"
	// SourcePoll nodes were added by an operator without an agent; the
	// balancer polls their getMeetings.
	SourcePoll Source = "poll"
)

// Load is what a node reports about itself (or what a poll found).
type Load struct {
	CPUPercent       float64 `json:"cpu_percent"` // 0..100, all cores together
	CPUCores         int     `json:"cpu_cores,omitempty"`
	Load1            float64 `json:"load1"`
	Load5            float64 `json:"load5"`
	Load15           float64 `json:"load15"`
	MemTotalBytes    uint64  `json:"mem_total_bytes"`
	MemUsedBytes     uint64  `json:"mem_used_bytes"`
	NetRxBytesPerSec float64 `json:"net_rx_bps"`
	NetTxBytesPerSec float64 `json:"net_tx_bps"`
	DiskFreeBytes    uint64  `json:"disk_free_bytes,omitempty"`
	Meetings         int     `json:"meetings"`
	Participants     int     `json:"participants"`
	Voice            int     `json:"voice"`
	Video            int     `json:"video"`
	Listeners        int     `json:"listeners"`
	LargestMeeting   int     `json:"largest_meeting"`
	RecordingBacklog int     `json:"recording_backlog"`
	BBBHealthy       bool    `json:"bbb_healthy"`
	// TURNHealthy: a TURN node's own probe (STUN binding and a TURN
	// allocation with credentials from the shared secret) succeeded.
	TURNHealthy bool   `json:"turn_healthy,omitempty"`
	BBBVersion  string `json:"bbb_version,omitempty"`
}

// Node is one server of the fleet as the balancer knows it.
type Node struct {
	ID     string
	Name   string // unique; the agent's node name, or the host of an operator-added URL
	URL    string // BBB API URL, ending in /bigbluebutton/api/
	Secret string
	Role   Role
	Tags   []string
	// TURNURIs are what a TURN node offers (turn:host:3478, turns:host:443?transport=tcp).
	TURNURIs       []string
	LoadMultiplier float64
	State          AdminState
	Source         Source
	AgentVersion   string
	// ReportInterval is how often the agent reports (or the poll interval).
	ReportInterval time.Duration
	CreatedAt      time.Time
	// LastReportAt is the balancer's receive time of the newest report; zero if none.
	LastReportAt time.Time
	LastSeq      int64
	Load         Load
}

// Liveness derives online/offline: online while the newest report is younger
// than missed report intervals (DESIGN.md default 3).
func (n Node) Liveness(now time.Time, missed int) Liveness {
	if n.LastReportAt.IsZero() || n.ReportInterval <= 0 {
		return Offline
	}
	if now.Sub(n.LastReportAt) > time.Duration(missed)*n.ReportInterval {
		return Offline
	}
	return Online
}

// Report is one load report from an agent, as received.
type Report struct {
	NodeID     string
	Seq        int64
	ReceivedAt time.Time
	Load       Load
}

// Meeting records which node a meeting was placed on.
type Meeting struct {
	MeetingID string
	NodeID    string
	PlacedAt  time.Time
}
