// Package route53 is an EMULATION of the Amazon Route 53 API for tests: an
// http.Handler that speaks the REST-XML wire protocol of the 2013-04-01 API,
// the one aws-sdk-go-v2's route53 client sends, for the five actions
// bbb-agent uses: ListHostedZonesByName, GetHostedZone,
// ListResourceRecordSets, ChangeResourceRecordSets and GetChange. Change
// batches are validated all or nothing with the real service's messages,
// changes go PENDING → INSYNC as GetChange is asked, and Resolver stands in
// for the zones' name servers, answering only what is in sync. It records
// every call and can be told to throttle. It is not the real service, checks
// no signature and runs only on loopback; its name servers are under the
// .invalid TLD so that nothing can ever reach them.
package route53

import (
	"context"
	"crypto/rand"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Namespace is the XML namespace of every request and answer.
const Namespace = "https://route53.amazonaws.com/doc/2013-04-01/"

// APIVersion is the first element of every path.
const APIVersion = "2013-04-01"

// The actions the emulation answers.
const (
	ActionListHostedZonesByName    = "ListHostedZonesByName"
	ActionGetHostedZone            = "GetHostedZone"
	ActionListResourceRecordSets   = "ListResourceRecordSets"
	ActionChangeResourceRecordSets = "ChangeResourceRecordSets"
	ActionGetChange                = "GetChange"
)

// The error codes the emulation answers with (the real service's codes).
const (
	CodeThrottling              = "Throttling"
	CodePriorRequestNotComplete = "PriorRequestNotComplete"
	CodeInvalidChangeBatch      = "InvalidChangeBatch"
	CodeInvalidInput            = "InvalidInput"
	CodeNoSuchHostedZone        = "NoSuchHostedZone"
	CodeNoSuchChange            = "NoSuchChange"
	CodeMissingAuth             = "MissingAuthenticationToken"
	CodeUnknownOperation        = "UnknownOperationException"
)

// The statuses of a change.
const (
	StatusPending = "PENDING"
	StatusInsync  = "INSYNC"
)

// Limits of the real service.
const (
	maxRecordSetsPage = 300 // ListResourceRecordSets
	maxZonesPage      = 100 // ListHostedZonesByName
	maxStringLen      = 255 // one TXT character-string
)

// RRset is a resource record set as the API carries it: Name a lower-case
// FQDN with a trailing dot, Values as on the wire (TXT values quoted,
// `"text"`). SetIdentifier and AliasDNSName are only for Set: records that
// bbb-agent must recognise and leave alone (routing policies, aliases).
type RRset struct {
	Name          string
	Type          string
	TTL           int64
	Values        []string
	SetIdentifier string
	AliasDNSName  string
}

// Zone is an emulated hosted zone. ID is bare ("Z..."), without the
// "/hostedzone/" prefix the API adds. NameServers (public zones only) are the
// delegation set, host names without a trailing dot.
type Zone struct {
	ID          string
	Name        string
	Private     bool
	NameServers []string
}

// Change is one element of a ChangeResourceRecordSets batch.
type Change struct {
	Action string // CREATE, DELETE or UPSERT
	RRset  RRset
}

// Call is one request the emulation received, as it understood it.
type Call struct {
	Action string
	ZoneID string // the hosted zone of the call, bare
	// ListHostedZonesByName: DNSName; ListResourceRecordSets: StartName,
	// StartType; both: MaxItems as sent ("" when absent).
	DNSName   string
	StartName string
	StartType string
	MaxItems  string
	// ChangeResourceRecordSets: the batch, and the id of the change it
	// made; GetChange: the id asked for and the Status answered.
	Changes  []Change
	ChangeID string
	Status   string
	Error    string // the error code answered, "" when the call succeeded
	Message  string // the error message answered
}

type key struct{ name, typ string }

type zone struct {
	Zone
	records   map[key]RRset // what the API shows: every accepted change
	published map[key]RRset // what the name servers answer: changes in sync
	syncedSeq int
}

type change struct {
	id, zoneID string
	seq        int
	status     string
	polls      int // GetChange answers asked so far
	pendingFor int // GetChange answers PENDING this many times (PendingForever: always)
	submitted  time.Time
	comment    string
	snapshot   map[key]RRset // the zone's records once this change applied
}

type fault struct {
	action, code string
	n            int
}

// Server is the emulated Route 53 API. The zero value is not usable; call New.
type Server struct {
	mu         sync.Mutex
	zones      map[string]*zone
	changes    map[string]*change
	order      []*change
	seq        int
	nsSeq      int
	pendingFor int
	pageLimit  int
	faults     []fault
	calls      []Call
}

// New returns an emulation without hosted zones, whose changes answer
// PENDING to the first GetChange and INSYNC after.
func New() *Server {
	return &Server{
		zones:      map[string]*zone{},
		changes:    map[string]*change{},
		pendingFor: 1,
		pageLimit:  maxRecordSetsPage,
	}
}

// AddZone creates a hosted zone named name, with the SOA and NS records the
// real service puts at its apex, and returns it. Several zones may have the
// same name, as in the real service (a public and a private one, say).
func (s *Server) AddZone(name string, private bool) Zone {
	s.mu.Lock()
	defer s.mu.Unlock()
	z := &zone{
		Zone:      Zone{ID: "Z" + randomID(20), Name: canonicalName(name), Private: private},
		records:   map[key]RRset{},
		published: map[key]RRset{},
	}
	var ns []string
	for _, tld := range []string{"com", "net", "org", "co.uk"} {
		s.nsSeq++
		host := fmt.Sprintf("ns-%d.awsdns-%02d.%s.invalid", s.nsSeq, s.nsSeq%64, tld)
		ns = append(ns, host+".")
		if !private {
			z.NameServers = append(z.NameServers, host)
		}
	}
	soa := fmt.Sprintf("%s awsdns-hostmaster.amazon.com. 1 7200 900 1209600 86400", ns[0])
	for _, rr := range []RRset{
		{Name: z.Name, Type: "NS", TTL: 172800, Values: ns},
		{Name: z.Name, Type: "SOA", TTL: 900, Values: []string{soa}},
	} {
		z.records[key{rr.Name, rr.Type}] = rr
		z.published[key{rr.Name, rr.Type}] = rr
	}
	s.zones[z.ID] = z
	return cloneZone(z.Zone)
}

// PendingForever, given to SetPendingPolls, makes changes stay PENDING
// however often GetChange asks: a Route53 whose propagation is stuck.
const PendingForever = -1

// SetPendingPolls makes changes accepted from now on answer PENDING to the
// first k GetChange calls and INSYNC after (k = 0: in sync at once;
// PendingForever: never).
func (s *Server) SetPendingPolls(k int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pendingFor = max(k, PendingForever)
}

// SetPageLimit caps ListResourceRecordSets pages at n record sets, below the
// real service's 300, so that tests exercise paging.
func (s *Server) SetPageLimit(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pageLimit = min(max(n, 1), maxRecordSetsPage)
}

// Fail makes the next n calls of action ("" for any action) answer the
// error code without effect: CodeThrottling ("Rate exceeded") or
// CodePriorRequestNotComplete, both HTTP 400 as the real service sends them.
func (s *Server) Fail(action, code string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, fault{action: action, code: code, n: n})
}

