package adminapi

import (
	"github.com/bbb-agent/bbb-agent/balancer/records"
	"github.com/bbb-agent/bbb-agent/fleet"
)

// Paths of the admin API.
const (
	PathServers = "/admin/v1/servers"
	// PathServer is followed by the server ID, then optionally "/state",
	// "/panic" or "/allow-takeover".
	PathServer = "/admin/v1/servers/"
)

// Server is one node as `bbb-balancer status --json` prints it. The JSON
// field names are the status table's column names (participants for
// PARTICIPANTS, cpu_percent for CPU PERCENT, ...); id, url, state, online,
// meetings and users are a fixed interface.
type Server struct {
	ID           string           `json:"id"`
	Hostname     string           `json:"hostname"`
	Name         string           `json:"name"`
	URL          string           `json:"url"`
	Role         fleet.Role       `json:"role"`
	Source       records.Source   `json:"source"`
	State        fleet.AdminState `json:"state"`
	Online       bool             `json:"online"`
	Status       fleet.Liveness   `json:"status"`
	Meetings     int              `json:"meetings"`
	Participants int              `json:"participants"`
	// Users is Participants under the name scripts written against the
	// first release read; kept as an alias.
	Users                int      `json:"users"`
	LargestMeeting       int      `json:"largest_meeting"`
	Videos               int      `json:"videos"`
	Load                 float64  `json:"load"`
	CPUPercent           float64  `json:"cpu_percent"`
	LoadMultiplier       float64  `json:"load_multiplier"`
	Tags                 []string `json:"tags"`
	BBBVersion           string   `json:"bbb_version,omitempty"`
	AgentVersion         string   `json:"agent_version,omitempty"`
	LastReportAgeSeconds *float64 `json:"last_report_age_seconds"`
	// Healthy is false when the node is offline or its BBB (or TURN
	// server) fails; Reason then says why in a few words ("BBB not
	// answering: dial tcp ...: connection refused", "checksumError: wrong
	// secret", "TLS: x509: ...", "BBB hanging: no answer in 5s", "offline:
	// ...") and ReasonClass is its one-word class (fleet.HealthClass: the
	// reason label of bbb_balancer_node_healthy).
	Healthy     bool   `json:"healthy"`
	Reason      string `json:"reason"`
	ReasonClass string `json:"reason_class,omitempty"`
}

// AddServerRequest adds a node without an agent; the balancer polls it.
// Adding a node again (same URL) changes its secret and keeps its id and
// state, and its tags and multiplier unless they are given.
type AddServerRequest struct {
	URL            string   `json:"url"`
	Secret         string   `json:"secret"`
	Tags           []string `json:"tags,omitempty"`
	LoadMultiplier float64  `json:"load_multiplier,omitempty"`
}

// UpdateServerRequest changes a node's tags or load multiplier; a field
// left out stays as it is. Tags [] clears them.
type UpdateServerRequest struct {
	Tags           *[]string `json:"tags,omitempty"`
	LoadMultiplier *float64  `json:"load_multiplier,omitempty"`
}

// SetStateRequest changes a node's admin state.
type SetStateRequest struct {
	State fleet.AdminState `json:"state"`
}

// PanicResponse lists the meetings a panic ended.
type PanicResponse struct {
	Server Server   `json:"server"`
	Ended  []string `json:"ended"`
	Failed []string `json:"failed,omitempty"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
}
