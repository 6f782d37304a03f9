// Package balancer is bbb-balancer: the central service that front-ends talk
// to as if it were one BBB server. It keeps the node registry fed by agent
// reports (and polls of operator-added nodes), places new meetings on the
// least-loaded node, proxies the BBB API to the right node, and serves the
// agent and admin APIs.
package balancer

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/bbb-agent/bbb-agent/balancer/placement"
	"github.com/bbb-agent/bbb-agent/bbb"
)

// Config is everything bbb-balancer serve takes.
type Config struct {
	// Secrets are the balancer's BBB API secrets front-ends sign with (one or more).
	Secrets []string
	// Algorithms limits the checksum algorithms accepted; empty = all four.
	Algorithms []bbb.Algorithm
	// NodeAlgorithm signs calls the balancer makes to nodes (default sha256).
	NodeAlgorithm bbb.Algorithm
	// AgentToken authenticates the agent API; AdminToken the admin API.
	AgentToken string
	AdminToken string
	// MissedReports is how many report intervals without a report make a node offline (default 3).
	MissedReports int
	// DefaultReportInterval applies to nodes that did not say (default 5 s).
	DefaultReportInterval time.Duration
	// PollInterval is how often operator-added nodes are polled (default 10 s).
	PollInterval time.Duration
	// RefreshInterval is how often the registry reloads from the store, to see
	// what other replicas changed (default 1 s).
	RefreshInterval time.Duration
	// FlushInterval is how often buffered reports are written (default 1 s).
	FlushInterval time.Duration
	// NodeTimeout bounds one call to a node (default 5 s); GetMeetingsTimeout
	// bounds each node's part of a fleet-wide getMeetings (default 3 s).
	NodeTimeout        time.Duration
	GetMeetingsTimeout time.Duration
	// MaxBodyBytes bounds a BBB API request body (default 16 MiB).
	MaxBodyBytes int64
	// Recordings configures the recordings index, storage and playback.
	Recordings RecordingsConfig
	// Policy is the placement policy.
	Policy placement.Policy
	// Clock returns now; tests inject one.
	Clock func() time.Time
	// Logger; default slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if len(c.Secrets) == 0 {
		return errors.New("no BBB API secret: give --secret (the secret front-ends use to sign calls to the balancer)")
	}
	for _, s := range c.Secrets {
		if len(s) < 8 {
			return fmt.Errorf("a BBB API secret is %d characters long: use at least 8 (BBB's own are 32+)", len(s))
		}
	}
	if c.AgentToken == "" {
		return errors.New("no agent token: give --agent-token (agents send it to register and report)")
	}
	if c.AdminToken == "" {
		return errors.New("no admin token: give --admin-token (the CLI and the admin API need it)")
	}
	if c.NodeAlgorithm == "" {
		c.NodeAlgorithm = bbb.SHA256
	}
	if c.MissedReports <= 0 {
		c.MissedReports = 3
	}
	if c.DefaultReportInterval <= 0 {
		c.DefaultReportInterval = 5 * time.Second
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 10 * time.Second
	}
	if c.RefreshInterval <= 0 {
		c.RefreshInterval = time.Second
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = time.Second
	}
	if c.NodeTimeout <= 0 {
		c.NodeTimeout = 5 * time.Second
	}
	if c.GetMeetingsTimeout <= 0 {
		c.GetMeetingsTimeout = 3 * time.Second
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 16 << 20
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
