package route53

import (
	"context"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sdk "github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/aws/smithy-go"
	"github.com/miekg/dns"

	"github.com/bbb-agent/bbb-agent/internal/emulate/awsemu"
)

// sdkClient is the real aws-sdk-go-v2 Route53 client pointed at the
// emulation, retrying without waiting.
func sdkClient(t *testing.T, s *Server) (*sdk.Client, string) {
	t.Helper()
	cfg, url := awsemu.Serve(t, s, "us-east-1")
	return sdk.NewFromConfig(cfg), url
}

func rrs(action types.ChangeAction, name string, typ types.RRType, ttl int64, values ...string) types.Change {
	set := &types.ResourceRecordSet{Name: aws.String(name), Type: typ, TTL: aws.Int64(ttl)}
	for _, v := range values {
		set.ResourceRecords = append(set.ResourceRecords, types.ResourceRecord{Value: aws.String(v)})
	}
	return types.Change{Action: action, ResourceRecordSet: set}
}

func submit(t *testing.T, c *sdk.Client, zoneID string, changes ...types.Change) (*types.ChangeInfo, error) {
	t.Helper()
	out, err := c.ChangeResourceRecordSets(context.Background(), &sdk.ChangeResourceRecordSetsInput{
		HostedZoneId: aws.String("/hostedzone/" + zoneID), // the SDK strips the prefix
		ChangeBatch:  &types.ChangeBatch{Comment: aws.String("test"), Changes: changes},
	})
	if err != nil {
		return nil, err
	}
	return out.ChangeInfo, nil
}

func rejection(t *testing.T, err error) string {
	t.Helper()
	var icb *types.InvalidChangeBatch
	if !errors.As(err, &icb) {
		t.Fatalf("want InvalidChangeBatch, got %v", err)
	}
	return icb.ErrorMessage()
}

