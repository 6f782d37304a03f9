package dnsupdate

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// These tests run the RFC2136 provider against a real BIND 9 (testenv.Bind),
// through the Manager as the agent uses it.

// bindProvider is an RFC2136 provider for the test's zone, signed with the
// zone's hmac-sha256 key; edit changes the configuration first.
func bindProvider(t testing.TB, s testenv.BindServer, edit func(*RFC2136Config)) *RFC2136 {
	t.Helper()
	cfg := RFC2136Config{
		Servers:       []string{s.Addr},
		Zone:          s.Zone,
		TSIGKeyName:   s.KeyName,
		TSIGSecret:    s.KeySecret,
		TSIGAlgorithm: s.Algorithm,
		Timeout:       2 * time.Second,
	}
	if edit != nil {
		edit(&cfg)
	}
	p, err := NewRFC2136(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// bindManager keeps node's records in zone for owner fleet-a.
func bindManager(p Provider, zone, node string) *Manager {
	return &Manager{
		Provider:    p,
		FQDN:        node + "." + zone,
		Owner:       Owner{ID: "fleet-a", Node: node},
		WaitTimeout: 2 * time.Second,
		WaitEvery:   20 * time.Millisecond,
	}
}

// bindWrite sends one UPDATE as another writer would (nsupdate), signed with
// the zone's key; records are in zone-file syntax, each inserted after its
// name and type's RRset is removed.
func bindWrite(t *testing.T, s testenv.BindServer, records ...string) {
	t.Helper()
	m := new(dns.Msg)
	m.SetUpdate(s.Zone)
	for _, text := range records {
		rr, err := dns.NewRR(text)
		if err != nil {
			t.Fatal(err)
		}
		m.RemoveRRset([]dns.RR{rr})
		m.Insert([]dns.RR{rr})
	}
	m.SetTsig(s.KeyName, dns.HmacSHA256, 300, time.Now().Unix())
	c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second, TsigSecret: map[string]string{s.KeyName: s.KeySecret}}
	in, _, err := c.Exchange(m, s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if in.Rcode != dns.RcodeSuccess {
		t.Fatalf("update %q: %s", records, dns.RcodeToString[in.Rcode])
	}
}

// digWithin asks BIND with dig until it answers want, for at most a second.
func digWithin(t *testing.T, s testenv.BindServer, name, qtype string, want ...string) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		got := s.Dig(t, name, qtype)
		slices.Sort(got)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("dig %s %s: %q, want %q", name, qtype, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func lookup(t *testing.T, s testenv.BindServer, name string, qtype uint16) []string {
	t.Helper()
	got, err := Lookup(t.Context(), s.Addr, name, qtype)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func quoted(s string) string { return strconv.Quote(s) }

func TestRFC2136EnsureAndRemove(t *testing.T) {
	s := testenv.Bind(t)
	ctx := t.Context()
	m := bindManager(bindProvider(t, s, nil), s.Zone, "bbb-1")
	name := "bbb-1." + s.Zone
	ours := quoted(m.Owner.TXT())
	// Records that are not ours: another name, and a TXT at our name whose
	// value is two character strings.
	const spf = `"v=spf1 ip4:192.0.2.0/24" " -all"`
	bindWrite(t, s, "other."+s.Zone+" 300 IN A 192.0.2.99", name+" 300 IN TXT "+spf)
	unrelated := func(t *testing.T) {
		t.Helper()
		digWithin(t, s, "other."+s.Zone, "A", "192.0.2.99")
	}

	t.Run("creates A and ownership TXT", func(t *testing.T) {
		p, err := m.Ensure(ctx, v4, netip.Addr{})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Changes) != 2 {
			t.Errorf("plan:\n%s\nwant a create of A and an update of TXT", p)
		}
		digWithin(t, s, name, "A", v4.String())
		digWithin(t, s, name, "TXT", ours, spf)
		if got := lookup(t, s, name, dns.TypeA); !slices.Equal(got, []string{v4.String()}) {
			t.Errorf("Lookup %s A: %v", name, got)
		}
		if got := lookup(t, s, name, dns.TypeTXT); !slices.Contains(got, m.Owner.TXT()) {
			t.Errorf("Lookup %s TXT: %v", name, got)
		}
		unrelated(t)
	})

	t.Run("again changes nothing", func(t *testing.T) {
		p, err := m.Ensure(ctx, v4, netip.Addr{})
		if err != nil || !p.Empty() {
			t.Fatalf("plan:\n%s\nerr %v", p, err)
		}
	})

	t.Run("address change updates", func(t *testing.T) {
		p, err := m.Ensure(ctx, v4new, v6)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Changes) != 2 || p.Changes[0].Action != Update || p.Changes[1].Action != Create {
			t.Errorf("plan:\n%s\nwant an update of A and a create of AAAA", p)
		}
		digWithin(t, s, name, "A", v4new.String())
		digWithin(t, s, name, "AAAA", v6.String())
		digWithin(t, s, name, "TXT", ours, spf)
	})

	t.Run("remove deletes ours only", func(t *testing.T) {
		if _, err := m.Remove(ctx); err != nil {
			t.Fatal(err)
		}
		digWithin(t, s, name, "A")
		digWithin(t, s, name, "AAAA")
		digWithin(t, s, name, "TXT", spf) // split as it was
		unrelated(t)
		if _, err := m.Remove(ctx); err != nil {
			t.Fatalf("second remove: %v", err)
		}
		digWithin(t, s, name, "TXT", spf)
	})
}

func TestRFC2136Ownership(t *testing.T) {
	s := testenv.Bind(t)
	ctx := t.Context()
	p := bindProvider(t, s, nil)

	t.Run("a name another owner holds is not touched", func(t *testing.T) {
		name := "taken." + s.Zone
		theirs := quoted(Owner{ID: "fleet-b", Node: "taken"}.TXT())
		bindWrite(t, s, name+" 60 IN A 192.0.2.50", name+" 60 IN TXT "+theirs)
		m := bindManager(p, s.Zone, "taken")
		for _, op := range []func() error{
			func() error { _, err := m.Ensure(ctx, v4, netip.Addr{}); return err },
			func() error { _, err := m.Remove(ctx); return err },
		} {
			err := op()
			if !errors.Is(err, ErrForeignOwner) || !strings.Contains(err.Error(), `"fleet-b"`) {
				t.Errorf("err = %v, want ErrForeignOwner naming fleet-b", err)
			}
		}
		digWithin(t, s, name, "A", "192.0.2.50")
		digWithin(t, s, name, "TXT", theirs)
	})

	t.Run("records without ownership TXT are refused, then taken over", func(t *testing.T) {
		name := "manual." + s.Zone
		bindWrite(t, s, name+" 300 IN A 192.0.2.60")
		m := bindManager(p, s.Zone, "manual")
		if _, err := m.Ensure(ctx, v4, netip.Addr{}); !errors.Is(err, ErrUnowned) {
			t.Fatalf("err = %v, want ErrUnowned", err)
		}
		digWithin(t, s, name, "A", "192.0.2.60")
		digWithin(t, s, name, "TXT")

		m.Takeover = true
		if _, err := m.Ensure(ctx, v4, netip.Addr{}); err != nil {
			t.Fatal(err)
		}
		digWithin(t, s, name, "A", v4.String())
		digWithin(t, s, name, "TXT", quoted(m.Owner.TXT()))
	})
}

func TestRFC2136Errors(t *testing.T) {
	s := testenv.Bind(t)
	ctx := t.Context()
	tests := []struct {
		name string
		edit func(*RFC2136Config)
		is   error
		want []string // in the message
	}{
		{"unknown key name", func(c *RFC2136Config) { c.TSIGKeyName = "nobody-knows." },
			ErrTSIGRejected, []string{"nobody-knows", "BADKEY", "--dns-tsig-key-name", "--dns-tsig-secret"}},
		{"wrong secret", func(c *RFC2136Config) { c.TSIGSecret = s.Other.Secret },
			ErrTSIGRejected, []string{strings.TrimSuffix(s.KeyName, "."), "BADSIG", "--dns-tsig-secret"}},
		{"wrong algorithm", func(c *RFC2136Config) { c.TSIGAlgorithm = "hmac-sha512" },
			ErrTSIGRejected, []string{"hmac-sha512", "--dns-tsig-algorithm"}},
		{"key not allowed to update the zone", func(c *RFC2136Config) {
			c.TSIGKeyName, c.TSIGSecret = s.Other.Name, s.Other.Secret
		}, ErrTSIGRejected, []string{strings.TrimSuffix(s.Other.Name, "."), "REFUSED", "may not update zone " + s.Zone}},
		{"unsigned", func(c *RFC2136Config) { c.TSIGKeyName, c.TSIGSecret = "", "" },
			nil, []string{"unsigned update", "--dns-tsig-key-name"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			node := "key" + strconv.Itoa(i)
			m := bindManager(bindProvider(t, s, tt.edit), s.Zone, node)
			_, err := m.Ensure(ctx, v4, netip.Addr{})
			t.Log(err)
			if err == nil || tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("err = %v, want %v", err, tt.is)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			for _, secret := range []string{s.KeySecret, s.Other.Secret} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q shows a secret", err)
				}
			}
			digWithin(t, s, node+"."+s.Zone, "A")
		})
	}

	t.Run("zone the server does not serve", func(t *testing.T) {
		const zone = "not-served.test."
		p := bindProvider(t, s, func(c *RFC2136Config) { c.Zone = zone })
		want := "server " + s.Addr + " is not authoritative for zone " + zone
		_, err := bindManager(p, zone, "bbb-1").Ensure(ctx, v4, netip.Addr{})
		t.Log(err)
		if !errors.Is(err, ErrNotAuthoritative) || !strings.Contains(err.Error(), want) {
			t.Errorf("Ensure: err = %v, want %q", err, want)
		}
		// The update alone, without reading first.
		plan := Plan{Name: "bbb-1." + zone, Changes: []Change{{Action: Create,
			New: &RRset{Name: "bbb-1." + zone, Type: TypeA, TTL: 60, Values: []string{v4.String()}}}}}
		err = p.Apply(ctx, plan)
		t.Log(err)
		if !errors.Is(err, ErrNotAuthoritative) || !strings.Contains(err.Error(), want) {
			t.Errorf("Apply: err = %v, want %q", err, want)
		}
	})

	t.Run("name outside the zone", func(t *testing.T) {
		p := bindProvider(t, s, nil)
		_, err := bindManager(p, "elsewhere.test.", "bbb-1").Ensure(ctx, v4, netip.Addr{})
		if err == nil || !strings.Contains(err.Error(), "bbb-1.elsewhere.test. is not in zone "+s.Zone) {
			t.Errorf("err = %v", err)
		}
	})

	t.Run("no server reachable", func(t *testing.T) {
		dead := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
		p := bindProvider(t, s, func(c *RFC2136Config) { c.Servers = []string{dead} })
		_, err := bindManager(p, s.Zone, "bbb-1").Ensure(ctx, v4, netip.Addr{})
		if err == nil || !strings.Contains(err.Error(), dead) {
			t.Errorf("err = %v, want one naming %s", err, dead)
		}
	})
}