// Set writes an RRset straight into a zone, as another tool would have long
// ago: the API and the name servers show it at once; changes still pending
// stay pending. Values are as on the wire (TXT quoted).
func (s *Server) Set(zoneID string, rr RRset) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rr.Name = canonicalName(rr.Name)
	rr.Values = slices.Clone(rr.Values)
	return s.edit(zoneID, func(m map[key]RRset) { m[key{rr.Name, rr.Type}] = rr })
}

// Delete removes an RRset straight from a zone, like Set.
func (s *Server) Delete(zoneID, name, typ string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.edit(zoneID, func(m map[key]RRset) { delete(m, key{canonicalName(name), typ}) })
}

func (s *Server) edit(zoneID string, apply func(map[key]RRset)) error {
	z, ok := s.zones[zoneID]
	if !ok {
		return fmt.Errorf("no emulated hosted zone %s", zoneID)
	}
	apply(z.records)
	apply(z.published)
	for _, c := range s.order {
		if c.zoneID == zoneID && c.status == StatusPending {
			apply(c.snapshot)
		}
	}
	return nil
}

// RRsets returns a zone's record sets as the API shows them, in the API's
// order (names with their labels reversed, then types).
func (s *Server) RRsets(zoneID string) []RRset {
	s.mu.Lock()
	defer s.mu.Unlock()
	z, ok := s.zones[zoneID]
	if !ok {
		return nil
	}
	return sorted(z.records)
}

