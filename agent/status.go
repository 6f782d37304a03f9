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
	DesiredState fleet.AdminState `json:"balancer_state,omitempty"`
	// ReportTransport is how reports go to the balancer: "stream" (one
	// upgraded connection), or "POST" and why (registrar.Balancer's
	// ReportTransport); empty for Scalelite.
	ReportTransport       string                `json:"report_transport,omitempty"`
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
	// Phase is where the drain is: cordon, wait, leaving (past the
	// deadline with meetings running: released, still registered),
	// deregister, remove-dns, release, done.
	Phase     string    `json:"phase"`
	StartedAt time.Time `json:"started_at"`
	Deadline  time.Time `json:"deadline"`
	// MeetingsLeft is BBB's count; while BBB does not answer, the last count
	// it told, and MeetingsUnknownSince says since when it does not.
	MeetingsLeft         int       `json:"meetings_left"`
	MeetingsUnknownSince time.Time `json:"meetings_unknown_since,omitzero"`
	// Message says what the drain waits for, in words ("BBB not answering
	// for 5m0s: meetings unknown").
	Message  string `json:"message,omitempty"`
	Finished string `json:"finished,omitempty"`
	// Error is what kept a finished drain from finishing cleanly (the
	// deregistration or the DNS removal failed).
	Error string `json:"error,omitempty"`
}

// setDrainStatus replaces the drain's status (nil: no drain) and wakes the
// admin socket's drain watchers.
func (a *Agent) setDrainStatus(d *DrainStatus) {
	a.mu.Lock()
	a.status.Drain = d
	a.drainChangedLocked()
	a.mu.Unlock()
}

// updateDrain changes the drain's status, if there is one, and wakes the
// watchers.
func (a *Agent) updateDrain(f func(*DrainStatus)) {
	a.mu.Lock()
	if a.status.Drain != nil {
		f(a.status.Drain)
		a.drainChangedLocked()
	}
	a.mu.Unlock()
}

// drainChangedLocked wakes whoever waits on drainChanged; a.mu is held.
func (a *Agent) drainChangedLocked() {
	if a.drainWake != nil {
		close(a.drainWake)
		a.drainWake = nil
	}
}

// drainChanged is closed at the next change of the drain's status (or of
// the lifecycle state: stopped).
func (a *Agent) drainChanged() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.drainWake == nil {
		a.drainWake = make(chan struct{})
	}
	return a.drainWake
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
