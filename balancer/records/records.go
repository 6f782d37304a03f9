package records

import (
	"time"

	"github.com/bbb-agent/bbb-agent/fleet"
)

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

// Node is one server of the fleet as the balancer knows it.
type Node struct {
	ID     string
	Name   string // unique; the agent's node name, or the host of an operator-added URL
	URL    string // BBB API URL, ending in /bigbluebutton/api/
	Secret string
	Role   fleet.Role
	Tags   []string
	// TURNURIs are what a TURN node offers (turn:host:3478, turns:host:443?transport=tcp).
	TURNURIs       []string
	LoadMultiplier float64
	State          fleet.AdminState
	Source         Source
	AgentVersion   string
	// ReportInterval is how often the agent reports (or the poll interval).
	ReportInterval time.Duration
	CreatedAt      time.Time
	// LastReportAt is the balancer's receive time of the newest report; zero if none.
	LastReportAt time.Time
	LastSeq      int64
	Load         fleet.Load
	// CredentialHash is the hex SHA-256 of the node's own credential; empty
	// for a node registered by an agent that predates node credentials, or
	// added by an operator.
	CredentialHash string
	// TakeoverAllowed: an operator allowed the next --takeover registration
	// of the name (bbb-balancer servers allow-takeover).
	TakeoverAllowed bool
}

// Liveness derives online/offline: online while the newest report is younger
// than missed report intervals (the balancer's default is 3).
func (n Node) Liveness(now time.Time, missed int) fleet.Liveness {
	if n.LastReportAt.IsZero() || n.ReportInterval <= 0 {
		return fleet.Offline
	}
	if now.Sub(n.LastReportAt) > time.Duration(missed)*n.ReportInterval {
		return fleet.Offline
	}
	return fleet.Online
}

// Report is one load report from an agent, as received.
type Report struct {
	NodeID     string
	Seq        int64
	ReceivedAt time.Time
	Load       fleet.Load
}

// Meeting records which node a meeting was placed on.
type Meeting struct {
	MeetingID string
	NodeID    string
	PlacedAt  time.Time
}
