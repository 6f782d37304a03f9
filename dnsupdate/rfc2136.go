package dnsupdate

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// DefaultRFC2136Timeout bounds one exchange with one server unless
// configured.
const DefaultRFC2136Timeout = 5 * time.Second

// RFC2136Config is how to reach a zone that takes dynamic updates.
type RFC2136Config struct {
	// Servers are the primary servers ("host:port"; port 53 if left out),
	// asked in order: the next one only when one cannot be reached.
	Servers []string
	// Zone is the zone the names live in, such as example.com.
	Zone string
	// TSIGKeyName and TSIGSecret (base64) sign every update; both empty
	// sends unsigned updates, for servers that allow them by address.
	TSIGKeyName string
	TSIGSecret  string
	// TSIGAlgorithm is hmac-sha256 (the default), hmac-sha224,
	// hmac-sha384, hmac-sha512, or hmac-sha1 for old servers.
	TSIGAlgorithm string
	// Timeout bounds one exchange with one server; DefaultRFC2136Timeout
	// if zero.
	Timeout time.Duration
}

// RFC2136 is the provider for a zone on DNS servers that take dynamic
// updates (RFC 2136) signed with a TSIG key, such as BIND, Knot or PowerDNS.
// It reads with plain (unsigned, non-recursive) queries and sends signed
// updates, both over TCP; each plan is one UPDATE message whose
// prerequisites are the records the plan was computed from, so a record
// another writer changed meanwhile is never clobbered.
type RFC2136 struct {
	servers []string
	zone    string
	key     string // canonical key name; empty: unsigned
	secret  string
	alg     string // the dns.Hmac* name
	algName string // as configured, for messages
	timeout time.Duration

	mu sync.Mutex
	// txt holds, per name, the character strings of each TXT value as last
	// read, so that a value split at other places than ours still matches
	// exactly in a prerequisite and is written back as it was.
	txt map[string]map[string][]string
}

// Errors of the RFC2136 provider, for errors.Is.
var (
	// ErrTSIGRejected: the server does not accept the key for the zone.
	ErrTSIGRejected = errors.New("does not accept the TSIG key")
	// ErrNotAuthoritative: the server does not serve the zone as primary
	// or secondary.
	ErrNotAuthoritative = errors.New("not authoritative")
	// ErrPrerequisiteFailed: the records differ from those the plan was
	// computed from; plan again.
	ErrPrerequisiteFailed = errors.New("the records changed since they were read")
)

var rfc2136Algorithms = map[string]string{
	"hmac-sha1":   dns.HmacSHA1,
	"hmac-sha224": dns.HmacSHA224,
	"hmac-sha256": dns.HmacSHA256,
	"hmac-sha384": dns.HmacSHA384,
	"hmac-sha512": dns.HmacSHA512,
}

