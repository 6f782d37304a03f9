package agent

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/bbb-agent/bbb-agent/agent/host"
)

type fakeMetadata struct{ public, local, v6 string }

func addrOrErr(s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, errors.New("404")
	}
	return netip.ParseAddr(s)
}

func (f fakeMetadata) PublicIPv4(context.Context) (netip.Addr, error) { return addrOrErr(f.public) }
func (f fakeMetadata) LocalIPv4(context.Context) (netip.Addr, error)  { return addrOrErr(f.local) }
func (f fakeMetadata) IPv6(context.Context) (netip.Addr, error)       { return addrOrErr(f.v6) }

func TestResolveAddresses(t *testing.T) {
	ifaces := func() (host.Addrs, error) {
		return host.Addrs{PublicV4: []netip.Addr{netip.MustParseAddr("198.51.100.7")}, PrivateV4: []netip.Addr{netip.MustParseAddr("10.0.0.7")},
			PublicV6: []netip.Addr{netip.MustParseAddr("2001:db8::7")}}, nil
	}
	natted := func() (host.Addrs, error) {
		return host.Addrs{PrivateV4: []netip.Addr{netip.MustParseAddr("10.0.0.7")}}, nil
	}
	tests := []struct {
		name     string
		explicit Addresses
		md       MetadataAddresses
		ifaces   func() (host.Addrs, error)
		want     string // public v4 / v6 / private v4 @ source
		err      string
	}{
		{"configured wins", Addresses{PublicIPv4: netip.MustParseAddr("203.0.113.1")}, fakeMetadata{public: "192.0.2.9"}, ifaces, "203.0.113.1//@configuration", ""},
		{"ec2 behind NAT", Addresses{}, fakeMetadata{public: "192.0.2.9", local: "10.1.2.3"}, natted, "192.0.2.9//10.1.2.3@ec2", ""},
		{"ec2 IPv6 only", Addresses{}, fakeMetadata{v6: "2001:db8::9"}, natted, "/2001:db8::9/@ec2", ""},
		{"interfaces", Addresses{}, nil, ifaces, "198.51.100.7/2001:db8::7/10.0.0.7@interfaces", ""},
		{"ec2 without public address falls back", Addresses{}, fakeMetadata{local: "10.1.2.3"}, ifaces, "198.51.100.7/2001:db8::7/10.1.2.3@interfaces", ""},
		{"nothing public", Addresses{}, nil, natted, "", "no public address"},
		{"v6 given as v4", Addresses{PublicIPv4: netip.MustParseAddr("2001:db8::1")}, nil, ifaces, "", "must be an IPv4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := ResolveAddresses(context.Background(), tt.explicit, tt.md, tt.ifaces)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := str(a.PublicIPv4) + "/" + str(a.PublicIPv6) + "/" + str(a.PrivateIPv4) + "@" + a.Source
			if got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func str(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
