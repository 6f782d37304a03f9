package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/bbb-agent/bbb-agent/agent/host"
)

// Addresses are the node's IP addresses: the public ones become its DNS
// records, the private ones are for peers inside the network.
type Addresses struct {
	PublicIPv4  netip.Addr `json:"public_ipv4,omitzero"`
	PublicIPv6  netip.Addr `json:"public_ipv6,omitzero"`
	PrivateIPv4 netip.Addr `json:"private_ipv4,omitzero"`
	// Source says where they came from: configuration, ec2 or interfaces.
	Source string `json:"source"`
}

// MetadataAddresses is what EC2 instance metadata tells about addresses.
type MetadataAddresses interface {
	PublicIPv4(ctx context.Context) (netip.Addr, error)
	LocalIPv4(ctx context.Context) (netip.Addr, error)
	IPv6(ctx context.Context) (netip.Addr, error)
}

// ResolveAddresses finds the node's addresses: explicit configuration
// first, then EC2 instance metadata (when md is not nil: behind 1:1 NAT no
// interface carries the public address), then the host's interfaces.
// Explicit addresses are kept; only what is missing is looked up.
func ResolveAddresses(ctx context.Context, explicit Addresses, md MetadataAddresses, interfaces func() (host.Addrs, error)) (Addresses, error) {
	a := explicit
	a.Source = "configuration"
	if a.PublicIPv4.IsValid() && !a.PublicIPv4.Is4() || a.PublicIPv6.IsValid() && (!a.PublicIPv6.Is6() || a.PublicIPv6.Is4In6()) {
		return a, errors.New("public-ipv4 must be an IPv4 and public-ipv6 an IPv6 address")
	}
	if a.PublicIPv4.IsValid() || a.PublicIPv6.IsValid() {
		return a, nil
	}
	if md != nil {
		a.Source = "ec2"
		if ip, err := md.PublicIPv4(ctx); err == nil {
			a.PublicIPv4 = ip
		}
		if ip, err := md.IPv6(ctx); err == nil {
			a.PublicIPv6 = ip
		}
		if ip, err := md.LocalIPv4(ctx); err == nil {
			a.PrivateIPv4 = ip
		}
		if a.PublicIPv4.IsValid() || a.PublicIPv6.IsValid() {
			return a, nil
		}
	}
	if interfaces == nil {
		return a, errors.New("no public address configured or found: give --public-ipv4 or --public-ipv6")
	}
	found, err := interfaces()
	if err != nil {
		return a, fmt.Errorf("reading the host's addresses: %w", err)
	}
	a.Source = "interfaces"
	if len(found.PublicV4) > 0 {
		a.PublicIPv4 = found.PublicV4[0]
	}
	if len(found.PublicV6) > 0 {
		a.PublicIPv6 = found.PublicV6[0]
	}
	if !a.PrivateIPv4.IsValid() && len(found.PrivateV4) > 0 {
		a.PrivateIPv4 = found.PrivateV4[0]
	}
	if !a.PublicIPv4.IsValid() && !a.PublicIPv6.IsValid() {
		return a, errors.New("no public address on any interface (behind NAT?): give --public-ipv4 or --public-ipv6, or --ec2 on EC2")
	}
	return a, nil
}
