package fleet

import (
	"fmt"
	"strings"
	"time"
)

// DefaultReportInterval is how often an agent reports unless configured, and
// what the balancer assumes for a node that did not say.
const DefaultReportInterval = 5 * time.Second

// AdminState is set by an operator or by the node's agent.
type AdminState string

// The admin states: the same words in code, APIs, CLI output and metrics.
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

// The liveness values: the same words in code, APIs, CLI output and metrics.
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
	// BBBError says why BBB is not healthy (BBBReason's words, so
	// ReasonClass finds its class); "" while it is.
	BBBError string `json:"bbb_error,omitempty"`
	// TURNHealthy: a TURN node's own probe (STUN binding and a TURN
	// allocation with credentials from the shared secret) succeeded.
	TURNHealthy bool   `json:"turn_healthy,omitempty"`
	BBBVersion  string `json:"bbb_version,omitempty"`
}
