package agent

import (
	"time"

	"github.com/bbb-agent/bbb-agent/agentapi"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/turn"
)

// Status is what `bbb-agent status` shows. Field names are the project's fixed
// vocabulary:
// node, state, registered and last_report_age_seconds at least.
type Status struct {
	Node      string     `json:"node"`
	Role      fleet.Role `json:"role"`
	State     State      `json:"state"`
	Version   string     `json:"version"`
	ServerURL string     `json:"bbb_url,omitempty"`
	Addresses Addresses  `json:"addresses"`
	// BBBHealthy says the node's BBB API answered the last getMeetings.
	BBBHealthy bool   `json:"bbb_healthy"`
	BBBError   string `json:"bbb_error,omitempty"`
	Registrar  string `json:"registrar"`
	Registered bool   `json:"registered"`
	// DesiredState is the node's admin state at the balancer.
	DesiredState          fleet.AdminState      `json:"balancer_state,omitempty"`
	LastReportAt          time.Time             `json:"last_report_at,omitzero"`
	LastReportAgeSeconds  *float64              `json:"last_report_age_seconds"`
	ReportIntervalSeconds float64               `json:"report_interval_seconds"`
	LastError             string                `json:"last_error,omitempty"`
	Load                  fleet.Load            `json:"load"`
	Drain                 *DrainStatus          `json:"drain,omitempty"`
	DNS                   *DNSStatus            `json:"dns,omitempty"`
	TURNServers           []agentapi.TURNServer `json:"turn_servers,omitempty"`
	// TURN is a BBB node's turn-stun-servers.xml: servers in use, probes,
	// when it was written, a pending bbb-web restart.
	TURN *turn.Status `json:"turn,omitempty"`
	// TURNError is a TURN node's failing self-probe.
	TURNError string `json:"turn_error,omitempty"`
	// Recordings is the recordings backlog and what shipped (role bbb).
	Recordings *RecordingsStatus `json:"recordings,omitempty"`

	updated time.Time
}

// DrainStatus describes a drain under way (or finished).
type DrainStatus struct {
	Source DrainSource `json:"source"`
	// Phase is where the drain is: cordon, wait, deregister, remove-dns,
	// release, done.
	Phase        string    `json:"phase"`
	StartedAt    time.Time `json:"started_at"`
	Deadline     time.Time `json:"deadline"`
	MeetingsLeft int       `json:"meetings_left"`
	Finished     string    `json:"finished,omitempty"`
}

// Status returns a snapshot of the agent's status.
func (a *Agent) Status() Status {
	a.mu.RLock()
	s := a.status
	if s.Drain != nil {
		d := *s.Drain
		s.Drain = &d
	}
	if s.DNS != nil {
		d := *s.DNS
		s.DNS = &d
	}
	if s.TURN != nil {
		t := *s.TURN
		s.TURN = &t
	}
	if s.Recordings != nil {
		r := *s.Recordings
		s.Recordings = &r
	}
	s.TURNServers = append([]agentapi.TURNServer(nil), s.TURNServers...)
	a.mu.RUnlock()
	if !s.LastReportAt.IsZero() {
		age := a.cfg.Clock.Now().Sub(s.LastReportAt).Seconds()
		s.LastReportAgeSeconds = &age
	}
	return s
}

// publishStatus marks the status as fresh (the watchdog's sign of life).
func (a *Agent) publishStatus() {
	a.mu.Lock()
	a.status.updated = a.cfg.Clock.Now()
	a.mu.Unlock()
}
