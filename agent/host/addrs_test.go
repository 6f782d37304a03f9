package host

import (
	"errors"
	"net"
	"net/netip"
	"reflect"
	"testing"
)

// fakeInterfaces are interfaces with addresses given as prefixes.
type fakeInterfaces map[string][]string

func (f fakeInterfaces) addrsOf(ifc *net.Interface) ([]net.Addr, error) {
	var addrs []net.Addr
	for _, s := range f[ifc.Name] {
		p := netip.MustParsePrefix(s)
		addrs = append(addrs, &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())})
	}
	return addrs, nil
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func TestAddresses(t *testing.T) {
	up := net.FlagUp | net.FlagBroadcast | net.FlagMulticast
	ifaces := []net.Interface{
		{Index: 1, Name: "lo", Flags: net.FlagUp | net.FlagLoopback},
		{Index: 2, Name: "eth0", Flags: up},
		{Index: 3, Name: "eth1", Flags: up},
		{Index: 4, Name: "eth2", Flags: net.FlagBroadcast}, // down
		{Index: 5, Name: "tailscale0", Flags: up},
	}
	f := fakeInterfaces{
		"lo":   {"127.0.0.1/8", "::1/128"},
		"eth0": {"203.0.113.10/24", "fe80::1/64", "2001:db8::10/64", "169.254.3.4/16", "10.0.0.5/8"},
		"eth1": {"192.168.1.20/24", "172.16.5.5/12", "fd00::20/64", "198.51.100.7/24", "::ffff:198.51.100.8/120"},
		"eth2": {"198.51.100.99/24"},
		// tailscale: CGNAT and a ULA; 203.0.113.10 again is no duplicate.
		"tailscale0": {"100.101.102.103/32", "fd7a:115c:a1e0::1/128", "203.0.113.10/32"},
	}
	got, err := Addresses(ifaces, f.addrsOf)
	if err != nil {
		t.Fatal(err)
	}
	want := Addrs{
		PublicV4:  addrs("203.0.113.10", "198.51.100.7", "198.51.100.8"),
		PublicV6:  addrs("2001:db8::10"),
		PrivateV4: addrs("10.0.0.5", "192.168.1.20", "172.16.5.5", "100.101.102.103"),
		PrivateV6: addrs("fd00::20", "fd7a:115c:a1e0::1"),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Addresses:\n got %+v\nwant %+v", got, want)
	}
}

func TestAddressesError(t *testing.T) {
	failed := errors.New("netlink: permission denied")
	_, err := Addresses([]net.Interface{{Name: "eth0", Flags: net.FlagUp}}, func(*net.Interface) ([]net.Addr, error) {
		return nil, failed
	})
	if !errors.Is(err, failed) || err.Error() != "addresses of interface eth0: netlink: permission denied" {
		t.Errorf("error = %v", err)
	}
}
