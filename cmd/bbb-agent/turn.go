package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/bbb-agent/bbb-agent/agent"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/systemd"
	"github.com/bbb-agent/bbb-agent/turn"
	"github.com/urfave/cli/v2"
)

// turnFlags are the TURN flags of `bbb-agent run`.
func turnFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "turn-secret", Category: catTURN, EnvVars: env("TURN_SECRET"), Usage: "coturn's static-auth-secret, the same on every TURN and BBB node"},
		&cli.StringSliceFlag{Name: "turn-uri", Category: catTURN, EnvVars: env("TURN_URI"), Usage: "role turn: what this node offers, e.g. turn:turn1.example.com:3478 or turns:turn1.example.com:443?transport=tcp (repeatable)"},
		&cli.StringFlag{Name: "turn-probe-uri", Category: catTURN, EnvVars: env("TURN_PROBE_URI"), Usage: "role turn: the URI the node probes itself through (default: the first --turn-uri; e.g. turn:127.0.0.1:3478 behind NAT)"},
		&cli.StringFlag{Name: "turn-stun-xml", Category: catTURN, Value: turn.DefaultPath, EnvVars: env("TURN_STUN_XML"), Usage: "role bbb: the file bbb-web reads its TURN servers from"},
		&cli.DurationFlag{Name: "turn-ttl", Category: catTURN, Value: turn.DefaultTTL, EnvVars: env("TURN_TTL"), Usage: "role bbb: how long the TURN credentials BBB hands out last"},
		&cli.StringFlag{Name: "turn-dns-name", Category: catTURN, EnvVars: env("TURN_DNS_NAME"), Usage: "role bbb: find TURN servers in DNS (SRV _turn._udp/_turns._tcp, or the name's A records) when the balancer names none"},
	}
}

// turnSettings are a node's checked TURN settings.
type turnSettings struct {
	secret string
	// uris are what a TURN node offers; probe is the one it probes itself
	// through.
	uris  []string
	probe turn.URI
}

// turnConfig checks the TURN settings of a node of role.
func turnConfig(c *cli.Context, role fleet.Role) (turnSettings, error) {
	s := turnSettings{secret: c.String("turn-secret")}
	if role != fleet.RoleTURN {
		return s, nil
	}
	s.uris = c.StringSlice("turn-uri")
	if len(s.uris) == 0 {
		return s, fmt.Errorf("role turn: give %s, what this node offers (e.g. turn:turn1.example.com:3478)", setting("turn-uri"))
	}
	for _, u := range s.uris {
		if _, err := turn.ParseURI(u); err != nil {
			return s, fmt.Errorf("turn-uri: %w", err)
		}
	}
	if s.secret == "" {
		return s, fmt.Errorf("role turn: give %s (coturn's static-auth-secret): the node probes itself with it", setting("turn-secret"))
	}
	probeURI := c.String("turn-probe-uri")
	if probeURI == "" {
		probeURI = s.uris[0]
	}
	var err error
	if s.probe, err = turn.ParseURI(probeURI); err != nil {
		return s, fmt.Errorf("turn-probe-uri: %w", err)
	}
	return s, nil
}

// wireTURN adds the TURN parts to the agent: a TURN node offers its URIs
// and probes itself; a BBB node keeps turn-stun-servers.xml.
func wireTURN(c *cli.Context, n *node, cfg *agent.Config, deps *agent.Deps, log *slog.Logger) {
	secret := n.turn.secret
	switch n.role {
	case fleet.RoleTURN:
		pu := n.turn.probe
		cfg.TURNURIs = n.turn.uris
		deps.SelfProbe = func(ctx context.Context) error {
			res := turn.Probe(ctx, pu, secret, turn.WithTimeout(3*time.Second))
			if !res.OK() {
				return res.Err
			}
			return nil
		}
	case fleet.RoleBBB:
		if secret == "" {
			log.Info("no --turn-secret: turn-stun-servers.xml is left to the operator")
			return
		}
		deps.TURN = &turn.Manager{Path: c.String("turn-stun-xml"), Secret: secret, TTL: c.Duration("turn-ttl"),
			Restarter: systemd.Units{}, Log: log}
		if name := c.String("turn-dns-name"); name != "" {
			deps.TURNDiscovery = func(ctx context.Context) ([]string, error) {
				return turn.Discover(ctx, net.DefaultResolver, name)
			}
		}
	}
}
