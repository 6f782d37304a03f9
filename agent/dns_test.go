package agent

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/dnsupdate"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
	"github.com/miekg/dns"
)

// memDNS is an in-memory zone behind the dnsupdate.Provider interface; it
// records the order of events against the balancer for the lifecycle test.
// The real providers are tested against BIND and the Route53 emulation in
// dnsupdate; here the point is when the agent calls them.
type memDNS struct {
	mu      sync.Mutex
	sets    map[string]dnsupdate.RRset // type -> RRset at the one name
	applied int
}

func (m *memDNS) Name() string { return "memory" }

func (m *memDNS) Records(context.Context, string) ([]dnsupdate.RRset, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []dnsupdate.RRset
	for _, r := range m.sets {
		out = append(out, r)
	}
	return out, nil
}

func (m *memDNS) Apply(_ context.Context, p dnsupdate.Plan) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.applied++
	for _, c := range p.Changes {
		if c.Old != nil {
			delete(m.sets, c.Old.Type)
		}
		if c.New != nil && len(c.New.Values) > 0 {
			m.sets[c.New.Type] = *c.New
		}
	}
	return nil
}

func (m *memDNS) Authoritative(context.Context) ([]string, error) { return []string{"memory:53"}, nil }

func (m *memDNS) resolve(_ context.Context, _, _ string, qtype uint16) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.sets[dns.TypeToString[qtype]]
	if !ok {
		return nil, nil
	}
	v := slices.Clone(r.Values)
	slices.Sort(v)
	return v, nil
}

func (m *memDNS) values(typ string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sets[typ].Values
}

func newMemDNS() (*memDNS, *dnsupdate.Manager) {
	m := &memDNS{sets: map[string]dnsupdate.RRset{}}
	return m, &dnsupdate.Manager{Provider: m, FQDN: "bbb1.example.com", Owner: dnsupdate.Owner{ID: "fleet-a", Node: "bbb1"},
		WaitTimeout: time.Second, WaitEvery: 10 * time.Millisecond, Resolve: m.resolve}
}

