package dnsupdate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"
)

// Route53 defaults.
const (
	// route53Attempts is how often one API call is tried when the client's
	// retryer keeps the SDK's default of 3: Route53 allows five requests a
	// second per account, and a fleet booting at once shares that.
	route53Attempts = 10
)

// Errors of the route53 provider.
var (
	// ErrNoHostedZone: the hosted zone (by name or id) is not in the
	// credentials' account.
	ErrNoHostedZone = errors.New("no such Route53 hosted zone")
	// ErrAmbiguousZone: several hosted zones (public and private, say)
	// have the zone's name.
	ErrAmbiguousZone = errors.New("ambiguous Route53 hosted zone name")
	// ErrRoute53Rejected: Route53 refused a change batch (InvalidChangeBatch);
	// it applies a batch all or nothing, so nothing changed.
	ErrRoute53Rejected = errors.New("route53 rejected the change batch")
)

// Route53Config configures the route53 provider.
type Route53Config struct {
	// AWS is the SDK configuration: credentials, region, and for tests
	// BaseEndpoint and Retryer.
	AWS aws.Config
	// HostedZoneID picks the hosted zone (--dns-hosted-zone-id); without it
	// the zone named Zone is looked up and must be the only one so named.
	HostedZoneID string
	// Zone is the zone the node's names live in (--dns-zone): the hosted
	// zone's name or a name inside it. Names outside it are refused.
	Zone string
	// Logger gets one line per applied change (default slog.Default()).
	Logger *slog.Logger
}

// Route53 is the provider for a zone hosted by Amazon Route53, through the
// aws-sdk-go-v2 route53 client.
type Route53 struct {
	client   *route53.Client
	zoneID   string   // bare, without "/hostedzone/"
	zoneName string   // the hosted zone's name, canonical
	zone     string   // the names' zone, canonical: zoneName or inside it
	servers  []string // the delegation set, "host:53"
	log      *slog.Logger

	mu sync.Mutex
	// wire remembers, per name, each value Records read as Route53 holds
	// it ("type value" → wire form), so that a DELETE repeats the current
	// values byte for byte and other tools' TXT values keep their form.
	wire map[string]map[string]string
	// pending is the last change Route53 accepted and has not yet been seen
	// INSYNC ("" when none): changes propagate in order, so the last one in
	// sync means all are.
	pending string
}

