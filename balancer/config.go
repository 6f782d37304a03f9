package balancer

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/bbb-agent/bbb-agent/balancer/placement"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/fleet"
)

// Defaults of the balancer's settings; bbb-balancer serve's flags take them
// as their values. A node that did not say how often it reports is assumed
// to report every fleet.DefaultReportInterval.
const (
	// DefaultListen is the address the balancer serves on.
	DefaultListen = "127.0.0.1:8090"
	// DefaultNodeAlgorithm signs the calls the balancer makes to nodes.
	DefaultNodeAlgorithm = bbb.SHA256
	// DefaultMissedReports is how many report intervals without a report
	// make a node offline.
	DefaultMissedReports = 3
	// DefaultPollInterval is how often operator-added nodes are polled.
	DefaultPollInterval = 10 * time.Second
	// DefaultRefreshInterval is how often the registry reloads from the store.
	DefaultRefreshInterval = time.Second
	// DefaultFlushInterval is how often buffered reports are written.
	DefaultFlushInterval = time.Second
	// DefaultNodeTimeout bounds one call to a node.
	DefaultNodeTimeout = 5 * time.Second
	// DefaultGetMeetingsTimeout bounds each node's part of getMeetings.
	DefaultGetMeetingsTimeout = 3 * time.Second
	// DefaultGetMeetingsMaxAge bounds the staleness of getMeetings.
	DefaultGetMeetingsMaxAge = time.Second
	// DefaultMaxBodyBytes bounds a BBB API request body.
	DefaultMaxBodyBytes = 16 << 20
)

// Config is everything bbb-balancer serve takes.
type Config struct {
	// Secrets are the balancer's BBB API secrets front-ends sign with (one or more).
	Secrets []string
	// Algorithms limits the checksum algorithms accepted; empty = all four.
	Algorithms []bbb.Algorithm
	// NodeAlgorithm signs calls the balancer makes to nodes (default DefaultNodeAlgorithm).
	NodeAlgorithm bbb.Algorithm
	// AgentToken authenticates the agent API; AdminToken the admin API.
	AgentToken string
	AdminToken string
	// SeparateAdmin serves the admin API and /metrics on Server.AdminHandler
	// only (bbb-balancer serve --admin-listen), not on Handler.
	SeparateAdmin bool
	// MissedReports is how many report intervals without a report make a node offline (default DefaultMissedReports).
	MissedReports int
	// DefaultReportInterval applies to nodes that did not say (default fleet.DefaultReportInterval).
	DefaultReportInterval time.Duration
	// PollInterval is how often operator-added nodes are polled (default DefaultPollInterval).
	PollInterval time.Duration
	// RefreshInterval is how often the registry reloads from the store, to see
	// what other replicas changed (default DefaultRefreshInterval).
	RefreshInterval time.Duration
	// FlushInterval is how often buffered reports are written (default DefaultFlushInterval).
	FlushInterval time.Duration
	// NodeTimeout bounds one call to a node (default DefaultNodeTimeout);
	// GetMeetingsTimeout bounds each node's part of a fleet-wide getMeetings
	// (default DefaultGetMeetingsTimeout).
	NodeTimeout        time.Duration
	GetMeetingsTimeout time.Duration
	// GetMeetingsMaxAge is how old a node's part of a getMeetings answer may
	// be (default DefaultGetMeetingsMaxAge); a create or end through this
	// replica is visible at once. Negative: every call asks every node.
	GetMeetingsMaxAge time.Duration
	// MaxBodyBytes bounds a BBB API request body (default 16 MiB).
	MaxBodyBytes int64
	// TakeoverAfter is how long a node must have been offline before an agent
	// that proves the node's BBB secret takes its name over without an
	// operator (default DefaultTakeoverAfter).
	TakeoverAfter time.Duration
	// BodyReadTimeout bounds reading one request body (default 30 s): a
	// client trickling a body holds no connection longer.
	BodyReadTimeout time.Duration
	// Recordings configures the recordings index, storage and playback.
	Recordings RecordingsConfig
	// Policy is the placement policy.
	Policy placement.Policy
	// DisableDashboard turns off the web page at /dashboard/ (room links stay).
	DisableDashboard bool
	// DashboardUsers is a file of dashboard users, "name:bcrypt-hash:role"
	// per line; empty: log in with the admin token only.
	DashboardUsers string
	// Clock returns now; tests inject one.
	Clock func() time.Time
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// DefaultTakeoverAfter is how long a node must be offline before an agent
// proving the same BBB secret takes over its name unasked (README, Security
// model).
const DefaultTakeoverAfter = 30 * time.Minute

func (c *Config) setDefaults() error {
	if len(c.Secrets) == 0 {
		return errors.New("no BBB API secret (Secrets: the secret front-ends use to sign calls to the balancer)")
	}
	for _, s := range c.Secrets {
		if len(s) < 8 {
			return fmt.Errorf("a BBB API secret is %d characters long: use at least 8 (BBB's own are 32+)", len(s))
		}
	}
	if c.AgentToken == "" {
		return errors.New("no agent token (AgentToken: agents send it to register and report)")
	}
	if c.AdminToken == "" {
		return errors.New("no admin token (AdminToken: the CLI and the admin API need it)")
	}
	if c.NodeAlgorithm == "" {
		c.NodeAlgorithm = DefaultNodeAlgorithm
	}
	if c.MissedReports <= 0 {
		c.MissedReports = DefaultMissedReports
	}
	if c.DefaultReportInterval <= 0 {
		c.DefaultReportInterval = fleet.DefaultReportInterval
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.RefreshInterval <= 0 {
		c.RefreshInterval = DefaultRefreshInterval
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.NodeTimeout <= 0 {
		c.NodeTimeout = DefaultNodeTimeout
	}
	if c.GetMeetingsMaxAge == 0 {
		c.GetMeetingsMaxAge = DefaultGetMeetingsMaxAge
	}
	if c.GetMeetingsTimeout <= 0 {
		c.GetMeetingsTimeout = DefaultGetMeetingsTimeout
	}
	if c.TakeoverAfter <= 0 {
		c.TakeoverAfter = DefaultTakeoverAfter
	}
	if c.BodyReadTimeout <= 0 {
		c.BodyReadTimeout = 30 * time.Second
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.Policy == (placement.Policy{}) {
		c.Policy = placement.DefaultPolicy()
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}