// TestDNSLifecycle: records are published and answering before the node
// registers, follow an address change, and are removed after deregistration.
func TestDNSLifecycle(t *testing.T) {
	zone, mgr := newMemDNS()
	f := newFleet(t)
	n := newNode(t, "bbb1")
	addrs := Addresses{PublicIPv4: netip.MustParseAddr("198.51.100.1")}
	var mu sync.Mutex
	current := addrs
	n.start(t, f, Config{Addresses: addrs, FQDN: "bbb1.example.com", DNSProvider: "memory"}, Deps{DNS: mgr,
		Addresses: func(context.Context) (Addresses, error) { mu.Lock(); defer mu.Unlock(); return current, nil }})
	testenv.Eventually(t, 2*time.Second, "registered", func() bool { s, ok := f.server(n.name); return ok && s.Online })
	if got := zone.values("A"); !slices.Equal(got, []string{"198.51.100.1"}) {
		t.Fatalf("A = %v when the node registered", got)
	}
	if got := zone.values("TXT"); len(got) != 1 || !strings.Contains(got[0], "owner=fleet-a") {
		t.Fatalf("ownership TXT = %v", got)
	}
	if st := n.agent.Status(); st.DNS == nil || st.DNS.State != "applied" || !st.DNS.Answering || st.DNS.FQDN != "bbb1.example.com" {
		t.Fatalf("dns status: %+v", st.DNS)
	}

	mu.Lock()
	current.PublicIPv4 = netip.MustParseAddr("198.51.100.2")
	mu.Unlock()
	testenv.Eventually(t, 3*time.Second, "the record follows the new address", func() bool {
		return slices.Equal(zone.values("A"), []string{"198.51.100.2"})
	})

	if err := n.agent.Drain(context.Background(), SourceAdmin); err != nil {
		t.Fatal(err)
	}
	if err := n.exited(t, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	if len(zone.values("A")) != 0 || len(zone.values("TXT")) != 0 {
		t.Fatalf("records left after the drain: A %v TXT %v", zone.values("A"), zone.values("TXT"))
	}
	if _, ok := f.server(n.name); ok {
		t.Fatal("still registered")
	}
}

// TestDNSForeignOwnerStops: a name another fleet owns is not touched and the
// agent stops with an error saying why, before registering.
func TestDNSForeignOwnerStops(t *testing.T) {
	zone, mgr := newMemDNS()
	zone.sets["A"] = dnsupdate.RRset{Name: "bbb1.example.com.", Type: "A", TTL: 60, Values: []string{"192.0.2.9"}}
	zone.sets["TXT"] = dnsupdate.RRset{Name: "bbb1.example.com.", Type: "TXT", TTL: 60, Values: []string{dnsupdate.Owner{ID: "fleet-b", Node: "bbb1"}.TXT()}}
	f := newFleet(t)
	n := newNode(t, "bbb1")
	n.start(t, f, Config{Addresses: Addresses{PublicIPv4: netip.MustParseAddr("198.51.100.1")}}, Deps{DNS: mgr})
	err := n.exited(t, 2*time.Second)
	if !errors.Is(err, dnsupdate.ErrForeignOwner) || !strings.Contains(err.Error(), "fleet-b") {
		t.Fatalf("Run = %v, want the foreign owner named", err)
	}
	if got := zone.values("A"); !slices.Equal(got, []string{"192.0.2.9"}) || zone.applied != 0 {
		t.Fatalf("foreign record touched: %v, %d applies", got, zone.applied)
	}
	if _, ok := f.server(n.name); ok {
		t.Fatal("registered despite the DNS conflict")
	}
}

// TestDNSWaitBeforeRegistering: the node registers only once its name
// answers at the authoritative servers; the loop keeps turning meanwhile
// (the watchdog sees it alive), and after the wait it registers anyway.
func TestDNSWaitBeforeRegistering(t *testing.T) {
	zone, mgr := newMemDNS()
	var mu sync.Mutex
	answering := false
	mgr.Resolve = func(ctx context.Context, server, name string, qtype uint16) ([]string, error) {
		mu.Lock()
		defer mu.Unlock()
		if !answering {
			return nil, nil // propagation still under way
		}
		return zone.resolve(ctx, server, name, qtype)
	}
	f := newFleet(t)
	n := newNode(t, "bbb1")
	n.start(t, f, Config{Addresses: Addresses{PublicIPv4: netip.MustParseAddr("198.51.100.1")}, DNSWait: time.Minute}, Deps{DNS: mgr})
	testenv.Eventually(t, time.Second, "records applied", func() bool { return len(zone.values("A")) == 1 })
	time.Sleep(4 * interval)
	if _, ok := f.server(n.name); ok {
		t.Fatal("registered before the name answered")
	}
	if !n.agent.Healthy() {
		t.Fatal("the loop looks stuck to the watchdog while it waits for DNS")
	}
	mu.Lock()
	answering = true
	mu.Unlock()
	testenv.Eventually(t, 3*time.Second, "registered once the name answers", func() bool { s, ok := f.server(n.name); return ok && s.Online })

	// A zone that never answers: registration after DNSWait, with the error in status.
	_, mgr2 := newMemDNS()
	mgr2.Resolve = func(context.Context, string, string, uint16) ([]string, error) { return nil, nil }
	n2 := newNode(t, "bbb2")
	mgr2.FQDN = "bbb2.example.com"
	n2.start(t, f, Config{Addresses: Addresses{PublicIPv4: netip.MustParseAddr("198.51.100.2")}, DNSWait: 300 * time.Millisecond}, Deps{DNS: mgr2})
	testenv.Eventually(t, 3*time.Second, "registered after the wait", func() bool { s, ok := f.server(n2.name); return ok && s.Online })
	if st := n2.agent.Status(); st.DNS == nil || st.DNS.Answering || st.DNS.LastError == "" {
		t.Fatalf("dns status after the wait: %+v", st.DNS)
	}
}
