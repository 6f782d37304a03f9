package turn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
)

// Resolver is the part of net.Resolver discovery uses.
type Resolver interface {
	LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// Discover finds the TURN servers a DNS name stands for, for fleets whose
// balancer does not name them: the SRV records _turn._udp, _turn._tcp and
// _turns._tcp of name (RFC 7065), else, when name itself resolves (one name
// with several A records), turn:name:3478. The agent probes each candidate
// before BBB is pointed at it.
func Discover(ctx context.Context, r Resolver, name string) ([]string, error) {
	name = strings.TrimSuffix(strings.TrimSpace(name), ".")
	if name == "" {
		return nil, errors.New("no TURN discovery name")
	}
	var uris []string
	for _, q := range []struct{ service, proto, scheme, suffix string }{
		{"turn", "udp", "turn", ""},
		{"turn", "tcp", "turn", "?transport=tcp"},
		{"turns", "tcp", "turns", "?transport=tcp"},
	} {
		_, srvs, err := r.LookupSRV(ctx, q.service, q.proto, name)
		if err != nil {
			continue // no such SRV record: the next kind, or the plain name
		}
		for _, s := range srvs {
			target := strings.TrimSuffix(s.Target, ".")
			if target == "" {
				continue // "." means the service is not offered
			}
			uris = append(uris, fmt.Sprintf("%s:%s:%d%s", q.scheme, target, s.Port, q.suffix))
		}
	}
	if len(uris) == 0 {
		addrs, err := r.LookupHost(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("TURN discovery: %s has no _turn/_turns SRV records and does not resolve: %w", name, err)
		}
		if len(addrs) > 0 {
			uris = append(uris, "turn:"+name+":3478")
		}
	}
	slices.Sort(uris)
	return slices.Compact(uris), nil
}