// NewRoute53 returns the provider for the hosted zone cfg names, reading
// the zone (and finding it by name without HostedZoneID) from Route53.
func NewRoute53(ctx context.Context, cfg Route53Config) (*Route53, error) {
	var zone string
	if cfg.Zone != "" {
		var err error
		if zone, err = Canonical(cfg.Zone); err != nil {
			return nil, err
		}
	}
	id := strings.TrimPrefix(strings.TrimSpace(cfg.HostedZoneID), "/hostedzone/")
	if id == "" && zone == "" {
		return nil, errors.New("route53 needs the zone's name (--dns-zone) or --dns-hosted-zone-id")
	}
	r := &Route53{
		client: route53.NewFromConfig(cfg.AWS, route53Options),
		log:    cfg.Logger,
		wire:   map[string]map[string]string{},
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	if id == "" {
		var err error
		if id, err = r.findZone(ctx, zone); err != nil {
			return nil, err
		}
	}
	out, err := r.client.GetHostedZone(ctx, &route53.GetHostedZoneInput{Id: aws.String(id)})
	var missing *r53types.NoSuchHostedZone
	if errors.As(err, &missing) {
		return nil, fmt.Errorf("%w: %s (check --dns-hosted-zone-id and the credentials' account)", ErrNoHostedZone, missing.ErrorMessage())
	}
	if err != nil {
		return nil, fmt.Errorf("reading hosted zone %s: %w", id, err)
	}
	r.zoneID = id
	if r.zoneName, err = Canonical(aws.ToString(out.HostedZone.Name)); err != nil {
		return nil, fmt.Errorf("hosted zone %s: %w", id, err)
	}
	switch {
	case zone == "":
		zone = r.zoneName
	case !nameInZone(zone, r.zoneName):
		return nil, fmt.Errorf("zone %s is not inside hosted zone %s (%s): fix --dns-zone or --dns-hosted-zone-id", zone, r.zoneName, id)
	}
	r.zone = zone
	private := out.HostedZone.Config != nil && out.HostedZone.Config.PrivateZone
	if out.DelegationSet != nil && !private {
		for _, ns := range out.DelegationSet.NameServers {
			r.servers = append(r.servers, net.JoinHostPort(strings.TrimSuffix(ns, "."), "53"))
		}
	}
	return r, nil
}

// route53Options makes the client retry Throttling and
// PriorRequestNotComplete (the SDK's standard retryer counts both as
// throttling today; adding them keeps that true for any Retryer the
// configuration brings) and gives it more attempts than the SDK's 3. Route53
// is global: without a region the client signs for us-east-1.
func route53Options(o *route53.Options) {
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	if o.RetryMaxAttempts == 0 && o.Retryer.MaxAttempts() == retry.DefaultMaxAttempts {
		o.RetryMaxAttempts = route53Attempts
	}
	o.Retryer = retry.AddWithErrorCodes(o.Retryer, "Throttling", "PriorRequestNotComplete")
}

// findZone returns the id of the one hosted zone named zone.
func (r *Route53) findZone(ctx context.Context, zone string) (string, error) {
	var found []r53types.HostedZone
	in := &route53.ListHostedZonesByNameInput{DNSName: aws.String(zone)}
	for {
		out, err := r.client.ListHostedZonesByName(ctx, in)
		if err != nil {
			return "", fmt.Errorf("looking up the hosted zone named %s: %w", zone, err)
		}
		past := false
		for _, hz := range out.HostedZones {
			// Zones come sorted by name from DNSName on: the first other
			// name ends the ones named zone.
			if name, _ := Canonical(aws.ToString(hz.Name)); name != zone {
				past = true
				break
			}
			found = append(found, hz)
		}
		if past || !out.IsTruncated {
			break
		}
		in.DNSName, in.HostedZoneId = out.NextDNSName, out.NextHostedZoneId
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("%w named %s in the credentials' account: create the zone or give --dns-hosted-zone-id", ErrNoHostedZone, zone)
	case 1:
		return bareZoneID(aws.ToString(found[0].Id)), nil
	}
	var ids []string
	for _, hz := range found {
		kind := "public"
		if hz.Config != nil && hz.Config.PrivateZone {
			kind = "private"
		}
		ids = append(ids, bareZoneID(aws.ToString(hz.Id))+" ("+kind+")")
	}
	return "", fmt.Errorf("%w: %d zones are named %s: %s; give --dns-hosted-zone-id to pick one",
		ErrAmbiguousZone, len(found), zone, strings.Join(ids, ", "))
}

func bareZoneID(id string) string { return strings.TrimPrefix(id, "/hostedzone/") }

// nameInZone reports whether name is zone or below it.
func nameInZone(name, zone string) bool {
	return name == zone || strings.HasSuffix(name, "."+zone)
}

// Name is "route53".
func (*Route53) Name() string { return "route53" }

// HostedZone returns the hosted zone's id (bare, "Z...") and name.
func (r *Route53) HostedZone() (id, name string) { return r.zoneID, r.zoneName }

// Records returns the A, AAAA and TXT RRsets of name: TXT values unquoted
// and their character-strings joined, addresses in canonical form. A name
// with alias or routing-policy (weighted, latency, ...) A/AAAA/TXT records
// is refused: bbb-agent does not manage those.
func (r *Route53) Records(ctx context.Context, name string) ([]RRset, error) {
	name, err := r.checkName(name)
	if err != nil {
		return nil, err
	}
	sets := map[string]*RRset{}
	wire := map[string]string{}
	in := &route53.ListResourceRecordSetsInput{
		HostedZoneId:    aws.String(r.zoneID),
		StartRecordName: aws.String(name),
		MaxItems:        aws.Int32(100),
	}
	for {
		out, err := r.client.ListResourceRecordSets(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("listing %s in hosted zone %s: %w", name, r.zoneID, err)
		}
		past := false
		for _, rrs := range out.ResourceRecordSets {
			// The list is sorted by name from name on: the first other
			// name (a longer one below it, or the next) ends ours.
			if n, _ := Canonical(aws.ToString(rrs.Name)); n != name {
				past = true
				break
			}
			typ := string(rrs.Type)
			if typ != TypeA && typ != TypeAAAA && typ != TypeTXT {
				continue
			}
			if rrs.AliasTarget != nil || rrs.SetIdentifier != nil {
				return nil, fmt.Errorf("%s has an alias or routing-policy %s record in hosted zone %s, which bbb-agent does not manage: remove it or use another node name", name, typ, r.zoneID)
			}
			set := RRset{Name: name, Type: typ, TTL: uint32(aws.ToInt64(rrs.TTL))}
			for _, rr := range rrs.ResourceRecords {
				raw := aws.ToString(rr.Value)
				v := fromWire(typ, raw)
				set.Values = append(set.Values, v)
				wire[typ+" "+v] = raw
			}
			sets[typ] = &set
		}
		if past || !out.IsTruncated {
			break
		}
		in.StartRecordName, in.StartRecordType, in.StartRecordIdentifier = out.NextRecordName, out.NextRecordType, out.NextRecordIdentifier
	}
	r.mu.Lock()
	r.wire[name] = wire
	r.mu.Unlock()
	var result []RRset
	for _, typ := range []string{TypeA, TypeAAAA, TypeTXT} {
		if s, ok := sets[typ]; ok {
			result = append(result, *s)
		}
	}
	return result, nil
}

func (r *Route53) checkName(name string) (string, error) {
	n, err := Canonical(name)
	if err != nil {
		return "", err
	}
	if !nameInZone(n, r.zone) {
		return "", fmt.Errorf("%s is not inside zone %s (hosted zone %s)", n, r.zone, r.zoneID)
	}
	return n, nil
}

// Apply sends the plan as ONE ChangeResourceRecordSets batch, which Route53
// applies all or nothing, and returns once Route53 has accepted it.
//
// Apply does not wait for the change to be INSYNC (Route53 says changes
// usually propagate within 60 seconds, and a wait inside Apply once held the
// agent's loop for minutes). Whoever needs the name to answer waits outside,
// one short ask at a time: Manager.Visible asks Propagated (one GetChange)
// and then the delegation set itself, and the agent asks Visible once a
// tick until it holds or its DNS wait is over.
//
// An Update becomes DELETE of the exact current values + CREATE of the new
// ones, never UPSERT, takeover included. Route53 refuses a DELETE whose
// values are not the current ones, so if anyone changed the name after
// Records read it the whole batch fails and nothing is clobbered; the next
// Ensure reads again and decides again (ownership included). UPSERT would
// overwrite whatever is there.
func (r *Route53) Apply(ctx context.Context, p Plan) error {
	if p.Empty() {
		return nil
	}
	batch, err := r.batch(p)
	if err != nil {
		return err
	}
	out, err := r.client.ChangeResourceRecordSets(ctx, &route53.ChangeResourceRecordSetsInput{
		HostedZoneId: aws.String(r.zoneID),
		ChangeBatch:  &r53types.ChangeBatch{Comment: aws.String("bbb-agent: " + p.Name), Changes: batch},
	})
	if err != nil {
		return r.changeError(err)
	}
	if out.ChangeInfo == nil {
		return fmt.Errorf("ChangeResourceRecordSets in hosted zone %s answered no change info", r.zoneID)
	}
	id := bareChangeID(aws.ToString(out.ChangeInfo.Id))
	r.mu.Lock()
	if out.ChangeInfo.Status == r53types.ChangeStatusInsync {
		r.pending = ""
	} else {
		r.pending = id
	}
	r.mu.Unlock()
	r.log.Info("route53 change accepted", "zone", r.zoneName, "hosted_zone_id", r.zoneID, "change", id, "status", out.ChangeInfo.Status)
	return nil
}

// batch turns a plan into Route53 changes.
func (r *Route53) batch(p Plan) ([]r53types.Change, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []r53types.Change
	add := func(action r53types.ChangeAction, s *RRset) error {
		if s == nil || len(s.Values) == 0 {
			return fmt.Errorf("%s: a %s change without values", p.Name, action)
		}
		name, err := r.checkName(s.Name)
		if err != nil {
			return err
		}
		rrs := &r53types.ResourceRecordSet{Name: aws.String(name), Type: r53types.RRType(s.Type), TTL: aws.Int64(int64(s.TTL))}
		wire := r.wire[name]
		for _, v := range s.Values {
			raw, ok := wire[s.Type+" "+v]
			if !ok {
				raw = toWire(s.Type, v)
			}
			rrs.ResourceRecords = append(rrs.ResourceRecords, r53types.ResourceRecord{Value: aws.String(raw)})
		}
		out = append(out, r53types.Change{Action: action, ResourceRecordSet: rrs})
		return nil
	}
	for _, c := range p.Changes {
		var err error
		switch c.Action {
		case Create:
			err = add(r53types.ChangeActionCreate, c.New)
		case Update:
			if err = add(r53types.ChangeActionDelete, c.Old); err == nil && c.New != nil && len(c.New.Values) > 0 {
				err = add(r53types.ChangeActionCreate, c.New)
			}
		case Delete:
			err = add(r53types.ChangeActionDelete, c.Old)
		default:
			err = fmt.Errorf("%s: unknown change %q", p.Name, c.Action)
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// changeError explains a failed ChangeResourceRecordSets.
func (r *Route53) changeError(err error) error {
	var rejected *r53types.InvalidChangeBatch
	if !errors.As(err, &rejected) {
		return fmt.Errorf("ChangeResourceRecordSets in hosted zone %s (%s): %w", r.zoneName, r.zoneID, err)
	}
	// Route53 answers either an ErrorResponse whose Message lists the
	// problems ("[Tried to ..., Tried to ...]") or an InvalidChangeBatch
	// document with one Message each; the SDK has them in Message or
	// Messages.
	msg := strings.Join(rejected.Messages, "; ")
	if msg == "" {
		msg = rejected.ErrorMessage()
	}
	reqID := ""
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.ServiceRequestID() != "" {
		reqID = " (request id " + re.ServiceRequestID() + ")"
	}
	return fmt.Errorf("%w for hosted zone %s (%s); nothing was changed, a batch applies all or nothing: Route53 says %q%s",
		ErrRoute53Rejected, r.zoneName, r.zoneID, msg, reqID)
}

// Propagated says whether the last change Apply sent is INSYNC, that is
// every Route53 name server answers it; it asks GetChange once and never
// waits. A change still PENDING is ErrNotVisible.
func (r *Route53) Propagated(ctx context.Context) error {
	r.mu.Lock()
	id := r.pending
	r.mu.Unlock()
	if id == "" {
		return nil
	}
	out, err := r.client.GetChange(ctx, &route53.GetChangeInput{Id: aws.String(id)})
	if err != nil {
		return fmt.Errorf("route53 accepted change %s in hosted zone %s; asking whether it is in sync: %w", id, r.zoneID, err)
	}
	if status := out.ChangeInfo.Status; status != r53types.ChangeStatusInsync {
		return fmt.Errorf("%w: route53 change %s in hosted zone %s is still %s", ErrNotVisible, id, r.zoneID, status)
	}
	r.mu.Lock()
	if r.pending == id {
		r.pending = ""
	}
	r.mu.Unlock()
	r.log.Info("route53 change in sync", "zone", r.zoneName, "hosted_zone_id", r.zoneID, "change", id)
	return nil
}

func bareChangeID(id string) string { return strings.TrimPrefix(id, "/change/") }

// Authoritative returns the hosted zone's name servers (its delegation
// set) as "host:53". A private zone has none that answer from outside its
// VPCs: it returns none, and INSYNC (Propagated) is the proof.
func (r *Route53) Authoritative(context.Context) ([]string, error) {
	return slices.Clone(r.servers), nil
}

// toWire writes a value as Route53 wants it: TXT in double quotes, split
// into character-strings of at most 255 bytes, with " and \ escaped and
// bytes outside printable ASCII as \ddd.
func toWire(typ, v string) string {
	if typ != TypeTXT {
		return v
	}
	var b strings.Builder
	for first := true; first || v != ""; first = false {
		chunk := v[:min(255, len(v))]
		v = v[len(chunk):]
		if !first {
			b.WriteByte(' ')
		}
		b.WriteByte('"')
		for i := range len(chunk) {
			switch c := chunk[i]; {
			case c == '"' || c == '\\':
				b.WriteByte('\\')
				b.WriteByte(c)
			case c < 0x20 || c >= 0x7f:
				fmt.Fprintf(&b, "\\%03o", c)
			default:
				b.WriteByte(c)
			}
		}
		b.WriteByte('"')
	}
	return b.String()
}

// fromWire reads a value as Route53 shows it: addresses in canonical form,
// TXT character-strings unquoted and joined. A value it cannot read is
// returned as it is.
func fromWire(typ, raw string) string {
	switch typ {
	case TypeA, TypeAAAA:
		if a, err := netip.ParseAddr(raw); err == nil {
			return a.String()
		}
	case TypeTXT:
		if text, ok := unquoteTXT(raw); ok {
			return text
		}
	}
	return raw
}

// unquoteTXT joins the quoted character-strings of a TXT value.
func unquoteTXT(raw string) (string, bool) {
	s := strings.TrimSpace(raw)
	var b strings.Builder
	parsed := false
	for s != "" {
		if s[0] != '"' {
			return "", false
		}
		i, closed := 1, false
		for i < len(s) && !closed {
			switch c := s[i]; {
			case c == '"':
				closed = true
			case c == '\\' && i+3 < len(s) && isOctal3(s[i+1:i+4]):
				n, _ := strconv.ParseUint(s[i+1:i+4], 8, 8)
				b.WriteByte(byte(n))
				i += 3
			case c == '\\' && i+1 < len(s):
				b.WriteByte(s[i+1])
				i++
			default:
				b.WriteByte(c)
			}
			i++
		}
		if !closed {
			return "", false
		}
		parsed = true
		s = strings.TrimLeft(s[i:], " \t")
	}
	return b.String(), parsed
}

// isOctal3 reports whether s is a \ddd escape's three digits (a byte).
func isOctal3(s string) bool {
	n, err := strconv.ParseUint(s, 8, 16)
	return err == nil && n < 256
}