func TestEmulatedRoute53Zones(t *testing.T) {
	s := New()
	c, _ := sdkClient(t, s)
	ctx := context.Background()
	pub := s.AddZone("Example.COM", false)
	priv := s.AddZone("example.com.", true)
	other := s.AddZone("a.example.net", false)

	out, err := c.ListHostedZonesByName(ctx, &sdk.ListHostedZonesByNameInput{DNSName: aws.String("example.com")})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, hz := range out.HostedZones {
		got = append(got, aws.ToString(hz.Id)+" "+aws.ToString(hz.Name)+" "+map[bool]string{true: "private", false: "public"}[hz.Config.PrivateZone])
	}
	// Sorted by reversed name (com.example. < net.example.a.), then id.
	want := []string{"/hostedzone/" + pub.ID + " example.com. public", "/hostedzone/" + priv.ID + " example.com. private"}
	if pub.ID > priv.ID {
		want[0], want[1] = want[1], want[0]
	}
	want = append(want, "/hostedzone/"+other.ID+" a.example.net. public")
	if !slices.Equal(got, want) || out.IsTruncated || aws.ToString(out.DNSName) != "example.com" {
		t.Fatalf("zones %v (truncated %v, dnsname %q), want %v", got, out.IsTruncated, aws.ToString(out.DNSName), want)
	}

	page, err := c.ListHostedZonesByName(ctx, &sdk.ListHostedZonesByNameInput{DNSName: aws.String("example.com."), MaxItems: aws.Int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.HostedZones) != 1 || !page.IsTruncated || aws.ToString(page.NextDNSName) != "example.com." {
		t.Fatalf("first page %+v", page)
	}
	next, err := c.ListHostedZonesByName(ctx, &sdk.ListHostedZonesByNameInput{DNSName: page.NextDNSName, HostedZoneId: page.NextHostedZoneId, MaxItems: aws.Int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	if len(next.HostedZones) != 1 || aws.ToString(next.HostedZones[0].Id) == aws.ToString(page.HostedZones[0].Id) {
		t.Fatalf("second page %+v", next.HostedZones)
	}

	hz, err := c.GetHostedZone(ctx, &sdk.GetHostedZoneInput{Id: aws.String(pub.ID)})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(hz.HostedZone.Name) != "example.com." || hz.DelegationSet == nil ||
		!slices.Equal(hz.DelegationSet.NameServers, pub.NameServers) || len(pub.NameServers) != 4 ||
		!strings.HasSuffix(pub.NameServers[0], ".invalid") {
		t.Fatalf("public zone %+v %+v, want name servers %v", hz.HostedZone, hz.DelegationSet, pub.NameServers)
	}
	hz, err = c.GetHostedZone(ctx, &sdk.GetHostedZoneInput{Id: aws.String(priv.ID)})
	if err != nil {
		t.Fatal(err)
	}
	if hz.DelegationSet != nil || len(hz.VPCs) != 1 || !hz.HostedZone.Config.PrivateZone {
		t.Fatalf("private zone %+v %+v %+v", hz.HostedZone, hz.DelegationSet, hz.VPCs)
	}

	_, err = c.GetHostedZone(ctx, &sdk.GetHostedZoneInput{Id: aws.String("ZNOSUCHZONE")})
	var nsz *types.NoSuchHostedZone
	if !errors.As(err, &nsz) || nsz.ErrorMessage() != "No hosted zone found with ID: ZNOSUCHZONE" {
		t.Fatalf("missing zone: %v", err)
	}
}

func TestEmulatedRoute53ChangeBatchAllOrNothing(t *testing.T) {
	s := New()
	c, _ := sdkClient(t, s)
	z := s.AddZone("example.com", false)
	const name = "bbb1.example.com."
	if _, err := submit(t, c, z.ID,
		rrs(types.ChangeActionCreate, name, types.RRTypeA, 60, "198.51.100.10"),
		rrs(types.ChangeActionCreate, "BBB1.example.com", types.RRTypeTxt, 60, `"heritage=bbb-agent,owner=fleet-a"`),
	); err != nil {
		t.Fatal(err)
	}
	before := s.RRsets(z.ID)

	tests := []struct {
		name    string
		changes []types.Change
		want    string
	}{
		{"create existing", []types.Change{
			rrs(types.ChangeActionCreate, "bbb2.example.com.", types.RRTypeA, 60, "198.51.100.20"),
			rrs(types.ChangeActionCreate, name, types.RRTypeA, 60, "198.51.100.11"),
		}, "[Tried to create resource record set [name='bbb1.example.com.', type='A'] but it already exists]"},
		{"delete with other values", []types.Change{
			rrs(types.ChangeActionDelete, name, types.RRTypeA, 60, "198.51.100.99"),
			rrs(types.ChangeActionCreate, name, types.RRTypeA, 60, "198.51.100.11"),
		}, "[Tried to delete resource record set [name='bbb1.example.com.', type='A'] but the values provided do not match the current values, " +
			"Tried to create resource record set [name='bbb1.example.com.', type='A'] but it already exists]"},
		{"delete with another TTL", []types.Change{
			rrs(types.ChangeActionDelete, name, types.RRTypeA, 300, "198.51.100.10"),
		}, "[Tried to delete resource record set [name='bbb1.example.com.', type='A'] but the values provided do not match the current values]"},
		{"delete missing", []types.Change{
			rrs(types.ChangeActionDelete, name, types.RRTypeAaaa, 60, "2001:db8::1"),
		}, "[Tried to delete resource record set [name='bbb1.example.com.', type='AAAA'] but it was not found]"},
		{"unquoted TXT", []types.Change{
			rrs(types.ChangeActionUpsert, name, types.RRTypeTxt, 60, "heritage=bbb-agent"),
		}, "[Invalid Resource Record: FATAL problem: InvalidCharacterString (Value should be enclosed in quotation marks) encountered with 'heritage=bbb-agent']"},
		{"TXT string too long", []types.Change{
			rrs(types.ChangeActionUpsert, name, types.RRTypeTxt, 60, `"`+strings.Repeat("x", 256)+`"`),
		}, "[Invalid Resource Record: FATAL problem: CharacterStringTooLong (Value is too long) encountered with '\"" + strings.Repeat("x", 256) + "\"']"},
		{"bad address", []types.Change{
			rrs(types.ChangeActionUpsert, name, types.RRTypeA, 60, "2001:db8::1"),
		}, "[Invalid Resource Record: FATAL problem: ARRDATAIllegalIPv4Address (Value is not a valid IPv4 address) encountered with '2001:db8::1']"},
		{"outside the zone", []types.Change{
			rrs(types.ChangeActionCreate, "bbb1.example.org.", types.RRTypeA, 60, "198.51.100.10"),
		}, "[RRSet with DNS name bbb1.example.org. is not permitted in zone example.com.]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := submit(t, c, z.ID, tt.changes...)
			if got := rejection(t, err); got != tt.want {
				t.Fatalf("message\n got %s\nwant %s", got, tt.want)
			}
			var re interface{ HTTPStatusCode() int }
			if !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusBadRequest {
				t.Fatalf("status: %v", err)
			}
			if after := s.RRsets(z.ID); !equalSets(after, before) {
				t.Fatalf("a rejected batch changed the zone:\n%v\nwas\n%v", after, before)
			}
		})
	}

	// DELETE + CREATE in one batch; the DELETE matches as record data: the
	// TXT's split into character-strings is the same, its spacing is not.
	if _, err := submit(t, c, z.ID,
		rrs(types.ChangeActionDelete, name, types.RRTypeA, 60, "198.51.100.10"),
		rrs(types.ChangeActionCreate, name, types.RRTypeA, 60, "198.51.100.11"),
		rrs(types.ChangeActionDelete, name, types.RRTypeTxt, 60, ` "heritage=bbb-agent,owner=fleet-a"`),
	); err != nil {
		t.Fatal(err)
	}
	want := []RRset{
		{Name: "example.com.", Type: "NS"}, {Name: "example.com.", Type: "SOA"},
		{Name: name, Type: "A", TTL: 60, Values: []string{"198.51.100.11"}},
	}
	if got := s.RRsets(z.ID); len(got) != 3 || !equalSets(got[2:], want[2:]) || got[0].Type != "NS" || got[1].Type != "SOA" {
		t.Fatalf("zone after replace: %v", got)
	}
}

func equalSets(a, b []RRset) bool {
	return slices.EqualFunc(a, b, func(x, y RRset) bool {
		return x.Name == y.Name && x.Type == y.Type && x.TTL == y.TTL && slices.Equal(x.Values, y.Values)
	})
}

func TestEmulatedRoute53ListPagingAndOrder(t *testing.T) {
	s := New()
	c, _ := sdkClient(t, s)
	ctx := context.Background()
	z := s.AddZone("example.com", false)
	for _, rr := range []RRset{
		{Name: "b.example.com", Type: "A", TTL: 60, Values: []string{"192.0.2.2"}},
		{Name: "a.b.example.com", Type: "A", TTL: 60, Values: []string{"192.0.2.3"}},
		{Name: "b.example.com", Type: "TXT", TTL: 60, Values: []string{`"x"`}},
		{Name: "b.example.com", Type: "AAAA", TTL: 60, Values: []string{"2001:db8::2"}},
		{Name: "c.example.com", Type: "A", TTL: 60, Values: []string{"192.0.2.4"}},
		{Name: "*.example.com", Type: "A", TTL: 60, Values: []string{"192.0.2.5"}},
	} {
		if err := s.Set(z.ID, rr); err != nil {
			t.Fatal(err)
		}
	}
	s.SetPageLimit(2)
	var got []string
	in := &sdk.ListResourceRecordSetsInput{HostedZoneId: aws.String(z.ID), StartRecordName: aws.String("b.example.com")}
	for pages := 0; ; pages++ {
		out, err := c.ListResourceRecordSets(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if len(out.ResourceRecordSets) > 2 || aws.ToInt32(out.MaxItems) != 2 {
			t.Fatalf("page of %d, MaxItems %d", len(out.ResourceRecordSets), aws.ToInt32(out.MaxItems))
		}
		for _, rr := range out.ResourceRecordSets {
			got = append(got, aws.ToString(rr.Name)+" "+string(rr.Type))
		}
		if !out.IsTruncated {
			break
		}
		in.StartRecordName, in.StartRecordType = out.NextRecordName, out.NextRecordType
	}
	want := []string{"b.example.com. A", "b.example.com. AAAA", "b.example.com. TXT", "a.b.example.com. A", "c.example.com. A"}
	if !slices.Equal(got, want) {
		t.Fatalf("listing from b.example.com:\n got %v\nwant %v", got, want)
	}
	out, err := c.ListResourceRecordSets(ctx, &sdk.ListResourceRecordSetsInput{HostedZoneId: aws.String(z.ID), MaxItems: aws.Int32(2)})
	if err != nil {
		t.Fatal(err)
	}
	// From the start: the apex first, then "*" (shown as \052, which sorts
	// before letters).
	if n, typ := aws.ToString(out.NextRecordName), out.NextRecordType; n != `\052.example.com.` || typ != types.RRTypeA ||
		aws.ToString(out.ResourceRecordSets[0].Name) != "example.com." {
		t.Fatalf("from the start: %v, next %s %s", out.ResourceRecordSets, n, typ)
	}
	_, err = c.ListResourceRecordSets(ctx, &sdk.ListResourceRecordSetsInput{HostedZoneId: aws.String(z.ID), StartRecordType: types.RRTypeA})
	var bad *types.InvalidInput
	if !errors.As(err, &bad) {
		t.Fatalf("type without name: %v", err)
	}
}

func TestEmulatedRoute53ChangeGoesInsync(t *testing.T) {
	s := New()
	c, _ := sdkClient(t, s)
	ctx := context.Background()
	z := s.AddZone("example.com", false)
	s.SetPendingPolls(2)
	resolve := s.Resolver()
	ns := z.NameServers[1] + ":53"

	info, err := submit(t, c, z.ID,
		rrs(types.ChangeActionCreate, "bbb1.example.com", types.RRTypeA, 60, "198.51.100.10"),
		rrs(types.ChangeActionCreate, "bbb1.example.com", types.RRTypeTxt, 60, `"a\"b" "c\\d\101"`))
	if err != nil {
		t.Fatal(err)
	}
	if info.Status != types.ChangeStatusPending || !strings.HasPrefix(aws.ToString(info.Id), "/change/C") ||
		time.Since(aws.ToTime(info.SubmittedAt)) > time.Minute {
		t.Fatalf("change info %+v", info)
	}
	for i, want := range []types.ChangeStatus{types.ChangeStatusPending, types.ChangeStatusPending, types.ChangeStatusInsync, types.ChangeStatusInsync} {
		if got, err := resolve(ctx, ns, "bbb1.example.com.", dns.TypeA); err != nil || (len(got) > 0) != (i > 2) {
			t.Fatalf("before GetChange %d the name servers answer %v, %v", i+1, got, err)
		}
		out, err := c.GetChange(ctx, &sdk.GetChangeInput{Id: info.Id}) // "/change/C..." as answered
		if err != nil {
			t.Fatal(err)
		}
		if out.ChangeInfo.Status != want {
			t.Fatalf("GetChange %d: %s, want %s", i+1, out.ChangeInfo.Status, want)
		}
	}
	if got, _ := resolve(ctx, ns, "BBB1.example.com", dns.TypeA); !slices.Equal(got, []string{"198.51.100.10"}) {
		t.Fatalf("A: %v", got)
	}
	if got, _ := resolve(ctx, ns, "bbb1.example.com.", dns.TypeTXT); !slices.Equal(got, []string{`a"bc\dA`}) {
		t.Fatalf("TXT: %q", got)
	}
	if got, err := resolve(ctx, ns, "bbb2.example.com.", dns.TypeA); err != nil || got != nil {
		t.Fatalf("missing name: %v, %v", got, err)
	}
	// A deletion behind the API's back shows at once, everywhere.
	if err := s.Delete(z.ID, "BBB1.example.com", "A"); err != nil {
		t.Fatal(err)
	}
	if got, _ := resolve(ctx, ns, "bbb1.example.com.", dns.TypeA); got != nil || len(s.RRsets(z.ID)) != 3 {
		t.Fatalf("after Delete: answers %v, zone %v", got, s.RRsets(z.ID))
	}
	if _, err := resolve(ctx, "192.0.2.53:53", "bbb1.example.com.", dns.TypeA); err == nil {
		t.Fatal("a server that is not the zone's answered")
	}

	_, err = c.GetChange(ctx, &sdk.GetChangeInput{Id: aws.String("CNOSUCH")})
	var nsc *types.NoSuchChange
	if !errors.As(err, &nsc) {
		t.Fatalf("missing change: %v", err)
	}
}

func TestEmulatedRoute53Faults(t *testing.T) {
	s := New()
	c, _ := sdkClient(t, s)
	ctx := context.Background()
	z := s.AddZone("example.com", false)
	s.SetPendingPolls(0)
	s.Fail(ActionChangeResourceRecordSets, CodePriorRequestNotComplete, 1)
	s.Fail(ActionChangeResourceRecordSets, CodeThrottling, 1)
	info, err := submit(t, c, z.ID, rrs(types.ChangeActionCreate, "bbb1.example.com.", types.RRTypeA, 60, "198.51.100.10"))
	if err != nil {
		t.Fatalf("after one PriorRequestNotComplete and one Throttling (the SDK retries both): %v", err)
	}
	if info.Status != types.ChangeStatusInsync {
		t.Fatalf("status %s with no pending polls", info.Status)
	}

	s.Fail("", CodeThrottling, 5) // more than the SDK's 3 attempts
	_, err = c.GetHostedZone(ctx, &sdk.GetHostedZoneInput{Id: aws.String(z.ID)})
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != CodeThrottling || apiErr.ErrorMessage() != "Rate exceeded" {
		t.Fatalf("throttled: %v", err)
	}

	var got []string
	for _, call := range s.Calls() {
		got = append(got, call.Action+":"+call.Error)
	}
	want := []string{
		"ChangeResourceRecordSets:PriorRequestNotComplete", "ChangeResourceRecordSets:Throttling", "ChangeResourceRecordSets:",
		"GetHostedZone:Throttling", "GetHostedZone:Throttling", "GetHostedZone:Throttling",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("calls\n got %v\nwant %v", got, want)
	}
	last := s.Calls()[2]
	if last.ZoneID != z.ID || last.ChangeID == "" || len(last.Changes) != 1 ||
		last.Changes[0].Action != "CREATE" || last.Changes[0].RRset.Name != "bbb1.example.com." {
		t.Fatalf("recorded call %+v", last)
	}
}

// TestEmulatedRoute53WireErrors checks the error document itself and what a
// request without a signature or to an unknown path gets.
func TestEmulatedRoute53WireErrors(t *testing.T) {
	s := New()
	_, url := sdkClient(t, s)
	get := func(path string, auth bool) (int, errorResponse) {
		req, _ := http.NewRequest(http.MethodGet, url+path, nil)
		if auth {
			req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEMULATION/...")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var doc errorResponse
		if err := xml.Unmarshal(body, &doc); err != nil {
			t.Fatalf("%s: %v\n%s", path, err, body)
		}
		if doc.XMLName.Space != Namespace || doc.RequestID == "" || resp.Header.Get("x-amzn-RequestId") != doc.RequestID {
			t.Fatalf("%s: error document %+v", path, doc)
		}
		return resp.StatusCode, doc
	}
	if status, doc := get("/2013-04-01/hostedzone/Z1", false); status != http.StatusForbidden || doc.Error.Code != CodeMissingAuth {
		t.Fatalf("unsigned: %d %+v", status, doc)
	}
	if status, doc := get("/2013-04-01/healthcheck", true); status != http.StatusNotFound || doc.Error.Code != CodeUnknownOperation {
		t.Fatalf("unknown: %d %+v", status, doc)
	}
	if status, doc := get("/2013-04-01/hostedzone/Z1", true); status != http.StatusNotFound || doc.Error.Code != CodeNoSuchHostedZone || doc.Error.Type != "Sender" {
		t.Fatalf("missing zone: %d %+v", status, doc)
	}
}
