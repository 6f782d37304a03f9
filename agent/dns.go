package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/bbb-agent/bbb-agent/dnsupdate"
)

// DNS keeps the node's records; dnsupdate.Manager is the implementation.
type DNS interface {
	// Apply sends the records' change and returns once the provider
	// accepted it, without waiting for the name servers to answer it.
	Apply(ctx context.Context, v4, v6 netip.Addr) (dnsupdate.Plan, error)
	// Remove deletes the node's records (ours only).
	Remove(ctx context.Context) (dnsupdate.Plan, error)
	// Visible says whether every authoritative server answers the addresses.
	Visible(ctx context.Context, v4, v6 netip.Addr) error
}

// DNSStatus is the node's DNS as `bbb-agent status` shows it.
type DNSStatus struct {
	FQDN     string `json:"fqdn"`
	Provider string `json:"provider"`
	// State: pending (not applied yet), applied, removed, or error.
	State string `json:"state"`
	// Answering says the authoritative servers answer the node's
	// addresses (at the last check).
	Answering bool      `json:"answering"`
	CheckedAt time.Time `json:"checked_at,omitzero"`
	LastError string    `json:"last_error,omitempty"`
}

// DNS states.
const (
	dnsPending = "pending"
	dnsApplied = "applied"
	dnsRemoved = "removed"
	dnsError   = "error"
)

// dnsApplyTimeout bounds one DNS.Apply (reading the records, sending the
// change); it is part of the longest step the watchdog margin allows for.
const dnsApplyTimeout = 30 * time.Second

// errFatal marks an error the agent stops for: retrying cannot help.
var errFatal = errors.New("fatal")

// ensureDNS applies the records before registration, then, one short tick
// at a time (the loop must not block: the systemd watchdog watches it), asks
// the authoritative servers until they answer, so the balancer never sends a
// user to a name that does not resolve yet. After DNSWait the node registers
// anyway, and says so. A name owned by someone else stops the agent.
func (a *Agent) ensureDNS(ctx context.Context) bool {
	addrs := a.addresses()
	now := a.cfg.Clock.Now()
	if !a.dnsApplied {
		cctx, cancel := context.WithTimeout(ctx, dnsApplyTimeout)
		plan, err := a.deps.DNS.Apply(cctx, addrs.PublicIPv4, addrs.PublicIPv6)
		cancel()
		if errors.Is(err, dnsupdate.ErrForeignOwner) || errors.Is(err, dnsupdate.ErrUnowned) {
			a.setDNS(dnsError, false, err)
			a.fatal = fmt.Errorf("%w: DNS: %w", errFatal, err)
			return false
		}
		if err != nil {
			a.setDNS(dnsError, false, err)
			a.retryLater("publishing the node's DNS records", err)
			return false
		}
		a.dnsApplied, a.dnsAppliedAt = true, now
		a.setDNS(dnsApplied, false, nil)
		if !plan.Empty() {
			a.log.Info("DNS records published", "changes", len(plan.Changes))
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := a.deps.DNS.Visible(cctx, addrs.PublicIPv4, addrs.PublicIPv6)
	cancel()
	switch {
	case err == nil:
		a.dnsDone = true
		a.setDNS(dnsApplied, true, nil)
		a.log.Info("DNS records answer at the authoritative servers")
		return true
	case now.Sub(a.dnsAppliedAt) >= a.cfg.DNSWait:
		a.dnsDone = true
		a.setDNS(dnsApplied, false, err)
		a.log.Warn("DNS records do not answer yet after the wait: registering anyway", "wait", a.cfg.DNSWait, "err", err)
		return true
	}
	a.mu.Lock()
	if a.status.DNS != nil {
		a.status.DNS.LastError = err.Error()
	}
	a.mu.Unlock()
	a.nextTry = now.Add(min(time.Second, a.cfg.ReportInterval)) // ask again soon
	return false
}

// refreshAddresses looks for an address change (IMDS or interfaces) and
// moves the records along with it.
func (a *Agent) refreshAddresses(ctx context.Context) {
	if a.deps.Addresses == nil {
		return
	}
	now, err := a.deps.Addresses(ctx)
	if err != nil {
		a.log.Debug("re-reading the node's addresses", "err", err)
		return
	}
	old := a.addresses()
	if now.PublicIPv4 == old.PublicIPv4 && now.PublicIPv6 == old.PublicIPv6 {
		return
	}
	a.log.Info("the node's address changed", "from_v4", old.PublicIPv4, "to_v4", now.PublicIPv4, "from_v6", old.PublicIPv6, "to_v6", now.PublicIPv6)
	a.mu.Lock()
	a.status.Addresses = now
	a.mu.Unlock()
	if a.deps.DNS == nil || !a.dnsApplied {
		return
	}
	// Bounded as at start-up: Apply only sends the change (it never waits
	// for the name servers), and checkDNS asks whether they answer it.
	cctx, cancel := context.WithTimeout(ctx, dnsApplyTimeout)
	_, err = a.deps.DNS.Apply(cctx, now.PublicIPv4, now.PublicIPv6)
	cancel()
	if err != nil {
		a.setDNS(dnsError, false, err)
		a.log.Error("moving the DNS records to the new address", "err", err)
		return
	}
	a.setDNS(dnsApplied, false, nil)
	a.mu.Lock()
	if a.status.DNS != nil {
		a.status.DNS.Answering = false // until checkDNS sees the new address
	}
	a.mu.Unlock()
}

// checkDNS asks the authoritative servers whether they answer the node's
// addresses, for status.
func (a *Agent) checkDNS(ctx context.Context) {
	addrs := a.addresses()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := a.deps.DNS.Visible(cctx, addrs.PublicIPv4, addrs.PublicIPv6)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.status.DNS != nil {
		a.status.DNS.Answering, a.status.DNS.CheckedAt = err == nil, a.cfg.Clock.Now()
		if err != nil {
			a.status.DNS.LastError = err.Error()
		}
	}
}

// removeDNS deletes the node's records after deregistration.
func (a *Agent) removeDNS(ctx context.Context) error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err = a.deps.DNS.Remove(cctx)
		cancel()
		if err == nil || errors.Is(err, dnsupdate.ErrForeignOwner) || errors.Is(err, dnsupdate.ErrUnowned) || ctx.Err() != nil {
			break
		}
		a.log.Warn("removing the DNS records", "err", err, "attempt", attempt+1)
		select {
		case <-ctx.Done():
		case <-a.cfg.Clock.After(min(time.Duration(attempt+1)*a.cfg.ReportInterval, 5*time.Second)):
		}
	}
	if err != nil {
		a.setDNS(dnsError, false, err)
		return err
	}
	a.dnsApplied = false
	a.setDNS(dnsRemoved, false, nil)
	a.log.Info("DNS records removed")
	return nil
}

func (a *Agent) addresses() Addresses {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.status.Addresses
}

func (a *Agent) setDNS(state string, answering bool, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.status.DNS == nil {
		return
	}
	a.status.DNS.State, a.status.DNS.LastError = state, errString(err)
	if answering {
		a.status.DNS.Answering, a.status.DNS.CheckedAt = true, a.cfg.Clock.Now()
	} else if state != dnsApplied {
		a.status.DNS.Answering = false
	}
}