// NewRFC2136 checks the configuration and returns the provider. It does not
// contact the servers.
func NewRFC2136(cfg RFC2136Config) (*RFC2136, error) {
	if len(cfg.Servers) == 0 {
		return nil, errors.New("no DNS server: set --dns-server HOST:PORT")
	}
	p := &RFC2136{timeout: cfg.Timeout, txt: map[string]map[string][]string{}}
	if p.timeout <= 0 {
		p.timeout = DefaultRFC2136Timeout
	}
	for _, s := range cfg.Servers {
		s = strings.TrimSpace(s)
		host, port, err := net.SplitHostPort(s)
		if err != nil {
			host, port = strings.Trim(s, "[]"), "53"
		}
		if host == "" || port == "" {
			return nil, fmt.Errorf("DNS server %q: want HOST:PORT", s)
		}
		p.servers = append(p.servers, net.JoinHostPort(host, port))
	}
	zone, err := Canonical(cfg.Zone)
	if err != nil {
		return nil, fmt.Errorf("zone: %w (set --dns-zone)", err)
	}
	p.zone = zone

	switch {
	case cfg.TSIGKeyName == "" && cfg.TSIGSecret == "":
	case cfg.TSIGKeyName == "" || cfg.TSIGSecret == "":
		return nil, errors.New("set both --dns-tsig-key-name and --dns-tsig-secret, or neither")
	default:
		key, err := Canonical(cfg.TSIGKeyName)
		if err != nil {
			return nil, fmt.Errorf("TSIG key name: %w", err)
		}
		if _, err := base64.StdEncoding.DecodeString(cfg.TSIGSecret); err != nil {
			return nil, fmt.Errorf("the TSIG secret of key %s is not base64 (check --dns-tsig-secret)", key)
		}
		name := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(cfg.TSIGAlgorithm)), ".")
		if name == "" {
			name = "hmac-sha256"
		}
		alg, ok := rfc2136Algorithms[name]
		if !ok {
			names := make([]string, 0, len(rfc2136Algorithms))
			for n := range rfc2136Algorithms {
				names = append(names, n)
			}
			slices.Sort(names)
			return nil, fmt.Errorf("TSIG algorithm %q not supported; use one of %s", cfg.TSIGAlgorithm, strings.Join(names, ", "))
		}
		p.key, p.secret, p.alg, p.algName = key, cfg.TSIGSecret, alg, name
	}
	return p, nil
}

// Name is "rfc2136".
func (p *RFC2136) Name() string { return "rfc2136" }

// Authoritative returns the configured servers that answer now: the wait for
// a change asks the update servers themselves. A server that cannot be
// reached is left out, as it answers nothing, stale or new; if none can be
// reached, that is the error.
func (p *RFC2136) Authoritative(ctx context.Context) ([]string, error) {
	var up []string
	var errs []error
	for _, srv := range p.servers {
		in, err := p.exchange(ctx, srv, p.query(p.zone, dns.TypeSOA))
		if in == nil {
			errs = append(errs, err)
			continue
		}
		up = append(up, srv)
	}
	if len(up) == 0 {
		return nil, fmt.Errorf("no DNS server of zone %s answers: %w", p.zone, errors.Join(errs...))
	}
	return up, nil
}

