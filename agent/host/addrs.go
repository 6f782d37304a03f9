package host

import (
	"fmt"
	"net"
	"net/netip"
)

// Addrs are a host's unicast addresses, in interface order without
// duplicates. Loopback, link-local, multicast and unspecified addresses are
// left out.
type Addrs struct {
	// Public are the globally routable addresses: the candidates for the
	// node's A and AAAA records.
	PublicV4, PublicV6 []netip.Addr
	// Private are RFC 1918, CGNAT (100.64.0.0/10) and ULA (fc00::/7)
	// addresses.
	PrivateV4, PrivateV6 []netip.Addr
}

// cgnat is RFC 6598's shared address space.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// Addresses sorts the addresses of the interfaces in ifaces that are up and
// not loopback into public and private ones. addrsOf lists an interface's
// addresses; for the live host that is (*net.Interface).Addrs, which
// LiveAddresses uses. A cloud instance behind 1:1 NAT (EC2's public IPv4)
// has no public address on any interface.
func Addresses(ifaces []net.Interface, addrsOf func(*net.Interface) ([]net.Addr, error)) (Addrs, error) {
	var a Addrs
	seen := make(map[netip.Addr]bool)
	for i := range ifaces {
		ifc := &ifaces[i]
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := addrsOf(ifc)
		if err != nil {
			return Addrs{}, fmt.Errorf("addresses of interface %s: %w", ifc.Name, err)
		}
		for _, na := range addrs {
			ip, ok := addrOf(na)
			if !ok || !ip.IsGlobalUnicast() || seen[ip] {
				continue
			}
			seen[ip] = true
			private := ip.IsPrivate() || cgnat.Contains(ip)
			switch {
			case ip.Is4() && private:
				a.PrivateV4 = append(a.PrivateV4, ip)
			case ip.Is4():
				a.PublicV4 = append(a.PublicV4, ip)
			case private:
				a.PrivateV6 = append(a.PrivateV6, ip)
			default:
				a.PublicV6 = append(a.PublicV6, ip)
			}
		}
	}
	return a, nil
}

// LiveAddresses is Addresses of the live host's interfaces.
func LiveAddresses() (Addrs, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return Addrs{}, fmt.Errorf("listing network interfaces: %w", err)
	}
	return Addresses(ifaces, (*net.Interface).Addrs)
}

// addrOf is the IP of an interface address, IPv4-mapped IPv6 unmapped.
func addrOf(a net.Addr) (netip.Addr, bool) {
	var ip net.IP
	switch v := a.(type) {
	case *net.IPNet:
		ip = v.IP
	case *net.IPAddr:
		ip = v.IP
	default:
		return netip.Addr{}, false
	}
	addr, ok := netip.AddrFromSlice(ip)
	return addr.Unmap(), ok
}