// Calls returns every request received so far, in order.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Call, len(s.calls))
	for i, c := range s.calls {
		c.Changes = slices.Clone(c.Changes)
		out[i] = c
	}
	return out
}

// Resolver returns a function with the signature of dnsupdate.Manager's
// Resolve that answers as the public zones' name servers would: server must
// be one of a zone's name servers ("host:53"), and the answer holds only
// changes that are INSYNC. Values are sorted; TXT values are the unquoted
// text, character-strings joined. A name without records answers no values.
func (s *Server) Resolver() func(ctx context.Context, server, name string, qtype uint16) ([]string, error) {
	return func(_ context.Context, server, name string, qtype uint16) ([]string, error) {
		host, port, err := net.SplitHostPort(server)
		if err != nil {
			return nil, err
		}
		name = canonicalName(name)
		s.mu.Lock()
		defer s.mu.Unlock()
		var best *zone
		for _, z := range s.zones {
			if port == "53" && slices.Contains(z.NameServers, strings.TrimSuffix(host, ".")) &&
				inZone(name, z.Name) && (best == nil || len(z.Name) > len(best.Name)) {
				best = z
			}
		}
		if best == nil {
			return nil, fmt.Errorf("%s is not a name server of an emulated zone holding %s (REFUSED)", server, name)
		}
		rr, ok := best.published[key{name, dns.TypeToString[qtype]}]
		if !ok {
			return nil, nil
		}
		var out []string
		for _, v := range rr.Values {
			if rr.Type == "TXT" {
				parts, err := parseTXT(v)
				if err == nil {
					v = strings.Join(parts, "")
				}
			}
			out = append(out, v)
		}
		slices.Sort(out)
		return out, nil
	}
}

// ServeHTTP answers one REST-XML request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	action, id := route(r.Method, r.URL.Path)
	if action == "" {
		writeError(w, http.StatusNotFound, CodeUnknownOperation,
			fmt.Sprintf("the emulation answers no %s %s", r.Method, r.URL.Path))
		return
	}
	if r.Header.Get("Authorization") == "" {
		writeError(w, http.StatusForbidden, CodeMissingAuth, "Request is missing Authentication Token")
		return
	}
	var body []byte
	if r.Method == http.MethodPost {
		var err error
		if body, err = io.ReadAll(io.LimitReader(r.Body, 32<<20)); err != nil {
			writeError(w, http.StatusBadRequest, CodeInvalidInput, "reading the request body: "+err.Error())
			return
		}
	}

	s.mu.Lock()
	call := Call{Action: action}
	doc, e := s.handle(&call, id, r.URL.Query(), body)
	if e != nil {
		call.Error, call.Message = e.code, e.message
	}
	s.calls = append(s.calls, call)
	s.mu.Unlock()

	if e != nil {
		writeError(w, e.status, e.code, e.message)
		return
	}
	writeXML(w, http.StatusOK, requestID(), doc)
}

// route names the action of a request and the id in its path.
func route(method, path string) (action, id string) {
	rest, ok := strings.CutPrefix(path, "/"+APIVersion+"/")
	if !ok {
		return "", ""
	}
	parts := strings.Split(strings.TrimSuffix(rest, "/"), "/")
	switch {
	case method == http.MethodGet && len(parts) == 1 && parts[0] == "hostedzonesbyname":
		return ActionListHostedZonesByName, ""
	case method == http.MethodGet && len(parts) == 2 && parts[0] == "hostedzone":
		return ActionGetHostedZone, parts[1]
	case len(parts) == 3 && parts[0] == "hostedzone" && parts[2] == "rrset":
		switch method {
		case http.MethodGet:
			return ActionListResourceRecordSets, parts[1]
		case http.MethodPost:
			return ActionChangeResourceRecordSets, parts[1]
		}
	case method == http.MethodGet && len(parts) == 2 && parts[0] == "change":
		return ActionGetChange, parts[1]
	}
	return "", ""
}

