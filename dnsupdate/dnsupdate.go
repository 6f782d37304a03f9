package dnsupdate

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Record types a node has.
const (
	TypeA    = "A"
	TypeAAAA = "AAAA"
	TypeTXT  = "TXT"
)

// DefaultTTL is the records' TTL unless configured: short, so a replaced
// node's name moves quickly.
const DefaultTTL = 60

// RRset is the records of one name and type. Name is a lower-case FQDN with
// a trailing dot; TXT values are the unquoted text.
type RRset struct {
	Name   string
	Type   string
	TTL    uint32
	Values []string
}

func (r RRset) String() string {
	return fmt.Sprintf("%s %d %s %s", r.Name, r.TTL, r.Type, strings.Join(r.Values, " "))
}

// equal reports whether two RRsets have the same TTL and values, in any order.
func (r RRset) equal(o RRset) bool {
	if r.TTL != o.TTL || len(r.Values) != len(o.Values) {
		return false
	}
	a, b := slices.Clone(r.Values), slices.Clone(o.Values)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// Action is what a Change does.
type Action string

// The actions.
const (
	Create Action = "create"
	Update Action = "update"
	Delete Action = "delete"
)

// Change is one RRset to create, replace or delete. Old holds the exact
// current values (Update, Delete): providers use them as prerequisites
// (RFC 2136) or as the DELETE body (Route53), so a record someone else
// changed meanwhile is not clobbered.
type Change struct {
	Action Action
	Old    *RRset
	New    *RRset
}

func (c Change) String() string {
	switch c.Action {
	case Create:
		return "create " + c.New.String()
	case Update:
		return "update " + c.Old.String() + " -> " + c.New.String()
	default:
		return "delete " + c.Old.String()
	}
}

// Plan is the changes that bring a name to its desired records.
type Plan struct {
	Name    string
	Changes []Change
}

// Empty reports whether nothing needs to change.
func (p Plan) Empty() bool { return len(p.Changes) == 0 }

func (p Plan) String() string {
	if p.Empty() {
		return p.Name + ": up to date"
	}
	lines := make([]string, len(p.Changes))
	for i, c := range p.Changes {
		lines[i] = c.String()
	}
	return strings.Join(lines, "\n")
}

// Provider is a DNS service a node's records live in.
type Provider interface {
	// Name is the provider's name: route53 or rfc2136.
	Name() string
	// Records returns the current A, AAAA and TXT RRsets of name.
	Records(ctx context.Context, name string) ([]RRset, error)
	// Apply makes the changes, all or nothing where the service allows.
	Apply(ctx context.Context, p Plan) error
	// Authoritative returns the servers ("host:port") that answer for the
	// zone authoritatively, to ask whether a change is visible yet.
	Authoritative(ctx context.Context) ([]string, error)
}

// Owner identifies who manages a name: a cluster (fleet) ID and the node.
type Owner struct {
	ID   string // the owner id; one per fleet, e.g. "bbb-prod"
	Node string
}

const heritage = "heritage=bbb-agent"

// TXT is the ownership record's text.
func (o Owner) TXT() string { return heritage + ",owner=" + o.ID + ",node=" + o.Node }

// parseOwner reads an ownership TXT; ok is false for any other text.
func parseOwner(txt string) (Owner, bool) {
	fields := strings.Split(txt, ",")
	if len(fields) == 0 || fields[0] != heritage {
		return Owner{}, false
	}
	var o Owner
	for _, f := range fields[1:] {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "owner":
			o.ID = v
		case "node":
			o.Node = v
		}
	}
	return o, o.ID != ""
}

// Desired is what a node's name should hold: A and/or AAAA for its
// addresses, and the ownership TXT beside them.
func Desired(fqdn string, v4, v6 netip.Addr, ttl uint32, owner Owner) ([]RRset, error) {
	name, err := Canonical(fqdn)
	if err != nil {
		return nil, err
	}
	if !v4.IsValid() && !v6.IsValid() {
		return nil, fmt.Errorf("%s: no address to publish", name)
	}
	if owner.ID == "" {
		return nil, errors.New("no DNS owner id: set --dns-owner-id (one per fleet)")
	}
	if ttl == 0 {
		ttl = DefaultTTL
	}
	var out []RRset
	if v4.IsValid() {
		if !v4.Is4() {
			return nil, fmt.Errorf("%s: %s is not an IPv4 address", name, v4)
		}
		out = append(out, RRset{Name: name, Type: TypeA, TTL: ttl, Values: []string{v4.String()}})
	}
	if v6.IsValid() {
		if !v6.Is6() || v6.Is4In6() {
			return nil, fmt.Errorf("%s: %s is not an IPv6 address", name, v6)
		}
		out = append(out, RRset{Name: name, Type: TypeAAAA, TTL: ttl, Values: []string{v6.String()}})
	}
	out = append(out, RRset{Name: name, Type: TypeTXT, TTL: ttl, Values: []string{owner.TXT()}})
	return out, nil
}

