package dnsupdate

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/miekg/dns"
)

// DefaultWaitTimeout bounds the wait for the authoritative servers to answer
// the node's new addresses unless configured.
const DefaultWaitTimeout = 2 * time.Minute

// Manager keeps one node's records: Ensure before registration and on an
// address change, Remove after deregistration.
type Manager struct {
	Provider Provider
	FQDN     string
	TTL      uint32
	Owner    Owner
	Takeover bool
	// WaitTimeout bounds the wait for the authoritative servers to answer
	// the new addresses; WaitEvery is the pause between asks.
	WaitTimeout time.Duration // DefaultWaitTimeout if zero
	WaitEvery   time.Duration
	// Resolve asks one server for name's records of a type (tests and
	// production alike use DNS over TCP by default).
	Resolve func(ctx context.Context, server, name string, qtype uint16) ([]string, error)
}

// Plan computes what Ensure (or, with no addresses, Remove) would change.
func (m *Manager) Plan(ctx context.Context, v4, v6 netip.Addr, remove bool) (Plan, error) {
	name, err := Canonical(m.FQDN)
	if err != nil {
		return Plan{Name: m.FQDN}, err
	}
	current, err := m.Provider.Records(ctx, name)
	if err != nil {
		return Plan{Name: name}, fmt.Errorf("reading the records of %s at %s: %w", name, m.Provider.Name(), err)
	}
	var desired []RRset
	if !remove {
		if desired, err = Desired(name, v4, v6, m.TTL, m.Owner); err != nil {
			return Plan{Name: name}, err
		}
	}
	return Compute(name, current, desired, m.Owner, m.Takeover)
}

// Apply brings the name to the node's addresses without waiting.
func (m *Manager) Apply(ctx context.Context, v4, v6 netip.Addr) (Plan, error) {
	p, err := m.Plan(ctx, v4, v6, false)
	if err != nil {
		return p, err
	}
	if !p.Empty() {
		if err := m.Provider.Apply(ctx, p); err != nil {
			return p, fmt.Errorf("%s: applying %d changes for %s: %w", m.Provider.Name(), len(p.Changes), p.Name, err)
		}
	}
	return p, nil
}

// Ensure applies and then waits (bounded) until the zone's authoritative
// servers answer the addresses.
func (m *Manager) Ensure(ctx context.Context, v4, v6 netip.Addr) (Plan, error) {
	p, err := m.Apply(ctx, v4, v6)
	if err != nil {
		return p, err
	}
	return p, m.WaitVisible(ctx, v4, v6)
}

// Remove deletes the node's records (only ours; others stay).
func (m *Manager) Remove(ctx context.Context) (Plan, error) {
	p, err := m.Plan(ctx, netip.Addr{}, netip.Addr{}, true)
	if err != nil {
		return p, err
	}
	if p.Empty() {
		return p, nil
	}
	if err := m.Provider.Apply(ctx, p); err != nil {
		return p, fmt.Errorf("%s: removing the records of %s: %w", m.Provider.Name(), p.Name, err)
	}
	return p, nil
}

// ErrNotVisible means the authoritative servers did not answer the new
// addresses within the wait.
var ErrNotVisible = errors.New("the authoritative servers do not answer the new addresses yet")

// Propagator is a provider that knows whether its last change has reached
// all of its name servers (Route53's INSYNC), which matters where those
// servers cannot be asked (a private hosted zone). Propagated asks once and
// never waits; a change still on its way is ErrNotVisible.
type Propagator interface {
	Propagated(ctx context.Context) error
}

// Visible asks every authoritative server whether it answers exactly the
// node's addresses; it returns nil when all do. A Propagator provider is
// asked first.
func (m *Manager) Visible(ctx context.Context, v4, v6 netip.Addr) error {
	if p, ok := m.Provider.(Propagator); ok {
		if err := p.Propagated(ctx); err != nil {
			return err
		}
	}
	servers, err := m.Provider.Authoritative(ctx)
	if err != nil {
		return fmt.Errorf("finding the authoritative servers: %w", err)
	}
	name, err := Canonical(m.FQDN)
	if err != nil {
		return err
	}
	resolve := m.Resolve
	if resolve == nil {
		resolve = Lookup
	}
	for _, srv := range servers {
		for _, q := range []struct {
			qtype uint16
			want  netip.Addr
		}{{dns.TypeA, v4}, {dns.TypeAAAA, v6}} {
			got, err := resolve(ctx, srv, name, q.qtype)
			if err != nil {
				return fmt.Errorf("asking %s for %s %s: %w", srv, name, dns.TypeToString[q.qtype], err)
			}
			var want []string
			if q.want.IsValid() {
				want = []string{q.want.String()}
			}
			if !slices.Equal(got, want) {
				return fmt.Errorf("%w: %s answers %s %s with %v, want %v", ErrNotVisible, srv, name, dns.TypeToString[q.qtype], got, want)
			}
		}
	}
	return nil
}

// WaitVisible waits until Visible holds or the wait times out.
func (m *Manager) WaitVisible(ctx context.Context, v4, v6 netip.Addr) error {
	timeout, every := m.WaitTimeout, m.WaitEvery
	if timeout <= 0 {
		timeout = DefaultWaitTimeout
	}
	if every <= 0 {
		every = time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		err := m.Visible(ctx, v4, v6)
		if err == nil {
			return nil
		}
		if last == nil || ctx.Err() == nil {
			last = err // not an ask the end of the wait cut short
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("after %s: %w", timeout, last)
		case <-time.After(every):
		}
	}
}

// Lookup asks one server over TCP, without recursion, for the values of
// name's records of one type (sorted). NXDOMAIN and NODATA are no values.
func Lookup(ctx context.Context, server, name string, qtype uint16) ([]string, error) {
	msg := new(dns.Msg)
	msg.SetQuestion(name, qtype)
	msg.RecursionDesired = false
	c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
	in, _, err := c.ExchangeContext(ctx, msg, server)
	if err != nil {
		return nil, err
	}
	if in.Rcode != dns.RcodeSuccess && in.Rcode != dns.RcodeNameError {
		return nil, fmt.Errorf("answer %s", dns.RcodeToString[in.Rcode])
	}
	var out []string
	for _, rr := range in.Answer {
		switch r := rr.(type) {
		case *dns.A:
			if qtype == dns.TypeA {
				out = append(out, r.A.String())
			}
		case *dns.AAAA:
			if qtype == dns.TypeAAAA {
				out = append(out, r.AAAA.String())
			}
		case *dns.TXT:
			if qtype == dns.TypeTXT {
				out = append(out, joinTXT(r.Txt))
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// joinTXT joins a TXT record's character strings into one value.
func joinTXT(parts []string) string {
	s := ""
	for _, p := range parts {
		s += p
	}
	return s
}
