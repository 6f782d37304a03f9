package web

import (
	"context"
	"errors"
	"time"
)

// Fleet is what the dashboard reads and changes.
type Fleet interface {
	// Snapshot is the fleet now. It must be cheap: every viewer calls it
	// every few seconds.
	Snapshot() Snapshot
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
	At       time.Time
	Nodes    []Node
	Meetings []Meeting
	// MeetingsTotal counts every meeting; Meetings may be the largest ones only.
	MeetingsTotal int
	// MeetingsAt is when the meetings were listed; zero if never.
	MeetingsAt time.Time
	Events     []Event
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