// A writer that changes the records between the plan and its apply makes
// the apply fail as a whole; its records stay.
func TestRFC2136ConcurrentWriter(t *testing.T) {
	s := testenv.Bind(t)
	ctx := t.Context()
	p := bindProvider(t, s, nil)

	t.Run("update", func(t *testing.T) {
		m := bindManager(p, s.Zone, "race-update")
		name := "race-update." + s.Zone
		if _, err := m.Ensure(ctx, v4, netip.Addr{}); err != nil {
			t.Fatal(err)
		}
		plan, err := m.Plan(ctx, v4new, v6, false)
		if err != nil {
			t.Fatal(err)
		}
		bindWrite(t, s, name+" 60 IN A 192.0.2.77")
		err = p.Apply(ctx, plan)
		if !errors.Is(err, ErrPrerequisiteFailed) || !strings.Contains(err.Error(), "plan again") {
			t.Fatalf("Apply of\n%s\nerr = %v, want ErrPrerequisiteFailed", plan, err)
		}
		digWithin(t, s, name, "A", "192.0.2.77")
		digWithin(t, s, name, "AAAA") // nothing of the plan was applied

		// A new plan starts from what is there now.
		if _, err := m.Ensure(ctx, v4new, netip.Addr{}); err != nil {
			t.Fatal(err)
		}
		digWithin(t, s, name, "A", v4new.String())
	})

	t.Run("create", func(t *testing.T) {
		m := bindManager(p, s.Zone, "race-create")
		name := "race-create." + s.Zone
		plan, err := m.Plan(ctx, v4, netip.Addr{}, false)
		if err != nil {
			t.Fatal(err)
		}
		bindWrite(t, s, name+" 60 IN A 192.0.2.78")
		if err := p.Apply(ctx, plan); !errors.Is(err, ErrPrerequisiteFailed) {
			t.Fatalf("Apply of\n%s\nerr = %v, want ErrPrerequisiteFailed", plan, err)
		}
		digWithin(t, s, name, "A", "192.0.2.78")
		digWithin(t, s, name, "TXT")
		if _, err := m.Ensure(ctx, v4, netip.Addr{}); !errors.Is(err, ErrUnowned) {
			t.Fatalf("Ensure after the race: err = %v, want ErrUnowned", err)
		}
	})

	t.Run("delete", func(t *testing.T) {
		m := bindManager(p, s.Zone, "race-delete")
		name := "race-delete." + s.Zone
		if _, err := m.Ensure(ctx, v4, netip.Addr{}); err != nil {
			t.Fatal(err)
		}
		plan, err := m.Plan(ctx, netip.Addr{}, netip.Addr{}, true)
		if err != nil {
			t.Fatal(err)
		}
		bindWrite(t, s, name+" 60 IN TXT "+quoted(Owner{ID: "fleet-b", Node: "race-delete"}.TXT()))
		if err := p.Apply(ctx, plan); !errors.Is(err, ErrPrerequisiteFailed) {
			t.Fatalf("Apply of\n%s\nerr = %v, want ErrPrerequisiteFailed", plan, err)
		}
		digWithin(t, s, name, "A", v4.String())
	})
}

