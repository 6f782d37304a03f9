package agent

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/dnsupdate"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
	"github.com/bbb-agent/bbb-agent/registrar"
	"github.com/miekg/dns"
)

// bindManager is a DNS manager for one node in a fresh zone of the real
// BIND 9 that testenv runs.
func bindManager(t testing.TB, srv testenv.BindServer, node string) *dnsupdate.Manager {
	t.Helper()
	p, err := dnsupdate.NewRFC2136(dnsupdate.RFC2136Config{Servers: []string{srv.Addr}, Zone: srv.Zone,
		TSIGKeyName: srv.KeyName, TSIGSecret: srv.KeySecret, TSIGAlgorithm: srv.Algorithm})
	if err != nil {
		t.Fatal(err)
	}
	return &dnsupdate.Manager{Provider: p, FQDN: node + "." + srv.Zone, Owner: dnsupdate.Owner{ID: "fleet-a", Node: node},
		WaitTimeout: 5 * time.Second, WaitEvery: 10 * time.Millisecond}
}

// TestDNSAgainstBIND: the agent's records in a real BIND 9 zone: published
// and answering before registration, unchanged by a crash and a restart (no
// duplicate, nothing dropped), gone after the drain; a record of another
// name is untouched throughout.
func TestDNSAgainstBIND(t *testing.T) {
	srv := testenv.Bind(t)
	name := "bbb-bind1"
	fqdn := name + "." + srv.Zone
	ctx := context.Background()
	// Someone else's record in the same zone.
	other := bindManager(t, srv, "mail")
	other.Owner.ID = "mail-team"
	if _, err := other.Ensure(ctx, netip.MustParseAddr("192.0.2.25"), netip.Addr{}); err != nil {
		t.Fatal(err)
	}

	f := newFleet(t)
	n := newNode(t, name)
	addrs := Addresses{PublicIPv4: netip.MustParseAddr("198.51.100.21"), PublicIPv6: netip.MustParseAddr("2001:db8::21")}
	start := func() {
		n.start(t, f, Config{Addresses: addrs, FQDN: fqdn, DNSProvider: "rfc2136"}, Deps{DNS: bindManager(t, srv, name)})
	}
	start()
	testenv.Eventually(t, 3*time.Second, "registered", func() bool { s, ok := f.server(name); return ok && s.Online })
	if got := srv.Dig(t, fqdn, "A"); !slices.Equal(got, []string{"198.51.100.21"}) {
		t.Fatalf("dig A = %v", got)
	}
	if got := srv.Dig(t, fqdn, "AAAA"); !slices.Equal(got, []string{"2001:db8::21"}) {
		t.Fatalf("dig AAAA = %v", got)
	}
	if got := srv.Dig(t, fqdn, "TXT"); len(got) != 1 || !strings.Contains(got[0], "owner=fleet-a") {
		t.Fatalf("dig TXT = %v", got)
	}

	n.cancel() // crash
	<-n.finished
	start() // restart with the same name: finds its own records
	testenv.Eventually(t, 3*time.Second, "registered again", func() bool { return n.agent.State() == Ready })
	if plan, err := bindManager(t, srv, name).Plan(ctx, addrs.PublicIPv4, addrs.PublicIPv6, false); err != nil || !plan.Empty() {
		t.Fatalf("after the restart: %v, %v", plan, err)
	}
	for _, qt := range []string{"A", "AAAA", "TXT"} {
		if got := srv.Dig(t, fqdn, qt); len(got) != 1 {
			t.Fatalf("after the restart %s = %v", qt, got)
		}
	}

	if err := n.agent.Drain(ctx, SourceAdmin); err != nil {
		t.Fatal(err)
	}
	if err := n.exited(t, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, qt := range []string{"A", "AAAA", "TXT"} {
		if got := srv.Dig(t, fqdn, qt); len(got) != 0 {
			t.Fatalf("after the drain %s = %v", qt, got)
		}
	}
	if got := srv.Dig(t, "mail."+srv.Zone, "A"); !slices.Equal(got, []string{"192.0.2.25"}) {
		t.Fatalf("the other name's record changed: %v", got)
	}
}

// BenchmarkAgentStartToDNSAnswerBIND measures the figure: the time
// from an agent's start to its A record answering at a real BIND 9
// (median of b.N fresh nodes).
func BenchmarkAgentStartToDNSAnswerBIND(b *testing.B) {
	srv := testenv.Bind(b)
	var took []time.Duration
	for i := 0; i < b.N; i++ {
		name := "bench" + strings.ToLower(randomSuffix(6))
		m := bindManager(b, srv, name)
		reg := nullRegistrar{}
		a, err := New(Config{Node: name, Role: "turn", Addresses: Addresses{PublicIPv4: netip.MustParseAddr("198.51.100.99")},
			ReportInterval: time.Second, Logger: slog.New(slog.DiscardHandler)}, Deps{Registrar: reg, DNS: m})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		started := time.Now()
		go a.Run(ctx)
		for {
			got, err := dnsupdate.Lookup(ctx, srv.Addr, name+"."+srv.Zone, dns.TypeA)
			if err == nil && len(got) == 1 {
				break
			}
			if time.Since(started) > 10*time.Second {
				cancel()
				b.Fatalf("no answer after 10s: %v", err)
			}
		}
		took = append(took, time.Since(started))
		cancel()
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(took[len(took)-1].Microseconds())/1000, "max-ms")
}

// nullRegistrar accepts everything: for measuring what comes before
// registration.
type nullRegistrar struct{}

func (nullRegistrar) Kind() string { return "null" }
func (nullRegistrar) Register(context.Context, registrar.Registration) (fleet.AdminState, error) {
	return fleet.Enabled, nil
}
func (nullRegistrar) Report(context.Context, registrar.Report) (registrar.Reply, error) {
	return registrar.Reply{State: fleet.Enabled}, nil
}
func (nullRegistrar) Cordon(context.Context) error     { return nil }
func (nullRegistrar) Enable(context.Context) error     { return nil }
func (nullRegistrar) Deregister(context.Context) error { return nil }
func (nullRegistrar) Check(context.Context) error      { return nil }
