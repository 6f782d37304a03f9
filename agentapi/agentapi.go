package agentapi

import "github.com/bbb-agent/bbb-agent/fleet"

// Paths of the agent API; every request is a POST with a JSON body and the
// header "Authorization: Bearer <credential>", but for PathPing and the
// report stream's upgrade (stream.go), both GETs with that header.
//
// Two credentials exist. The agent token (bbb-balancer serve --agent-token,
// shared by the fleet) is a bootstrap credential: it registers a node name
// the balancer does not know yet. The registration answers the node's own
// credential (RegisterResponse.Credential), which every later call of that
// node carries and which speaks for that node only: report, cordon, enable,
// deregister and rotate. Nodes registered by agents that predate node
// credentials (RegisterRequest.NodeCredential false) go on with the agent
// token, with a warning at the balancer, until their agent is upgraded.
const (
	PathRegister   = "/agent/v1/register"
	PathReport     = "/agent/v1/report"
	PathCordon     = "/agent/v1/cordon"
	PathEnable     = "/agent/v1/enable"
	PathDeregister = "/agent/v1/deregister"
	// PathRotate replaces the calling node's credential with a new one
	// (RotateResponse); the old one stops working at once.
	PathRotate = "/agent/v1/rotate"
	// PathDrain and PathUndrain are the former names of PathCordon and
	// PathEnable; the balancer still serves them for older agents.
	PathDrain   = "/agent/v1/drain"
	PathUndrain = "/agent/v1/undrain"
	// PathPing answers 204 to a GET with a valid token: `bbb-agent check`
	// uses it to test the token without touching any node.
	PathPing = "/agent/v1/ping"
)

// MaxBodyBytes bounds a request body on the agent API.
const MaxBodyBytes = 256 << 10

// RegisterRequest announces a node. A new name (with the agent token) makes
// a node; a known name is updated only by that node's own credential.
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
	// NodeCredential says the agent keeps a node credential: a registration
	// that makes (or takes over) a node answers one. Agents without it are
	// served as before node credentials existed (migration), with a warning.
	NodeCredential bool `json:"node_credential,omitempty"`
	// Takeover asks to take over the name from the node that holds it; the
	// balancer allows it only after `bbb-balancer servers allow-takeover NAME`.
	Takeover bool `json:"takeover,omitempty"`
}

// RegisterResponse confirms a registration.
type RegisterResponse struct {
	NodeID string           `json:"node_id"`
	State  fleet.AdminState `json:"state"`
	// Credential is the node's own credential, present only when this
	// registration made it (a new node, a takeover, a migration). The
	// balancer keeps only its hash: it is never sent again.
	Credential string `json:"credential,omitempty"`
}

// RotateResponse carries the node's new credential.
type RotateResponse struct {
	Credential string `json:"credential"`
}

// ReportRequest is one load report.
type ReportRequest struct {
	Node string `json:"node"`
	// Seq counts the reports of one agent run; within a Run it never goes
	// backwards (a retry may repeat it).
	Seq int64 `json:"seq"`
	// Run identifies one agent run (random, fixed until the agent restarts).
	Run  string     `json:"run,omitempty"`
	Load fleet.Load `json:"load"`
	// MeetingIDs, when not nil, is the full set of meetings running on the
	// node; the balancer forgets placements on the node that are not in it.
	MeetingIDs []string `json:"meeting_ids,omitempty"`
	// Leaving says the node's drain passed its deadline with meetings still
	// running: the host may go away at any moment, and the node stays
	// registered and cordoned only so that its meetings stay joinable. The
	// balancer removes a leaving node once it reports no meetings (with
	// BBB answering) or goes offline (missed reports), without waiting for
	// its agent to deregister. Agents that predate it never send it; a
	// balancer that predates it ignores it (the agent still deregisters).
	Leaving bool `json:"leaving,omitempty"`
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

// NodeRequest names the node for cordon, enable, deregister and rotate; it
// must be the node the credential belongs to.
type NodeRequest struct {
	Node string `json:"node"`
}

// StateResponse answers cordon and enable with the state now in force.
type StateResponse struct {
	State fleet.AdminState `json:"state"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
	// Code is a stable machine-readable reason, e.g. "unknown_node".
	Code string `json:"code"`
	// Field names the offending field of a bad_request, e.g. "load.cpu_percent".
	Field string `json:"field,omitempty"`
}

// Error codes.
const (
	CodeUnauthorized = "unauthorized"
	// CodeForbidden: the credential is valid but does not speak for that
	// node, or the agent token was used where a node credential is needed.
	CodeForbidden = "forbidden"
	// CodeNodeConflict: another node holds the name or the URL; the message
	// names the holder and the fix.
	CodeNodeConflict = "node_conflict"
	// CodeNodeCheck: the node's BBB API did not answer correctly with the
	// given URL and secret; the message says how.
	CodeNodeCheck   = "node_check_failed"
	CodeBadRequest  = "bad_request"
	CodeUnknownNode = "unknown_node"
	CodeConflict    = "conflict"
	CodeInternal    = "internal"
)