func TestRFC2136Failover(t *testing.T) {
	s := testenv.Bind(t)
	ctx := t.Context()
	dead := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)) // nothing listens
	p := bindProvider(t, s, func(c *RFC2136Config) { c.Servers = []string{dead, s.Addr} })
	m := bindManager(p, s.Zone, "failover")
	name := "failover." + s.Zone

	if _, err := m.Ensure(ctx, v4, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	digWithin(t, s, name, "A", v4.String())
	if got, err := p.Authoritative(ctx); err != nil || !slices.Equal(got, []string{s.Addr}) {
		t.Errorf("Authoritative = %v, %v; want the live server only", got, err)
	}
	if _, err := m.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	digWithin(t, s, name, "A")

	// A refusal is an answer: the next server is not asked.
	refusing := bindProvider(t, s, func(c *RFC2136Config) {
		c.Servers = []string{s.Addr, dead}
		c.TSIGKeyName, c.TSIGSecret = s.Other.Name, s.Other.Secret
	})
	_, err := bindManager(refusing, s.Zone, "failover").Ensure(ctx, v4, netip.Addr{})
	if !errors.Is(err, ErrTSIGRejected) || strings.Contains(err.Error(), dead) {
		t.Errorf("err = %v, want ErrTSIGRejected from %s alone", err, s.Addr)
	}
}

