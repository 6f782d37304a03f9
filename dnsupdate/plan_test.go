package dnsupdate

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

var (
	us    = Owner{ID: "fleet-a", Node: "bbb-abc123"}
	v4    = netip.MustParseAddr("198.51.100.10")
	v4new = netip.MustParseAddr("198.51.100.11")
	v6    = netip.MustParseAddr("2001:db8::10")
)

const fqdn = "bbb-abc123.example.com."

func rr(typ string, ttl uint32, values ...string) RRset {
	return RRset{Name: fqdn, Type: typ, TTL: ttl, Values: values}
}

func TestDesired(t *testing.T) {
	tests := []struct {
		name   string
		v4, v6 netip.Addr
		want   []string
		err    string
	}{
		{"IPv4 only", v4, netip.Addr{}, []string{"A 198.51.100.10", "TXT " + us.TXT()}, ""},
		{"IPv6 only", netip.Addr{}, v6, []string{"AAAA 2001:db8::10", "TXT " + us.TXT()}, ""},
		{"both", v4, v6, []string{"A 198.51.100.10", "AAAA 2001:db8::10", "TXT " + us.TXT()}, ""},
		{"none", netip.Addr{}, netip.Addr{}, nil, "no address"},
		{"swapped", v6, netip.Addr{}, nil, "not an IPv4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Desired("BBB-ABC123.Example.COM", tt.v4, tt.v6, 0, us)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var short []string
			for _, r := range got {
				if r.Name != fqdn || r.TTL != DefaultTTL {
					t.Fatalf("record %v", r)
				}
				short = append(short, r.Type+" "+strings.Join(r.Values, ","))
			}
			if strings.Join(short, "|") != strings.Join(tt.want, "|") {
				t.Fatalf("got %v, want %v", short, tt.want)
			}
		})
	}
}

func TestCompute(t *testing.T) {
	ours := rr(TypeTXT, 60, us.TXT())
	theirs := rr(TypeTXT, 60, Owner{ID: "fleet-b", Node: "x"}.TXT())
	tests := []struct {
		name     string
		current  []RRset
		v4, v6   netip.Addr
		remove   bool
		takeover bool
		want     []string // Change.String()s
		err      error
	}{
		{"fresh name, IPv4", nil, v4, netip.Addr{}, false, false,
			[]string{"create " + fqdn + " 60 A 198.51.100.10", "create " + fqdn + " 60 TXT " + us.TXT()}, nil},
		{"fresh name, both", nil, v4, v6, false, false,
			[]string{"create " + fqdn + " 60 A 198.51.100.10", "create " + fqdn + " 60 AAAA 2001:db8::10", "create " + fqdn + " 60 TXT " + us.TXT()}, nil},
		{"up to date (restart after a crash)", []RRset{rr(TypeA, 60, "198.51.100.10"), ours}, v4, netip.Addr{}, false, false, nil, nil},
		{"IP change", []RRset{rr(TypeA, 60, "198.51.100.10"), ours}, v4new, netip.Addr{}, false, false,
			[]string{"update " + fqdn + " 60 A 198.51.100.10 -> " + fqdn + " 60 A 198.51.100.11"}, nil},
		{"IPv6 dropped", []RRset{rr(TypeA, 60, "198.51.100.10"), rr(TypeAAAA, 60, "2001:db8::10"), ours}, v4, netip.Addr{}, false, false,
			[]string{"delete " + fqdn + " 60 AAAA 2001:db8::10"}, nil},
		{"remove ours", []RRset{rr(TypeA, 60, "198.51.100.10"), ours}, netip.Addr{}, netip.Addr{}, true, false,
			[]string{"delete " + fqdn + " 60 A 198.51.100.10", "delete " + fqdn + " 60 TXT " + us.TXT()}, nil},
		{"remove keeps a foreign TXT value", []RRset{rr(TypeA, 60, "198.51.100.10"), rr(TypeTXT, 60, us.TXT(), "v=spf1 -all")}, netip.Addr{}, netip.Addr{}, true, false,
			[]string{"delete " + fqdn + " 60 A 198.51.100.10", "update " + fqdn + " 60 TXT " + us.TXT() + " v=spf1 -all -> " + fqdn + " 60 TXT v=spf1 -all"}, nil},
		{"remove when only a foreign TXT is left", []RRset{rr(TypeTXT, 300, "v=spf1 -all")}, netip.Addr{}, netip.Addr{}, true, false, nil, nil},
		{"another owner", []RRset{rr(TypeA, 60, "192.0.2.1"), theirs}, v4, netip.Addr{}, false, false, nil, ErrForeignOwner},
		{"another owner, remove", []RRset{rr(TypeA, 60, "192.0.2.1"), theirs}, netip.Addr{}, netip.Addr{}, true, false, nil, ErrForeignOwner},
		{"unowned record", []RRset{rr(TypeA, 300, "192.0.2.1")}, v4, netip.Addr{}, false, false, nil, ErrUnowned},
		{"takeover of an unowned record", []RRset{rr(TypeA, 300, "192.0.2.1")}, v4, netip.Addr{}, false, true,
			[]string{"update " + fqdn + " 300 A 192.0.2.1 -> " + fqdn + " 60 A 198.51.100.10", "create " + fqdn + " 60 TXT " + us.TXT()}, nil},
		{"takeover from another owner", []RRset{rr(TypeA, 60, "192.0.2.1"), theirs}, v4, netip.Addr{}, false, true,
			[]string{"update " + fqdn + " 60 A 192.0.2.1 -> " + fqdn + " 60 A 198.51.100.10", "update " + fqdn + " 60 TXT " + theirs.Values[0] + " -> " + fqdn + " 60 TXT " + us.TXT()}, nil},
		{"only a foreign TXT at the name", []RRset{rr(TypeTXT, 300, "google-site-verification=x")}, v4, netip.Addr{}, false, false,
			[]string{"create " + fqdn + " 60 A 198.51.100.10", "update " + fqdn + " 300 TXT google-site-verification=x -> " + fqdn + " 60 TXT " + us.TXT() + " google-site-verification=x"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var desired []RRset
			if !tt.remove {
				var err error
				if desired, err = Desired(fqdn, tt.v4, tt.v6, 60, us); err != nil {
					t.Fatal(err)
				}
			}
			p, err := Compute(fqdn, tt.current, desired, us, tt.takeover)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			var got []string
			for _, c := range p.Changes {
				got = append(got, c.String())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Fatalf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}