// Records returns the A, AAAA and TXT RRsets of name, as the first server
// that can be reached answers them (NXDOMAIN: none).
func (p *RFC2136) Records(ctx context.Context, name string) ([]RRset, error) {
	name, err := p.inZone(name)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, srv := range p.servers {
		sets, err := p.records(ctx, srv, name)
		if err == nil || !errors.Is(err, errServerUnreachable) {
			return sets, err
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("no DNS server of zone %s could be reached: %w", p.zone, errors.Join(errs...))
}

// errServerUnreachable marks an exchange that got no answer: the next server is
// asked.
var errServerUnreachable = errors.New("no answer")

func (p *RFC2136) records(ctx context.Context, srv, name string) ([]RRset, error) {
	c := p.client()
	conn, err := c.DialContext(ctx, srv)
	if err != nil {
		return nil, fmt.Errorf("server %s: %w: %w", srv, errServerUnreachable, err)
	}
	defer conn.Close()
	var sets []RRset
	txt := map[string][]string{}
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeTXT} {
		in, _, err := c.ExchangeWithConnContext(ctx, p.query(name, qtype), conn)
		if in == nil {
			return nil, fmt.Errorf("server %s: %w: %w", srv, errServerUnreachable, err)
		}
		if err != nil {
			return nil, fmt.Errorf("server %s: reading %s %s: %w", srv, name, dns.TypeToString[qtype], err)
		}
		if in.Rcode == dns.RcodeRefused || in.Rcode == dns.RcodeNotAuth ||
			(in.Rcode == dns.RcodeSuccess || in.Rcode == dns.RcodeNameError) && !in.Authoritative {
			return nil, p.notAuthoritative(srv, in)
		}
		if in.Rcode == dns.RcodeNameError {
			break // no name, no records of any type
		}
		if in.Rcode != dns.RcodeSuccess {
			return nil, fmt.Errorf("server %s answers %s to %s %s", srv, dns.RcodeToString[in.Rcode], name, dns.TypeToString[qtype])
		}
		set := RRset{Name: name, Type: dns.TypeToString[qtype]}
		for _, rr := range in.Answer {
			h := rr.Header()
			if h.Rrtype != qtype || !strings.EqualFold(h.Name, name) {
				continue // a CNAME and what it points to
			}
			if len(set.Values) == 0 {
				set.TTL = h.Ttl
			}
			switch r := rr.(type) {
			case *dns.A:
				set.Values = append(set.Values, r.A.String())
			case *dns.AAAA:
				set.Values = append(set.Values, r.AAAA.String())
			case *dns.TXT:
				v := joinTXT(r.Txt)
				txt[v] = r.Txt
				set.Values = append(set.Values, v)
			}
		}
		if len(set.Values) > 0 {
			sets = append(sets, set)
		}
	}
	p.mu.Lock()
	p.txt[name] = txt
	p.mu.Unlock()
	return sets, nil
}

// Apply sends the whole plan as one UPDATE to the first server that can be
// reached; a server that answers, even with a refusal, is the last one
// asked. The UPDATE's prerequisites are the records the plan was computed
// from: an RRset to create must not exist, one to replace or delete must
// hold exactly its old values (TTLs aside); otherwise the server changes
// nothing and Apply returns ErrPrerequisiteFailed. That is also the outcome
// when a server applied the update but its answer was lost, and the next
// server (sharing the zone) sees the new records: planning again finds them
// in place.
func (p *RFC2136) Apply(ctx context.Context, plan Plan) error {
	if plan.Empty() {
		return nil
	}
	update, err := p.updateMsg(plan)
	if err != nil || update == nil {
		return err
	}
	var errs []error
	for _, srv := range p.servers {
		// A fresh ID and signature for each server.
		m := update.Copy()
		m.Id = dns.Id()
		if p.key != "" {
			m.SetTsig(p.key, p.alg, 300, time.Now().Unix())
		}
		in, err := p.exchange(ctx, srv, m)
		if in == nil {
			errs = append(errs, fmt.Errorf("server %s: %w", srv, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		return p.updateResult(ctx, srv, plan, in, err)
	}
	return fmt.Errorf("no DNS server of zone %s could be reached: %w", p.zone, errors.Join(errs...))
}

// updateMsg builds the UPDATE for a plan; nil if nothing changes.
func (p *RFC2136) updateMsg(plan Plan) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetUpdate(p.zone)
	for _, c := range plan.Changes {
		switch {
		case c.Action == Create && c.Old == nil && c.New != nil:
		case c.Action == Update && c.Old != nil && c.New != nil:
			if c.Old.Name != c.New.Name || c.Old.Type != c.New.Type {
				return nil, fmt.Errorf("invalid change %s", c)
			}
			if c.Old.equal(*c.New) {
				continue
			}
		case c.Action == Delete && c.Old != nil && c.New == nil:
		default:
			return nil, fmt.Errorf("invalid %q change", c.Action)
		}
		set := c.New
		if set == nil {
			set = c.Old
		}
		name, err := p.inZone(set.Name)
		if err != nil {
			return nil, err
		}
		rrtype := dns.StringToType[set.Type]
		var old, nw []dns.RR
		if c.Old != nil {
			if old, err = p.rrs(*c.Old); err != nil {
				return nil, err
			}
		}
		if c.New != nil {
			if nw, err = p.rrs(*c.New); err != nil {
				return nil, err
			}
		}
		if len(old) == 0 {
			// Prerequisite: the RRset does not exist.
			m.Answer = append(m.Answer, &dns.ANY{Hdr: dns.RR_Header{Name: name, Rrtype: rrtype, Class: dns.ClassNONE}})
		} else {
			// Prerequisite: the RRset exists with exactly the old values.
			m.Used(old)
		}
		if c.Action != Create {
			// Delete the RRset (then add the new one).
			m.Ns = append(m.Ns, &dns.ANY{Hdr: dns.RR_Header{Name: name, Rrtype: rrtype, Class: dns.ClassANY}})
		}
		if len(nw) > 0 {
			m.Insert(nw)
		}
	}
	if len(m.Ns) == 0 {
		return nil, nil
	}
	return m, nil
}

// rrs makes the records of an RRset.
func (p *RFC2136) rrs(set RRset) ([]dns.RR, error) {
	name, err := p.inZone(set.Name)
	if err != nil {
		return nil, err
	}
	var out []dns.RR
	for _, v := range set.Values {
		h := dns.RR_Header{Name: name, Class: dns.ClassINET, Ttl: set.TTL}
		switch set.Type {
		case TypeA, TypeAAAA:
			ip := net.ParseIP(v)
			if ip == nil || (set.Type == TypeA) != (ip.To4() != nil) {
				return nil, fmt.Errorf("%s %s: %q is not an address of that type", name, set.Type, v)
			}
			if set.Type == TypeA {
				h.Rrtype = dns.TypeA
				out = append(out, &dns.A{Hdr: h, A: ip.To4()})
			} else {
				h.Rrtype = dns.TypeAAAA
				out = append(out, &dns.AAAA{Hdr: h, AAAA: ip})
			}
		case TypeTXT:
			h.Rrtype = dns.TypeTXT
			out = append(out, &dns.TXT{Hdr: h, Txt: p.txtStrings(name, v)})
		default:
			return nil, fmt.Errorf("%s: record type %q not supported", name, set.Type)
		}
	}
	return out, nil
}

// txtStrings are the character strings of a TXT value: as last read, or
// else cut every 255 bytes. Values are in miekg/dns's presentation form
// (\" and \DDD escapes), as Records returns them.
func (p *RFC2136) txtStrings(name, v string) []string {
	p.mu.Lock()
	parts, ok := p.txt[name][v]
	p.mu.Unlock()
	if ok {
		return parts
	}
	var out []string
	for len(v) > 255 {
		out = append(out, v[:255])
		v = v[255:]
	}
	return append(out, v)
}

// updateResult turns the server's answer to an UPDATE into an error.
func (p *RFC2136) updateResult(ctx context.Context, srv string, plan Plan, in *dns.Msg, err error) error {
	if t := in.IsTsig(); t != nil && t.Error != dns.RcodeSuccess {
		why := map[uint16]string{
			dns.RcodeBadKey:  "BADKEY, no key of that name and algorithm",
			dns.RcodeBadSig:  "BADSIG, the secret differs",
			dns.RcodeBadTime: "BADTIME, the clocks differ by more than 5 minutes",
		}[t.Error]
		if why == "" {
			why = dns.RcodeToString[int(t.Error)]
		}
		return p.keyRejected(srv, why)
	}
	if err != nil && in.Rcode == dns.RcodeSuccess {
		// Only a success needs a verified answer; miekg/dns does not verify
		// any NOTAUTH answer, and a failure changed nothing either way.
		return fmt.Errorf("server %s: the answer to the update of %s: %w", srv, plan.Name, err)
	}
	switch in.Rcode {
	case dns.RcodeSuccess:
		return nil
	case dns.RcodeYXRrset, dns.RcodeNXRrset, dns.RcodeYXDomain, dns.RcodeNameError:
		return fmt.Errorf("server %s answers %s: %w (another writer?); nothing was changed, plan again",
			srv, dns.RcodeToString[in.Rcode], ErrPrerequisiteFailed)
	case dns.RcodeNotZone:
		return fmt.Errorf("server %s answers NOTZONE: %s is not in zone %s there (a delegated subzone?); check --dns-zone",
			srv, plan.Name, p.zone)
	case dns.RcodeRefused, dns.RcodeNotAuth:
		// Both mean a zone the server does not serve, or a key it does
		// not allow: ask which.
		if soa, _ := p.exchange(ctx, srv, p.query(p.zone, dns.TypeSOA)); soa != nil && !(soa.Rcode == dns.RcodeSuccess && soa.Authoritative) {
			return p.notAuthoritative(srv, in)
		}
		if p.key == "" {
			return fmt.Errorf("server %s answers %s to an unsigned update of zone %s: configure a TSIG key (--dns-tsig-key-name, --dns-tsig-secret)",
				srv, dns.RcodeToString[in.Rcode], p.zone)
		}
		return p.keyRejected(srv, dns.RcodeToString[in.Rcode]+": the key may not update zone "+p.zone+
			" (the zone's allow-update or update-policy on the server)")
	default:
		return fmt.Errorf("server %s answers %s to the update of %s", srv, dns.RcodeToString[in.Rcode], plan.Name)
	}
}

func (p *RFC2136) keyRejected(srv, why string) error {
	return fmt.Errorf("server %s %w %s (%s): %s; check --dns-tsig-key-name, --dns-tsig-secret and --dns-tsig-algorithm",
		srv, ErrTSIGRejected, strings.TrimSuffix(p.key, "."), p.algName, why)
}

func (p *RFC2136) notAuthoritative(srv string, in *dns.Msg) error {
	answer := dns.RcodeToString[in.Rcode]
	if !in.Authoritative && (in.Rcode == dns.RcodeSuccess || in.Rcode == dns.RcodeNameError) {
		answer += " without the authoritative flag"
	}
	return fmt.Errorf("server %s is %w for zone %s (it answers %s); check --dns-zone and --dns-server",
		srv, ErrNotAuthoritative, p.zone, answer)
}

// inZone canonicalizes name and checks that it lies in the zone.
func (p *RFC2136) inZone(name string) (string, error) {
	n, err := Canonical(name)
	if err != nil {
		return "", err
	}
	if !dns.IsSubDomain(p.zone, n) {
		return "", fmt.Errorf("%s is not in zone %s", n, p.zone)
	}
	return n, nil
}

func (p *RFC2136) query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = false
	return m
}

func (p *RFC2136) client() *dns.Client {
	c := &dns.Client{Net: "tcp", Timeout: p.timeout}
	if p.key != "" {
		c.TsigSecret = map[string]string{p.key: p.secret}
	}
	return c
}

// exchange sends m to srv over TCP. A nil answer means the server could not
// be reached or did not answer in time.
func (p *RFC2136) exchange(ctx context.Context, srv string, m *dns.Msg) (*dns.Msg, error) {
	in, _, err := p.client().ExchangeContext(ctx, m, srv)
	return in, err
}

// Check asks every server whether it takes the zone's updates as Apply
// sends them, changing nothing: an UPDATE of the zone with neither a
// prerequisite nor a change, signed with the key. It fails as Apply would
// (the key unknown or its secret wrong, the key not allowed to update the
// zone, a server not authoritative for it). A server that cannot be
// reached is skipped, as Apply tries the next one then; none reachable is
// an error.
func (p *RFC2136) Check(ctx context.Context) error {
	var errs []error
	answered := 0
	for _, srv := range p.servers {
		m := new(dns.Msg)
		m.SetUpdate(p.zone)
		if p.key != "" {
			m.SetTsig(p.key, p.alg, 300, time.Now().Unix())
		}
		in, err := p.exchange(ctx, srv, m)
		if in == nil {
			errs = append(errs, fmt.Errorf("server %s: %w", srv, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		answered++
		if err := p.updateResult(ctx, srv, Plan{Name: p.zone}, in, err); err != nil {
			return err
		}
	}
	if answered == 0 {
		return fmt.Errorf("no DNS server of zone %s could be reached: %w", p.zone, errors.Join(errs...))
	}
	return nil
}
