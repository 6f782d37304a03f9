package dnsupdate_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"

	"github.com/bbb-agent/bbb-agent/dnsupdate"
	"github.com/bbb-agent/bbb-agent/internal/emulate/awsemu"
	r53emu "github.com/bbb-agent/bbb-agent/internal/emulate/route53"
)

// These tests run the route53 provider, through the real aws-sdk-go-v2
// client, against the Route53 emulation in internal/emulate/route53, and
// drive it through the Manager as the agent does. The emulation's Resolver
// stands in for the zone's name servers and answers only changes in sync.

var (
	r53Owner = dnsupdate.Owner{ID: "fleet-a", Node: "bbb-1"}
	r53V4    = netip.MustParseAddr("198.51.100.10")
	r53V4New = netip.MustParseAddr("198.51.100.11")
	r53V6    = netip.MustParseAddr("2001:db8::10")
)

const r53Name = "bbb-1.example.com."

// emulatedRoute53 starts the emulation on loopback and returns it with an
// AWS configuration that reaches it, retrying without waiting.
func emulatedRoute53(t *testing.T) (*r53emu.Server, aws.Config) {
	t.Helper()
	emu := r53emu.New()
	cfg, _ := awsemu.Serve(t, emu, "eu-central-1")
	return emu, cfg
}

func newRoute53(t *testing.T, cfg aws.Config, zoneID, zone string) *dnsupdate.Route53 {
	t.Helper()
	p, err := dnsupdate.NewRoute53(context.Background(), route53Config(cfg, zoneID, zone))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func route53Config(cfg aws.Config, zoneID, zone string) dnsupdate.Route53Config {
	return dnsupdate.Route53Config{
		AWS: cfg, HostedZoneID: zoneID, Zone: zone, Logger: slog.New(slog.DiscardHandler),
	}
}

func route53Manager(p dnsupdate.Provider, emu *r53emu.Server) *dnsupdate.Manager {
	return &dnsupdate.Manager{
		Provider: p, FQDN: "bbb-1.example.com", Owner: r53Owner,
		Resolve: emu.Resolver(), WaitTimeout: 5 * time.Second, WaitEvery: time.Millisecond,
	}
}

// batches returns the change batches the emulation accepted since call
// number from, one line per change.
func batches(emu *r53emu.Server, from int) [][]string {
	var out [][]string
	for _, c := range emu.Calls()[from:] {
		if c.Action != r53emu.ActionChangeResourceRecordSets || c.Error != "" {
			continue
		}
		var lines []string
		for _, ch := range c.Changes {
			lines = append(lines, fmt.Sprintf("%s %s %s %d %s", ch.Action, ch.RRset.Name, ch.RRset.Type, ch.RRset.TTL, strings.Join(ch.RRset.Values, " | ")))
		}
		out = append(out, lines)
	}
	return out
}

// count returns how many calls of action answered code ("" for success).
func count(emu *r53emu.Server, action, code string) int {
	n := 0
	for _, c := range emu.Calls() {
		if c.Action == action && c.Error == code {
			n++
		}
	}
	return n
}

func checkBatches(t *testing.T, emu *r53emu.Server, from int, want ...[]string) {
	t.Helper()
	got := batches(emu, from)
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("change batches:\n got %q\nwant %q", got, want)
	}
}

func checkZone(t *testing.T, emu *r53emu.Server, zoneID string, want ...string) {
	t.Helper()
	var got []string
	for _, rr := range emu.RRsets(zoneID) {
		if rr.Type == "NS" || rr.Type == "SOA" {
			continue
		}
		got = append(got, fmt.Sprintf("%s %s %d %s", rr.Name, rr.Type, rr.TTL, strings.Join(rr.Values, " | ")))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("zone holds:\n got %q\nwant %q", got, want)
	}
}

var ownTXT = `"heritage=bbb-agent,owner=fleet-a,node=bbb-1"`