// apiError is an error answer.
type apiError struct {
	status        int
	code, message string
}

func invalidInput(format string, args ...any) *apiError {
	return &apiError{http.StatusBadRequest, CodeInvalidInput, fmt.Sprintf(format, args...)}
}

// handle answers one call; s.mu is held.
func (s *Server) handle(call *Call, id string, q url.Values, body []byte) (any, *apiError) {
	switch call.Action {
	case ActionGetHostedZone, ActionListResourceRecordSets, ActionChangeResourceRecordSets:
		call.ZoneID = id
	case ActionGetChange:
		call.ChangeID = id
	}
	var req changeRequest
	if call.Action == ActionChangeResourceRecordSets {
		// Parsed before any fault so that the call records the batch.
		var err error
		if req, call.Changes, err = parseChanges(body); err != nil {
			return nil, invalidInput("Could not parse the request body: %v", err)
		}
	}
	if e := s.injected(call.Action); e != nil {
		return nil, e
	}
	switch call.Action {
	case ActionListHostedZonesByName:
		return s.listHostedZonesByName(call, q)
	case ActionGetHostedZone:
		return s.getHostedZone(id)
	case ActionListResourceRecordSets:
		return s.listResourceRecordSets(call, id, q)
	case ActionChangeResourceRecordSets:
		return s.changeResourceRecordSets(call, id, req)
	default:
		return s.getChange(call, id)
	}
}

func (s *Server) injected(action string) *apiError {
	for i := range s.faults {
		f := &s.faults[i]
		if f.n <= 0 || (f.action != "" && f.action != action) {
			continue
		}
		f.n--
		switch f.code {
		case CodeThrottling:
			return &apiError{http.StatusBadRequest, f.code, "Rate exceeded"}
		case CodePriorRequestNotComplete:
			return &apiError{http.StatusBadRequest, f.code,
				"The request was rejected because Route 53 was still processing a prior request."}
		default:
			return &apiError{http.StatusBadRequest, f.code, "error injected by the emulation"}
		}
	}
	return nil
}

func (s *Server) zone(id string) (*zone, *apiError) {
	z, ok := s.zones[id]
	if !ok {
		return nil, &apiError{http.StatusNotFound, CodeNoSuchHostedZone, "No hosted zone found with ID: " + id}
	}
	return z, nil
}

// maxItems reads a maxitems parameter: def when absent, at most limit.
func maxItems(v string, def, limit int) (int, *apiError) {
	if v == "" {
		return min(def, limit), nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, invalidInput("1 validation error detected: Value '%s' at 'maxItems' failed to satisfy constraint: Member must be a positive integer", v)
	}
	return min(n, limit), nil
}