// Canonical lower-cases a name and gives it a trailing dot.
func Canonical(name string) (string, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	if n == "" || n == "." {
		return "", errors.New("empty DNS name")
	}
	if !strings.HasSuffix(n, ".") {
		n += "."
	}
	for _, label := range strings.Split(strings.TrimSuffix(n, "."), ".") {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("DNS name %q: empty or over-long label", name)
		}
	}
	return n, nil
}

// Errors of Compute: the name is not ours to change.
var (
	ErrForeignOwner = errors.New("the name is owned by another owner")
	ErrUnowned      = errors.New("the name has records without an ownership TXT")
)

// Compute works out the changes from the current RRsets of a name to the
// desired ones (nil desired: remove our records). A name whose ownership
// TXT names another owner, or that has A/AAAA records without any
// ownership TXT, is refused unless takeover is set.
func Compute(name string, current, desired []RRset, owner Owner, takeover bool) (Plan, error) {
	p := Plan{Name: name}
	cur := map[string]RRset{}
	for _, r := range current {
		if r.Type == TypeA || r.Type == TypeAAAA || r.Type == TypeTXT {
			cur[r.Type] = r
		}
	}
	if err := checkOwnership(name, cur, owner, takeover); err != nil {
		return p, err
	}
	want := map[string]RRset{}
	for _, r := range desired {
		want[r.Type] = r
	}
	for _, typ := range []string{TypeA, TypeAAAA, TypeTXT} {
		c, have := cur[typ]
		w, wanted := want[typ]
		if typ == TypeTXT && have && !wanted && !onlyOwnership(c) {
			// Other TXT values at the name (a verification token, SPF)
			// stay; remove only ours.
			rest := RRset{Name: c.Name, Type: TypeTXT, TTL: c.TTL}
			for _, v := range c.Values {
				if _, ours := parseOwner(v); !ours {
					rest.Values = append(rest.Values, v)
				}
			}
			if len(rest.Values) < len(c.Values) { // ours is among them
				old := c
				p.Changes = append(p.Changes, Change{Action: Update, Old: &old, New: &rest})
			}
			continue
		}
		if typ == TypeTXT && have && wanted {
			// Keep foreign TXT values beside ours.
			for _, v := range c.Values {
				if _, ours := parseOwner(v); !ours {
					w.Values = append(w.Values, v)
				}
			}
		}
		switch {
		case have && wanted && !c.equal(w):
			old, nw := c, w
			p.Changes = append(p.Changes, Change{Action: Update, Old: &old, New: &nw})
		case !have && wanted:
			nw := w
			p.Changes = append(p.Changes, Change{Action: Create, New: &nw})
		case have && !wanted:
			old := c
			p.Changes = append(p.Changes, Change{Action: Delete, Old: &old})
		}
	}
	return p, nil
}

func onlyOwnership(txt RRset) bool {
	for _, v := range txt.Values {
		if _, ok := parseOwner(v); !ok {
			return false
		}
	}
	return true
}

func checkOwnership(name string, cur map[string]RRset, owner Owner, takeover bool) error {
	if takeover {
		return nil
	}
	var owners []Owner
	if txt, ok := cur[TypeTXT]; ok {
		for _, v := range txt.Values {
			if o, ok := parseOwner(v); ok {
				owners = append(owners, o)
			}
		}
	}
	for _, o := range owners {
		if o.ID != owner.ID {
			return fmt.Errorf("%s: %w %q (node %q): not touching it; use another node name, or --dns-takeover if that owner is gone",
				name, ErrForeignOwner, o.ID, o.Node)
		}
	}
	_, hasA := cur[TypeA]
	_, hasAAAA := cur[TypeAAAA]
	if len(owners) == 0 && (hasA || hasAAAA) {
		return fmt.Errorf("%s: %w: someone else created them; not touching them (use another node name, or --dns-takeover)", name, ErrUnowned)
	}
	return nil
}