func TestRoute53EnsureUpdateRemoveEmulated(t *testing.T) {
	emu, cfg := emulatedRoute53(t)
	zone := emu.AddZone("example.com", false)
	emu.AddZone("example.org", false)
	emu.SetPendingPolls(2)
	ctx := context.Background()
	p := newRoute53(t, cfg, "", "example.com")
	m := route53Manager(p, emu)

	// Create: A + ownership TXT in one batch, then GetChange until INSYNC.
	plan, err := m.Ensure(ctx, r53V4, netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Changes) != 2 {
		t.Fatalf("plan %v", plan)
	}
	checkBatches(t, emu, 0, []string{
		"CREATE " + r53Name + " A 60 198.51.100.10",
		"CREATE " + r53Name + " TXT 60 " + ownTXT,
	})
	var statuses []string
	for _, c := range emu.Calls() {
		if c.Action == r53emu.ActionGetChange {
			statuses = append(statuses, c.Status)
		}
	}
	if !slices.Equal(statuses, []string{"PENDING", "PENDING", "INSYNC"}) {
		t.Fatalf("GetChange answers %v, want two PENDING then INSYNC", statuses)
	}
	checkZone(t, emu, zone.ID, r53Name+" A 60 198.51.100.10", r53Name+" TXT 60 "+ownTXT)

	// Read back: TXT unquoted.
	got, err := p.Records(ctx, "BBB-1.example.com")
	if err != nil {
		t.Fatal(err)
	}
	want := []dnsupdate.RRset{
		{Name: r53Name, Type: "A", TTL: 60, Values: []string{"198.51.100.10"}},
		{Name: r53Name, Type: "TXT", TTL: 60, Values: []string{r53Owner.TXT()}},
	}
	if !slices.EqualFunc(got, want, func(a, b dnsupdate.RRset) bool { return a.String() == b.String() }) {
		t.Fatalf("records %v, want %v", got, want)
	}
	servers, err := p.Authoritative(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(servers) != 4 || servers[0] != zone.NameServers[0]+":53" {
		t.Fatalf("authoritative %v, want the delegation set %v on port 53", servers, zone.NameServers)
	}

	// A new address (and an IPv6 one): DELETE the old A with its exact
	// values and CREATE the new one, in one batch; the TXT stays.
	mark := len(emu.Calls())
	if _, err := m.Ensure(ctx, r53V4New, r53V6); err != nil {
		t.Fatal(err)
	}
	checkBatches(t, emu, mark, []string{
		"DELETE " + r53Name + " A 60 198.51.100.10",
		"CREATE " + r53Name + " A 60 198.51.100.11",
		"CREATE " + r53Name + " AAAA 60 2001:db8::10",
	})
	if err := m.Visible(ctx, r53V4New, r53V6); err != nil {
		t.Fatal(err)
	}

	// Remove: DELETE each RRset with its exact current values.
	mark = len(emu.Calls())
	if _, err := m.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	checkBatches(t, emu, mark, []string{
		"DELETE " + r53Name + " A 60 198.51.100.11",
		"DELETE " + r53Name + " AAAA 60 2001:db8::10",
		"DELETE " + r53Name + " TXT 60 " + ownTXT,
	})
	checkZone(t, emu, zone.ID)
	// Remove does not wait for INSYNC; the name servers answer the removal
	// once the change has propagated.
	if err := m.WaitVisible(ctx, netip.Addr{}, netip.Addr{}); err != nil {
		t.Fatalf("after Remove: %v", err)
	}
}

// TestRoute53RestartEmulated: a new provider (an agent restarted) finds the
// records, across pages and among neighbouring names, and plans nothing.
func TestRoute53RestartEmulated(t *testing.T) {
	emu, cfg := emulatedRoute53(t)
	zone := emu.AddZone("example.com", false)
	for _, name := range []string{"bbb-0.example.com", "a.bbb-1.example.com", "bbb-10.example.com", "bbb-1.example.net.example.com"} {
		if err := emu.Set(zone.ID, r53emu.RRset{Name: name, Type: "A", TTL: 60, Values: []string{"192.0.2.1"}}); err != nil {
			t.Fatal(err)
		}
	}
	emu.SetPageLimit(1)
	ctx := context.Background()
	if _, err := route53Manager(newRoute53(t, cfg, "", "example.com"), emu).Ensure(ctx, r53V4, r53V6); err != nil {
		t.Fatal(err)
	}

	mark := len(emu.Calls())
	plan, err := route53Manager(newRoute53(t, cfg, "", "example.com"), emu).Ensure(ctx, r53V4, r53V6)
	if err != nil {
		t.Fatal(err)
	}
	if !plan.Empty() {
		t.Fatalf("after a restart the plan is %v, want nothing", plan)
	}
	checkBatches(t, emu, mark)
	// One page each for A, AAAA and TXT, and one whose a.bbb-1 ends the name.
	lists := 0
	for _, c := range emu.Calls()[mark:] {
		if c.Action == r53emu.ActionListResourceRecordSets {
			lists++
		}
	}
	if lists != 4 {
		t.Fatalf("%d ListResourceRecordSets calls after the restart, want 4 one-record pages", lists)
	}
}

func TestRoute53FindZoneEmulated(t *testing.T) {
	emu, cfg := emulatedRoute53(t)
	com := emu.AddZone("example.com", false)
	net := emu.AddZone("example.net", false)
	pub := emu.AddZone("example.org", false)
	priv := emu.AddZone("example.org", true)
	ctx := context.Background()

	tests := []struct {
		name         string
		zoneID, zone string
		wantID       string
		wantErr      error
		wantText     []string
	}{
		{name: "by name", zone: "Example.COM", wantID: com.ID},
		{name: "by id", zoneID: "/hostedzone/" + net.ID, wantID: net.ID},
		{name: "by id and a name inside", zoneID: com.ID, zone: "nodes.example.com", wantID: com.ID},
		{name: "no zone of that name", zone: "example.info", wantErr: dnsupdate.ErrNoHostedZone,
			wantText: []string{"example.info.", "--dns-hosted-zone-id"}},
		{name: "public and private", zone: "example.org", wantErr: dnsupdate.ErrAmbiguousZone,
			wantText: []string{pub.ID + " (public)", priv.ID + " (private)", "give --dns-hosted-zone-id"}},
		{name: "the private one by id", zoneID: priv.ID, zone: "example.org", wantID: priv.ID},
		{name: "no such id", zoneID: "ZNOSUCHZONE", wantErr: dnsupdate.ErrNoHostedZone,
			wantText: []string{"No hosted zone found with ID: ZNOSUCHZONE"}},
		{name: "id and name disagree", zoneID: net.ID, zone: "example.com",
			wantText: []string{"example.com. is not inside hosted zone example.net."}},
		{name: "neither", wantText: []string{"--dns-zone", "--dns-hosted-zone-id"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := dnsupdate.NewRoute53(ctx, route53Config(cfg, tt.zoneID, tt.zone))
			if tt.wantID != "" {
				if err != nil {
					t.Fatal(err)
				}
				if id, _ := p.HostedZone(); id != tt.wantID {
					t.Fatalf("hosted zone %s, want %s", id, tt.wantID)
				}
				return
			}
			if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			t.Log(err)
			for _, s := range tt.wantText {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}

	// A private zone has no name servers to ask from outside; INSYNC is the
	// proof there.
	p := newRoute53(t, cfg, priv.ID, "")
	if servers, err := p.Authoritative(ctx); err != nil || len(servers) != 0 {
		t.Fatalf("private zone's servers: %v, %v", servers, err)
	}
	// Names outside the zone are refused before any call.
	p = newRoute53(t, cfg, com.ID, "nodes.example.com")
	if _, err := p.Records(ctx, "bbb-1.example.com"); err == nil || !strings.Contains(err.Error(), "not inside zone nodes.example.com.") {
		t.Fatalf("a name outside the zone: %v", err)
	}
}

func TestRoute53RetriesThrottlingEmulated(t *testing.T) {
	emu, cfg := emulatedRoute53(t)
	zone := emu.AddZone("example.com", false)
	// Four answers in a row to one call: more than the SDK's default of
	// three attempts, which the provider raises.
	emu.Fail(r53emu.ActionListHostedZonesByName, r53emu.CodeThrottling, 1)
	emu.Fail(r53emu.ActionListResourceRecordSets, r53emu.CodeThrottling, 2)
	emu.Fail(r53emu.ActionChangeResourceRecordSets, r53emu.CodeThrottling, 4)
	emu.Fail(r53emu.ActionGetChange, r53emu.CodeThrottling, 1)
	m := route53Manager(newRoute53(t, cfg, "", "example.com"), emu)
	if _, err := m.Ensure(context.Background(), r53V4, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		action          string
		throttled, okay int
	}{
		{r53emu.ActionListHostedZonesByName, 1, 1},
		{r53emu.ActionListResourceRecordSets, 2, 1},
		{r53emu.ActionChangeResourceRecordSets, 4, 1},
	} {
		if got, ok := count(emu, c.action, r53emu.CodeThrottling), count(emu, c.action, ""); got != c.throttled || ok != c.okay {
			t.Errorf("%s: %d throttled and %d answered, want %d and %d", c.action, got, ok, c.throttled, c.okay)
		}
	}
	checkZone(t, emu, zone.ID, r53Name+" A 60 198.51.100.10", r53Name+" TXT 60 "+ownTXT)
}

func TestRoute53RetriesPriorRequestNotCompleteEmulated(t *testing.T) {
	for _, tt := range []struct {
		name    string
		retryer func() aws.Retryer
	}{
		{"SDK retryer", nil},
		// A configuration whose retryer retries nothing by itself: the
		// provider still retries PriorRequestNotComplete.
		{"retryer retrying nothing", func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.Backoff = awsemu.NoBackoff
				o.Retryables = []retry.IsErrorRetryable{retry.NoRetryCanceledError{}}
			})
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			emu, cfg := emulatedRoute53(t)
			if tt.retryer != nil {
				cfg.Retryer = tt.retryer
			}
			zone := emu.AddZone("example.com", false)
			m := route53Manager(newRoute53(t, cfg, zone.ID, ""), emu)
			emu.Fail(r53emu.ActionChangeResourceRecordSets, r53emu.CodePriorRequestNotComplete, 4)
			if _, err := m.Ensure(context.Background(), r53V4, netip.Addr{}); err != nil {
				t.Fatal(err)
			}
			if n, ok := count(emu, r53emu.ActionChangeResourceRecordSets, r53emu.CodePriorRequestNotComplete),
				count(emu, r53emu.ActionChangeResourceRecordSets, ""); n != 4 || ok != 1 {
				t.Fatalf("%d PriorRequestNotComplete and %d accepted batches, want 4 and 1", n, ok)
			}
			checkZone(t, emu, zone.ID, r53Name+" A 60 198.51.100.10", r53Name+" TXT 60 "+ownTXT)
		})
	}
}

// racing is a provider under which someone changes the zone between the
// Manager's read and its Apply.
type racing struct {
	dnsupdate.Provider
	race func()
}

func (r racing) Apply(ctx context.Context, p dnsupdate.Plan) error {
	r.race()
	return r.Provider.Apply(ctx, p)
}

func TestRoute53RejectedBatchEmulated(t *testing.T) {
	emu, cfg := emulatedRoute53(t)
	zone := emu.AddZone("example.com", false)
	ctx := context.Background()
	p := newRoute53(t, cfg, zone.ID, "example.com")
	if _, err := route53Manager(p, emu).Ensure(ctx, r53V4, netip.Addr{}); err != nil {
		t.Fatal(err)
	}

	// Another writer sets the A record after the Manager read it: the
	// DELETE of the old value no longer matches, Route53 refuses the whole
	// batch, and the other writer's value stays.
	m := route53Manager(racing{p, func() {
		if err := emu.Set(zone.ID, r53emu.RRset{Name: r53Name, Type: "A", TTL: 60, Values: []string{"203.0.113.7"}}); err != nil {
			t.Fatal(err)
		}
	}}, emu)
	_, err := m.Ensure(ctx, r53V4New, r53V6)
	if !errors.Is(err, dnsupdate.ErrRoute53Rejected) {
		t.Fatalf("err = %v, want ErrRoute53Rejected", err)
	}
	for _, s := range []string{
		"nothing was changed",
		"Tried to delete resource record set [name='bbb-1.example.com.', type='A'] but the values provided do not match the current values",
		"hosted zone example.com. (" + zone.ID + ")",
		"request id ",
	} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
	t.Log(err)
	checkZone(t, emu, zone.ID, r53Name+" A 60 203.0.113.7", r53Name+" TXT 60 "+ownTXT)
	if n := count(emu, r53emu.ActionChangeResourceRecordSets, r53emu.CodeInvalidChangeBatch); n != 1 {
		t.Fatalf("%d rejected batches, want 1 (no retry of a rejection)", n)
	}
}

func TestRoute53ForeignOwnerEmulated(t *testing.T) {
	emu, cfg := emulatedRoute53(t)
	zone := emu.AddZone("example.com", false)
	theirs := []r53emu.RRset{
		{Name: r53Name, Type: "A", TTL: 300, Values: []string{"192.0.2.99"}},
		{Name: r53Name, Type: "TXT", TTL: 300, Values: []string{`"heritage=bbb-agent,owner=fleet-b,node=bbb-1"`}},
	}
	for _, rr := range theirs {
		if err := emu.Set(zone.ID, rr); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	m := route53Manager(newRoute53(t, cfg, zone.ID, ""), emu)
	if _, err := m.Ensure(ctx, r53V4, netip.Addr{}); !errors.Is(err, dnsupdate.ErrForeignOwner) {
		t.Fatalf("Ensure on fleet-b's name: %v", err)
	}
	if _, err := m.Remove(ctx); !errors.Is(err, dnsupdate.ErrForeignOwner) {
		t.Fatalf("Remove on fleet-b's name: %v", err)
	}
	checkBatches(t, emu, 0)
	checkZone(t, emu, zone.ID, r53Name+" A 300 192.0.2.99", r53Name+` TXT 300 "heritage=bbb-agent,owner=fleet-b,node=bbb-1"`)

	// Takeover replaces them, still by DELETE of the exact values + CREATE.
	m.Takeover = true
	if _, err := m.Ensure(ctx, r53V4, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	checkBatches(t, emu, 0, []string{
		"DELETE " + r53Name + " A 300 192.0.2.99",
		"CREATE " + r53Name + " A 60 198.51.100.10",
		"DELETE " + r53Name + ` TXT 300 "heritage=bbb-agent,owner=fleet-b,node=bbb-1"`,
		"CREATE " + r53Name + " TXT 60 " + ownTXT,
	})
}

func TestRoute53RefusesAliasEmulated(t *testing.T) {
	emu, cfg := emulatedRoute53(t)
	zone := emu.AddZone("example.com", false)
	if err := emu.Set(zone.ID, r53emu.RRset{Name: r53Name, Type: "A", AliasDNSName: "d111111abcdef8.cloudfront.net."}); err != nil {
		t.Fatal(err)
	}
	m := route53Manager(newRoute53(t, cfg, zone.ID, ""), emu)
	_, err := m.Ensure(context.Background(), r53V4, netip.Addr{})
	if err == nil || !strings.Contains(err.Error(), "alias or routing-policy A record") {
		t.Fatalf("Ensure over an alias: %v", err)
	}
	checkBatches(t, emu, 0)
}

// TestRoute53TXTWireFormEmulated: TXT values go quoted, split into 255-byte
// character-strings and escaped; other tools' TXT values beside ours keep
// their exact wire form when ours is removed.
func TestRoute53TXTWireFormEmulated(t *testing.T) {
	emu, cfg := emulatedRoute53(t)
	zone := emu.AddZone("example.com", false)
	ctx := context.Background()
	p := newRoute53(t, cfg, zone.ID, "")

	long := dnsupdate.Owner{ID: `fleet-"a"\` + strings.Repeat("x", 300), Node: "bbb-1"}
	m := route53Manager(p, emu)
	m.Owner = long
	if _, err := m.Ensure(ctx, r53V4, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	rest := long.TXT()[255:]
	wire := `"heritage=bbb-agent,owner=fleet-\"a\"\\` + strings.Repeat("x", 255-len(`heritage=bbb-agent,owner=fleet-"a"\`)) + `" "` + rest + `"`
	checkZone(t, emu, zone.ID, r53Name+" A 60 198.51.100.10", r53Name+" TXT 60 "+wire)
	got, err := p.Records(ctx, r53Name)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1].Values[0] != long.TXT() {
		t.Fatalf("records %v, want the TXT %q", got, long.TXT())
	}
	if txt, _ := emu.Resolver()(ctx, zone.NameServers[0]+":53", r53Name, 16); !slices.Equal(txt, []string{long.TXT()}) {
		t.Fatalf("name servers answer TXT %q", txt)
	}

	// Another tool's TXT value beside ours, in its own split and spacing.
	spf := `"v=spf1 include:_spf.example.com"   "-all"`
	if err := emu.Set(zone.ID, r53emu.RRset{Name: r53Name, Type: "TXT", TTL: 60, Values: []string{wire, spf}}); err != nil {
		t.Fatal(err)
	}
	got, err = p.Records(ctx, r53Name)
	if err != nil {
		t.Fatal(err)
	}
	if vals := got[1].Values; !slices.Contains(vals, "v=spf1 include:_spf.example.com-all") {
		t.Fatalf("TXT values %q", vals)
	}
	mark := len(emu.Calls())
	if _, err := m.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	checkBatches(t, emu, mark, []string{
		"DELETE " + r53Name + " A 60 198.51.100.10",
		"DELETE " + r53Name + " TXT 60 " + wire + " | " + spf,
		"CREATE " + r53Name + " TXT 60 " + spf,
	})
	checkZone(t, emu, zone.ID, r53Name+" TXT 60 "+spf)
}

// TestRoute53ApplyDoesNotWaitEmulated: Apply returns once Route53 accepted
// the change, however long it stays PENDING; Visible says the name does not
// answer yet (ErrNotVisible) after one GetChange, and the bounded wait of
// Ensure ends with that error.
func TestRoute53ApplyDoesNotWaitEmulated(t *testing.T) {
	emu, cfg := emulatedRoute53(t)
	zone := emu.AddZone("example.com", false)
	emu.SetPendingPolls(r53emu.PendingForever)
	p := newRoute53(t, cfg, zone.ID, "")
	m := route53Manager(p, emu)
	ctx := context.Background()
	if _, err := m.Apply(ctx, r53V4, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	if n := count(emu, r53emu.ActionGetChange, ""); n != 0 {
		t.Fatalf("Apply asked GetChange %d times: it must not wait for INSYNC", n)
	}
	checkZone(t, emu, zone.ID, r53Name+" A 60 198.51.100.10", r53Name+" TXT 60 "+ownTXT)
	err := m.Visible(ctx, r53V4, netip.Addr{})
	if !errors.Is(err, dnsupdate.ErrNotVisible) || !strings.Contains(err.Error(), "still PENDING") {
		t.Fatalf("Visible while PENDING: %v", err)
	}
	if n := count(emu, r53emu.ActionGetChange, ""); n != 1 {
		t.Fatalf("Visible asked GetChange %d times, want once", n)
	}
	m.WaitTimeout = 50 * time.Millisecond
	_, err = m.Ensure(ctx, r53V4, netip.Addr{})
	if !errors.Is(err, dnsupdate.ErrNotVisible) || !strings.Contains(err.Error(), "still PENDING") {
		t.Fatalf("Ensure while PENDING: %v", err)
	}
}
