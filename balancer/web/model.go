package web

import (
	"cmp"
	"context"
	"errors"
	"strings"
	"time"
)

// Fleet is what the dashboard reads and changes.
type Fleet interface {
	// Snapshot is the fleet now, with every TURN server and at most maxBBB
	// of its BBB servers (all when maxBBB <= 0): of a bigger fleet, those
	// the page shows (the first maxBBB in AttentionOrder), or more, which
	// the page then picks from. It must be cheap: the page asks for it
	// every few seconds.
	Snapshot(maxBBB int) Snapshot
	// SetState sets a node's admin state (enabled, cordoned, disabled) the
	// way the admin API does; who is the logged-in user.
	SetState(ctx context.Context, who, node, state string) error
	// CreateRoom creates a room; base is the balancer's URL as the browser
	// sees it, for the links.
	CreateRoom(ctx context.Context, who string, req RoomRequest, base string) (RoomLinks, error)
}

// Rooms is what the room links need.
type Rooms interface {
	// Room names the room a link's token opens and says whether it is the
	// moderator link; ErrNoRoom when the token opens nothing.
	Room(ctx context.Context, token string) (name string, moderator bool, err error)
	// Open creates the room's meeting if needed and returns the URL that
	// joins it as fullName with the link's role. ErrWaitForModerator when
	// a participant must wait for a moderator.
	Open(ctx context.Context, token, fullName string) (joinURL string, err error)
}

// Errors Rooms returns.
var (
	ErrNoRoom           = errors.New("no room has this link: it was rotated or the room deleted")
	ErrWaitForModerator = errors.New("the room waits for a moderator")
)

// Snapshot is the fleet as the page shows it. Nothing here is a secret.
type Snapshot struct {
	At time.Time
	// Nodes are in name order; Counts counts every node, also those not in
	// Nodes.
	Nodes    []Node
	Counts   Counts
	Meetings []Meeting
	// MeetingsTotal counts every meeting; Meetings may be the largest ones only.
	MeetingsTotal int
	// MeetingsAt is when the meetings were listed; zero if never.
	MeetingsAt time.Time
	Events     []Event
}

// Counts counts a fleet's servers.
type Counts struct {
	BBB, TURN, Online, Offline int
}

// CountNodes counts nodes.
func CountNodes(nodes []Node) Counts {
	var c Counts
	for i := range nodes {
		if nodes[i].Role == "turn" {
			c.TURN++
		} else {
			c.BBB++
		}
		if nodes[i].Liveness == "online" {
			c.Online++
		} else {
			c.Offline++
		}
	}
	return c
}

// AttentionRank is where the page's table puts a BBB server: 0 for one
// offline or unhealthy, 1 for one cordoned or disabled, 2 for the rest.
func AttentionRank(online, healthy bool, state string) int {
	switch {
	case !online || !healthy:
		return 0
	case state != "enabled":
		return 1
	}
	return 2
}

// AttentionOrder orders BBB servers as a page too small for all of them
// picks: lower AttentionRank first, then the most loaded, then by name.
func AttentionOrder(rankA int, loadA float64, nameA string, rankB int, loadB float64, nameB string) int {
	return cmp.Or(cmp.Compare(rankA, rankB), cmp.Compare(loadB, loadA), strings.Compare(nameA, nameB))
}

// Node is one server of the fleet.
type Node struct {
	ID, Name, Role string
	State          string // enabled|cordoned|disabled
	Liveness       string // online|offline
	Meetings       int
	Participants   int
	Video          int
	CPUPercent     float64
	Load           float64
	BBBVersion     string
	AgentVersion   string
	// LastReportAge is how long ago the newest report arrived; <0: never.
	LastReportAge time.Duration
	TURNHealthy   bool
	TURNURIs      []string
	// Reason says why the node is not healthy, "" when it is.
	Reason string
	// History is the node's load over the last hour, oldest first, at
	// even intervals (a few dozen points).
	History []float64
}

// Meeting is one running meeting.
type Meeting struct {
	ID, Name, Node string
	Participants   int
	Since          time.Time
}

// Event is one line of the event log.
type Event struct {
	At   time.Time
	Text string
}

// RoomRequest is what a new room is created with.
type RoomRequest struct {
	Name             string
	Record           bool
	MaxParticipants  int
	WaitForModerator bool
}

// RoomLinks are a room and its two links.
type RoomLinks struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Moderator string `json:"moderator_link"`
	Viewer    string `json:"participant_link"`
}