func (s *Server) listHostedZonesByName(call *Call, q url.Values) (any, *apiError) {
	call.DNSName, call.MaxItems = q.Get("dnsname"), q.Get("maxitems")
	startID := strings.TrimPrefix(q.Get("hostedzoneid"), "/hostedzone/")
	if startID != "" && call.DNSName == "" {
		return nil, invalidInput("The input is not valid: HostedZoneId requires DNSName")
	}
	limit, e := maxItems(call.MaxItems, maxZonesPage, maxZonesPage)
	if e != nil {
		return nil, e
	}
	zones := make([]*zone, 0, len(s.zones))
	for _, z := range s.zones {
		zones = append(zones, z)
	}
	slices.SortFunc(zones, func(a, b *zone) int {
		if c := strings.Compare(reversed(a.Name), reversed(b.Name)); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	start := 0
	if call.DNSName != "" {
		from := reversed(canonicalName(call.DNSName))
		start = slices.IndexFunc(zones, func(z *zone) bool {
			c := strings.Compare(reversed(z.Name), from)
			return c > 0 || (c == 0 && z.ID >= startID)
		})
		if start < 0 {
			start = len(zones)
		}
	}
	doc := listHostedZonesByNameResponse{Xmlns: Namespace, DNSName: call.DNSName, MaxItems: limit}
	if startID != "" {
		doc.HostedZoneID = startID
	}
	end := min(start+limit, len(zones))
	for _, z := range zones[start:end] {
		doc.HostedZones = append(doc.HostedZones, hostedZoneXML(z))
	}
	if end < len(zones) {
		doc.IsTruncated = true
		doc.NextDNSName, doc.NextHostedZoneID = zones[end].Name, zones[end].ID
	}
	return doc, nil
}

func (s *Server) getHostedZone(id string) (any, *apiError) {
	z, e := s.zone(id)
	if e != nil {
		return nil, e
	}
	doc := getHostedZoneResponse{Xmlns: Namespace, HostedZone: hostedZoneXML(z)}
	if z.Private {
		doc.VPCs = &vpcsXML{VPC: []vpcXML{{Region: "eu-central-1", ID: "vpc-0emulated0000000"}}}
	} else {
		doc.DelegationSet = &delegationSetXML{NameServers: slices.Clone(z.NameServers)}
	}
	return doc, nil
}

func (s *Server) listResourceRecordSets(call *Call, id string, q url.Values) (any, *apiError) {
	call.StartName, call.StartType, call.MaxItems = q.Get("name"), q.Get("type"), q.Get("maxitems")
	z, e := s.zone(id)
	if e != nil {
		return nil, e
	}
	if call.StartType != "" && call.StartName == "" {
		return nil, invalidInput("The input is not valid: StartRecordType requires StartRecordName")
	}
	if call.StartType != "" && dns.StringToType[call.StartType] == 0 {
		return nil, invalidInput("1 validation error detected: Value '%s' at 'type' failed to satisfy constraint: Member must satisfy enum value set", call.StartType)
	}
	limit, e := maxItems(call.MaxItems, maxRecordSetsPage, s.pageLimit)
	if e != nil {
		return nil, e
	}
	all := sorted(z.records)
	start := 0
	if call.StartName != "" {
		from := reversed(canonicalName(call.StartName))
		start = slices.IndexFunc(all, func(rr RRset) bool {
			c := strings.Compare(reversed(rr.Name), from)
			return c > 0 || (c == 0 && rr.Type >= call.StartType)
		})
		if start < 0 {
			start = len(all)
		}
	}
	doc := listResourceRecordSetsResponse{Xmlns: Namespace, MaxItems: limit}
	end := min(start+limit, len(all))
	for _, rr := range all[start:end] {
		doc.RRsets = append(doc.RRsets, rrsetToXML(rr))
	}
	if end < len(all) {
		doc.IsTruncated = true
		doc.NextRecordName, doc.NextRecordType = all[end].Name, all[end].Type
		doc.NextRecordIdentifier = all[end].SetIdentifier
	}
	return doc, nil
}

func (s *Server) changeResourceRecordSets(call *Call, id string, req changeRequest) (any, *apiError) {
	z, e := s.zone(id)
	if e != nil {
		return nil, e
	}
	if len(req.Changes) == 0 {
		return nil, invalidInput("1 validation error detected: Value '[]' at 'changeBatch.changes' failed to satisfy constraint: Member must have length greater than or equal to 1")
	}
	work := clone(z.records)
	var msgs []string
	for i, c := range req.Changes {
		if c.Action != "CREATE" && c.Action != "DELETE" && c.Action != "UPSERT" {
			return nil, invalidInput("1 validation error detected: Value '%s' at 'changeBatch.changes.%d.member.action' failed to satisfy constraint: Member must satisfy enum value set: [CREATE, DELETE, UPSERT]", c.Action, i+1)
		}
		rr := call.Changes[i].RRset
		if c.RRset.AliasTarget != nil || c.RRset.SetIdentifier != "" {
			return nil, invalidInput("the emulation does not model alias or routing-policy record sets (change %d)", i+1)
		}
		if c.RRset.TTL == nil || len(rr.Values) == 0 {
			return nil, invalidInput("Invalid request: Expected exactly one of [AliasTarget, all of [TTL, and ResourceRecords], or TrafficPolicyInstanceId], but found none in Change with [Action=%s, Name=%s, Type=%s, SetIdentifier=null]", c.Action, rr.Name, rr.Type)
		}
		if dns.StringToType[rr.Type] == 0 {
			return nil, invalidInput("1 validation error detected: Value '%s' at 'changeBatch.changes.%d.member.resourceRecordSet.type' failed to satisfy constraint: Member must satisfy enum value set", rr.Type, i+1)
		}
		if !inZone(rr.Name, z.Name) {
			msgs = append(msgs, fmt.Sprintf("RRSet with DNS name %s is not permitted in zone %s", rr.Name, z.Name))
			continue
		}
		if bad := invalidValues(rr); len(bad) > 0 {
			msgs = append(msgs, bad...)
			continue
		}
		k := key{rr.Name, rr.Type}
		cur, exists := work[k]
		subject := fmt.Sprintf("resource record set [name='%s', type='%s']", rr.Name, rr.Type)
		switch c.Action {
		case "CREATE":
			if exists {
				msgs = append(msgs, "Tried to create "+subject+" but it already exists")
				continue
			}
			work[k] = rr
		case "DELETE":
			switch {
			case !exists:
				msgs = append(msgs, "Tried to delete "+subject+" but it was not found")
			case !sameRRset(cur, rr):
				msgs = append(msgs, "Tried to delete "+subject+" but the values provided do not match the current values")
			default:
				delete(work, k)
			}
		case "UPSERT":
			work[k] = rr
		}
	}
	if len(msgs) > 0 {
		return nil, &apiError{http.StatusBadRequest, CodeInvalidChangeBatch, "[" + strings.Join(msgs, ", ") + "]"}
	}

	z.records = work
	s.seq++
	c := &change{
		id: "C" + randomID(20), zoneID: z.ID, seq: s.seq, status: StatusPending,
		pendingFor: s.pendingFor, submitted: time.Now().UTC(), comment: req.Comment, snapshot: clone(work),
	}
	s.changes[c.id] = c
	s.order = append(s.order, c)
	if c.pendingFor == 0 {
		s.insync(c)
	}
	call.ChangeID = c.id
	return changeInfoResponse{XMLName: xml.Name{Local: "ChangeResourceRecordSetsResponse"}, Xmlns: Namespace, ChangeInfo: changeInfoXML(c)}, nil
}

func (s *Server) getChange(call *Call, id string) (any, *apiError) {
	c, ok := s.changes[id]
	if !ok {
		return nil, &apiError{http.StatusNotFound, CodeNoSuchChange, "Could not find resource with ID: " + id}
	}
	if c.status == StatusPending {
		c.polls++
		if c.pendingFor != PendingForever && c.polls > c.pendingFor {
			s.insync(c)
		}
	}
	call.Status = c.status
	return changeInfoResponse{XMLName: xml.Name{Local: "GetChangeResponse"}, Xmlns: Namespace, ChangeInfo: changeInfoXML(c)}, nil
}

// insync puts c and every earlier change of its zone in sync: the name
// servers answer the zone as c left it (changes propagate in order).
func (s *Server) insync(c *change) {
	z := s.zones[c.zoneID]
	for _, o := range s.order {
		if o.zoneID == c.zoneID && o.seq <= c.seq {
			o.status = StatusInsync
		}
	}
	if c.seq > z.syncedSeq {
		z.published, z.syncedSeq = clone(c.snapshot), c.seq
	}
}

// invalidValues checks an RRset's values as the real service does for the
// types bbb-agent writes, and answers its messages.
func invalidValues(rr RRset) []string {
	var msgs []string
	seen := map[string]bool{}
	for _, v := range rr.Values {
		problem := ""
		switch rr.Type {
		case "A":
			if a, err := netip.ParseAddr(v); err != nil || !a.Is4() {
				problem = "ARRDATAIllegalIPv4Address (Value is not a valid IPv4 address)"
			}
		case "AAAA":
			if a, err := netip.ParseAddr(v); err != nil || !a.Is6() || a.Zone() != "" {
				problem = "AAAARRDATAIllegalIPv6Address (Value is not a valid IPv6 address)"
			}
		case "TXT":
			if _, err := parseTXT(v); err != nil {
				problem = err.Error()
			}
		}
		if problem != "" {
			msgs = append(msgs, fmt.Sprintf("Invalid Resource Record: FATAL problem: %s encountered with '%s'", problem, v))
			continue
		}
		c := canonicalValue(rr.Type, v)
		if seen[c] {
			msgs = append(msgs, fmt.Sprintf("Duplicate Resource Record: '%s'", v))
		}
		seen[c] = true
	}
	return msgs
}

// sameRRset reports whether a DELETE names exactly the current RRset: same
// TTL and the same values in any order. Values are compared as record data
// (addresses parsed, TXT character-strings unquoted), not as text.
func sameRRset(cur, del RRset) bool {
	if cur.TTL != del.TTL || len(cur.Values) != len(del.Values) || cur.SetIdentifier != "" || cur.AliasDNSName != "" {
		return false
	}
	a, b := make([]string, len(cur.Values)), make([]string, len(del.Values))
	for i := range cur.Values {
		a[i], b[i] = canonicalValue(cur.Type, cur.Values[i]), canonicalValue(del.Type, del.Values[i])
	}
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func canonicalValue(typ, v string) string {
	switch typ {
	case "A", "AAAA":
		if a, err := netip.ParseAddr(v); err == nil {
			return a.String()
		}
	case "TXT":
		if parts, err := parseTXT(v); err == nil {
			return strings.Join(parts, "\x00")
		}
	}
	return v
}

// parseTXT reads a TXT value as the real service wants it: one or more
// character-strings in double quotes, separated by white space, each at most
// 255 bytes once \" \\ and \ddd escapes are undone.
func parseTXT(v string) ([]string, error) {
	quote := fmt.Errorf("InvalidCharacterString (Value should be enclosed in quotation marks)")
	s := strings.TrimSpace(v)
	if s == "" {
		return nil, quote
	}
	var parts []string
	for s != "" {
		if s[0] != '"' {
			return nil, quote
		}
		var b strings.Builder
		i, closed := 1, false
		for i < len(s) && !closed {
			switch c := s[i]; {
			case c == '"':
				closed = true
				i++
			case c == '\\' && i+3 < len(s) && isOctal(s[i+1:i+4]):
				n, _ := strconv.ParseUint(s[i+1:i+4], 8, 8)
				b.WriteByte(byte(n))
				i += 4
			case c == '\\' && i+1 < len(s):
				b.WriteByte(s[i+1])
				i += 2
			default:
				b.WriteByte(c)
				i++
			}
		}
		if !closed {
			return nil, quote
		}
		if b.Len() > maxStringLen {
			return nil, fmt.Errorf("CharacterStringTooLong (Value is too long)")
		}
		parts = append(parts, b.String())
		s = strings.TrimLeft(s[i:], " \t")
	}
	return parts, nil
}

func isOctal(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '7' {
			return false
		}
	}
	n, _ := strconv.ParseUint(s, 8, 16)
	return n < 256
}

// canonicalName lower-cases a name, gives it a trailing dot and writes
// characters other than a-z, 0-9, '-', '_' and '.' as \ddd octal escapes,
// as the real service shows names.
func canonicalName(name string) string {
	name = strings.ToLower(strings.TrimSpace(name))
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '\\' && i+3 < len(name) && isOctal(name[i+1:i+4]):
			b.WriteString(name[i : i+4])
			i += 3
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "\\%03o", c)
		}
	}
	return b.String()
}

// reversed is the sort key of a name: its labels reversed, "com.example.www.".
func reversed(name string) string {
	labels := strings.Split(strings.TrimSuffix(name, "."), ".")
	slices.Reverse(labels)
	return strings.Join(labels, ".") + "."
}

func inZone(name, zone string) bool {
	return name == zone || strings.HasSuffix(name, "."+zone)
}

func sorted(m map[key]RRset) []RRset {
	out := make([]RRset, 0, len(m))
	for _, rr := range m {
		out = append(out, rr)
	}
	slices.SortFunc(out, func(a, b RRset) int {
		if c := strings.Compare(reversed(a.Name), reversed(b.Name)); c != 0 {
			return c
		}
		return strings.Compare(a.Type, b.Type)
	})
	return out
}

func clone(m map[key]RRset) map[key]RRset {
	out := make(map[key]RRset, len(m))
	for k, v := range m {
		v.Values = slices.Clone(v.Values)
		out[k] = v
	}
	return out
}

func cloneZone(z Zone) Zone {
	z.NameServers = slices.Clone(z.NameServers)
	return z
}

// randomID returns n characters of the upper-case alphabet and digits, the
// form of the real service's zone and change ids.
func randomID(n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// requestID returns a fresh request id in the service's UUID form.
func requestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