func TestRFC2136HMACSHA1(t *testing.T) {
	s := testenv.Bind(t)
	p := bindProvider(t, s, func(c *RFC2136Config) {
		c.TSIGKeyName, c.TSIGSecret, c.TSIGAlgorithm = s.SHA1.Name, s.SHA1.Secret, s.SHA1.Algorithm
	})
	m := bindManager(p, s.Zone, "old-server")
	if _, err := m.Ensure(t.Context(), v4, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	digWithin(t, s, "old-server."+s.Zone, "A", v4.String())
}

func TestNewRFC2136(t *testing.T) {
	const secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQ="
	ok := RFC2136Config{Servers: []string{"192.0.2.1:5353", "ns2.example.com"}, Zone: "Example.COM",
		TSIGKeyName: "Agent-Key", TSIGSecret: secret}
	p, err := NewRFC2136(ok)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.servers, []string{"192.0.2.1:5353", "ns2.example.com:53"}) || p.zone != "example.com." ||
		p.key != "agent-key." || p.alg != dns.HmacSHA256 || p.timeout != DefaultRFC2136Timeout {
		t.Errorf("provider %+v", p)
	}

	tests := []struct {
		name string
		edit func(*RFC2136Config)
		want string
	}{
		{"no server", func(c *RFC2136Config) { c.Servers = nil }, "--dns-server"},
		{"no zone", func(c *RFC2136Config) { c.Zone = "" }, "--dns-zone"},
		{"key without secret", func(c *RFC2136Config) { c.TSIGSecret = "" }, "both"},
		{"secret not base64", func(c *RFC2136Config) { c.TSIGSecret = "not base64!" }, "not base64"},
		{"hmac-md5", func(c *RFC2136Config) { c.TSIGAlgorithm = "hmac-md5" }, "hmac-sha256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			cfg.Servers = slices.Clone(ok.Servers)
			tt.edit(&cfg)
			_, err := NewRFC2136(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "not base64!") {
				t.Errorf("error %q shows the secret", err)
			}
		})
	}
	for _, alg := range []string{"hmac-sha1", "HMAC-SHA384.", "hmac-sha512"} {
		cfg := ok
		cfg.TSIGAlgorithm = alg
		if _, err := NewRFC2136(cfg); err != nil {
			t.Errorf("%s: %v", alg, err)
		}
	}
}

// BenchmarkEnsureVisibleBIND measures what a node's start waits for: from
// a new provider to its record answering at BIND (Manager.Ensure, which
// applies the plan and waits until the server answers the address), each
// run for a fresh name, with the agent's default wait. It reports the
// median and the slowest run.
func BenchmarkEnsureVisibleBIND(b *testing.B) {
	s := testenv.Bind(b)
	var ms []float64
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		p := bindProvider(b, s, nil)
		m := &Manager{Provider: p, FQDN: fmt.Sprintf("bench-%d.%s", i, s.Zone), Owner: Owner{ID: "fleet-a", Node: "bench"}}
		if _, err := m.Ensure(b.Context(), v4, netip.Addr{}); err != nil {
			b.Fatal(err)
		}
		ms = append(ms, float64(time.Since(start).Microseconds())/1000)
	}
	slices.Sort(ms)
	b.ReportMetric(ms[len(ms)/2], "median-ms")
	b.ReportMetric(ms[len(ms)-1], "max-ms")
	b.ReportMetric(float64(len(ms)), "runs")
}
