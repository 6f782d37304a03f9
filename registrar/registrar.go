package registrar

import (
	"context"
	"errors"
	"time"

	"github.com/bbb-agent/bbb-agent/agentapi"
	"github.com/bbb-agent/bbb-agent/fleet"
)

// Registration describes the node to the balancer.
type Registration struct {
	Node           string // the agent's node name
	URL            string // BBB server URL (https://bbb1.example.com) or API URL
	Secret         string // BBB API secret
	Role           fleet.Role
	Tags           []string
	TURNURIs       []string // what a TURN node offers
	LoadMultiplier float64
	AgentVersion   string
	ReportInterval time.Duration
}

// Report is one load report.
type Report struct {
	Seq  int64
	Load fleet.Load
	// MeetingIDs is the full set of running meetings, or nil to leave it out.
	MeetingIDs []string
	// Leaving: the node's drain passed its deadline with meetings running;
	// it stays registered for them (agentapi.ReportRequest.Leaving).
	Leaving bool
}

// Reply is what the balancer wants the node to know after a report.
type Reply struct {
	// State is the node's desired admin state at the balancer: an operator's
	// cordon reaches the agent this way.
	State       fleet.AdminState
	TURNServers []agentapi.TURNServer
}

// Registrar is one balancer the node belongs to. Every method is safe to
// retry: registering twice, cordoning twice or deregistering a node that is
// gone are not errors.
type Registrar interface {
	// Kind is "balancer" or "scalelite", for status and logs.
	Kind() string
	// Register adds or updates the node (never a duplicate, also after a
	// reboot) and returns its admin state at the balancer. It does not change
	// a state the node already has: a drained node stays cordoned.
	Register(ctx context.Context, r Registration) (fleet.AdminState, error)
	// Report sends a load report and returns the balancer's reply.
	Report(ctx context.Context, r Report) (Reply, error)
	// Cordon asks for no new meetings (the start of a drain).
	Cordon(ctx context.Context) error
	// Enable lets the node take new meetings again (undrain).
	Enable(ctx context.Context) error
	// Deregister removes the node from the balancer (the end of a drain).
	Deregister(ctx context.Context) error
	// Check tests that the balancer answers and accepts the agent's
	// credentials, changing nothing (`bbb-agent check`).
	Check(ctx context.Context) error
}

// Errors a Registrar wraps, so the agent can tell what to do.
var (
	// ErrUnauthorized: the balancer refused our credentials. Retrying will
	// not help until the operator fixes the token or secret.
	ErrUnauthorized = errors.New("the balancer refused the agent's credentials")
	// ErrNotRegistered: the balancer does not know the node (its database was
	// reset, or an operator removed it): register again.
	ErrNotRegistered = errors.New("the balancer does not know this node")
	// ErrRejected: the balancer refused the request as invalid; the error
	// says why. Retrying the same request will not help.
	ErrRejected = errors.New("the balancer rejected the request")
)

// ConflictError is a registration the balancer refused because another
// node holds the name or the URL (a cloned image, a copied agent.yaml, a
// takeover attempt). Message is the balancer's, naming the holder and the
// fix; it wraps ErrRejected.
type ConflictError struct {
	What    string // the call, for context
	Message string
}

func (e *ConflictError) Error() string {
	return e.What + ": another node holds this node's name or URL: " + e.Message
}

// Unwrap makes errors.Is(err, ErrRejected) true.
func (e *ConflictError) Unwrap() error { return ErrRejected }
