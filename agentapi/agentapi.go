package agentapi

import "github.com/bbb-agent/bbb-agent/fleet"

// Paths of the agent API; every request is a POST with a JSON body and the
// header "Authorization: Bearer <agent token>".
const (
	PathRegister   = "/agent/v1/register"
	PathReport     = "/agent/v1/report"
	PathDrain      = "/agent/v1/drain"
	PathUndrain    = "/agent/v1/undrain"
	PathDeregister = "/agent/v1/deregister"
	// PathPing answers 204 to a GET with a valid token: `bbb-agent check`
	// uses it to test the token without touching any node.
	PathPing = "/agent/v1/ping"
)

// MaxBodyBytes bounds a request body on the agent API.
const MaxBodyBytes = 256 << 10

// RegisterRequest announces a node; it is an idempotent upsert by Node.
type RegisterRequest struct {
	Node           string   `json:"node"`
	URL            string   `json:"url"` // BBB server or API URL
	Secret         string   `json:"secret"`
	Role           string   `json:"role"` // bbb | turn
	Tags           []string `json:"tags,omitempty"`
	LoadMultiplier float64  `json:"load_multiplier,omitempty"`
	AgentVersion   string   `json:"agent_version,omitempty"`
	// TURNURIs are what a TURN node offers, e.g. turn:turn1.example.com:3478
	// and turns:turn1.example.com:443?transport=tcp (role turn).
	TURNURIs []string `json:"turn_uris,omitempty"`
	// ReportIntervalSeconds is how often the agent will report; the balancer
	// marks the node offline after a number of missed intervals.
	ReportIntervalSeconds float64 `json:"report_interval_seconds"`
}

// RegisterResponse confirms a registration.
type RegisterResponse struct {
	NodeID string           `json:"node_id"`
	State  fleet.AdminState `json:"state"`
}

// ReportRequest is one load report.
type ReportRequest struct {
	Node string     `json:"node"`
	Seq  int64      `json:"seq"`
	Load fleet.Load `json:"load"`
	// MeetingIDs, when not nil, is the full set of meetings running on the
	// node; the balancer forgets placements on the node that are not in it.
	MeetingIDs []string `json:"meeting_ids,omitempty"`
}

// ReportResponse carries what the balancer wants the node to know.
type ReportResponse struct {
	// State is the node's desired admin state: an operator's cordon reaches
	// the agent this way.
	State fleet.AdminState `json:"state"`
	// TURNServers are the live TURN nodes of the fleet.
	TURNServers []TURNServer `json:"turn_servers"`
}

// TURNServer is a live, healthy TURN node as BBB nodes should use it.
type TURNServer struct {
	Node string   `json:"node"`
	URIs []string `json:"uris"`
}

// NodeRequest names the node for drain, undrain and deregister.
type NodeRequest struct {
	Node string `json:"node"`
}

// StateResponse answers drain and undrain with the state now in force.
type StateResponse struct {
	State fleet.AdminState `json:"state"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
	// Code is a stable machine-readable reason, e.g. "unknown_node".
	Code string `json:"code"`
}

// Error codes.
const (
	CodeUnauthorized = "unauthorized"
	CodeBadRequest   = "bad_request"
	CodeUnknownNode  = "unknown_node"
	CodeConflict     = "conflict"
	CodeInternal     = "internal"
)
