package agent

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/agent/ec2"
	"github.com/bbb-agent/bbb-agent/dnsupdate"
	r53emu "github.com/bbb-agent/bbb-agent/internal/emulate/route53"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// TestRoute53PendingKeepsReporting: after an address change, Route53
// accepts the new record but never reports it INSYNC; the agent moves the
// record, keeps reporting every interval throughout (nothing waits for
// INSYNC inside the loop, so the watchdog never starves), and says in its
// status that the name does not answer yet.
func TestRoute53PendingKeepsReporting(t *testing.T) {
	emu := r53emu.New()
	hs := httptest.NewServer(emu)
	t.Cleanup(hs.Close)
	zone := emu.AddZone("example.com", false)
	emu.SetPendingPolls(0) // in sync at once until the address changes
	// The provider's own defaults: no shortened waits.
	p, err := dnsupdate.NewRoute53(context.Background(), dnsupdate.Route53Config{
		AWS: ec2.StaticConfig(hs.URL, "eu-central-1", "AKIDEMULATION", "emulation-secret"), HostedZoneID: zone.ID,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	mgr := &dnsupdate.Manager{Provider: p, FQDN: "bbb1.example.com", Owner: dnsupdate.Owner{ID: "fleet-a", Node: "bbb1"},
		Resolve: emu.Resolver(), WaitTimeout: time.Second, WaitEvery: 10 * time.Millisecond}

	f := newFleet(t)
	const ival = 200 * time.Millisecond // offline after 3 missed: 600 ms
	n := newNode(t, "bbb1")
	addrs := Addresses{PublicIPv4: netip.MustParseAddr("198.51.100.1")}
	var mu sync.Mutex
	current := addrs
	n.start(t, f, Config{ReportInterval: ival, Addresses: addrs, FQDN: "bbb1.example.com", DNSProvider: "route53"}, Deps{DNS: mgr,
		Addresses: func(context.Context) (Addresses, error) { mu.Lock(); defer mu.Unlock(); return current, nil }})
	n.waitReporting(t, f, 5*time.Second)
	stillReporting := func() { t.Helper(); n.stillReporting(t, f, ival, "Route53 was PENDING") }
	emu.SetPendingPolls(r53emu.PendingForever)
	mu.Lock()
	current.PublicIPv4 = netip.MustParseAddr("198.51.100.2")
	mu.Unlock()
	testenv.Eventually(t, 5*time.Second, "Route53 holds the new address", func() bool {
		stillReporting()
		for _, rr := range emu.RRsets(zone.ID) {
			if rr.Type == "A" && slices.Equal(rr.Values, []string{"198.51.100.2"}) {
				return true
			}
		}
		return false
	})
	testenv.Eventually(t, 5*time.Second, "the status says the name does not answer the new address", func() bool {
		stillReporting()
		st := n.agent.Status().DNS
		return st != nil && st.State == dnsApplied && !st.Answering && st.LastError != ""
	})
	first := n.agent.Status().LastReportAt
	testenv.Eventually(t, 5*time.Second, "five more reports", func() bool {
		stillReporting()
		return n.agent.Status().LastReportAt.Sub(first) >= 5*ival
	})
	if !n.agent.Healthy() {
		t.Fatal("the watchdog would restart an agent that is reporting")
	}
}
