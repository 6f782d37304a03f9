package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/bbb-agent/bbb-agent/agent"
	"github.com/bbb-agent/bbb-agent/agent/ec2"
	"github.com/bbb-agent/bbb-agent/dnsupdate"
	"github.com/urfave/cli/v2"
)

// dnsFlags are the DNS flags of `bbb-agent run`.
func dnsFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "dns-provider", Category: catDNS, Value: "none", EnvVars: env("DNS_PROVIDER"), Usage: "none, rfc2136 (BIND, Knot, PowerDNS) or route53"},
		&cli.StringFlag{Name: "dns-zone", Category: catDNS, EnvVars: env("DNS_ZONE"), Usage: "the zone the node's name lives in; the name is <node-name>.<zone>"},
		&cli.IntFlag{Name: "dns-ttl", Category: catDNS, Value: dnsupdate.DefaultTTL, EnvVars: env("DNS_TTL"), Usage: "TTL of the node's records, in seconds"},
		&cli.StringFlag{Name: "dns-owner-id", Category: catDNS, EnvVars: env("DNS_OWNER_ID"), Usage: "who owns the records (one id per fleet; default: the balancer's host name)"},
		&cli.BoolFlag{Name: "dns-takeover", Category: catDNS, EnvVars: env("DNS_TAKEOVER"), Usage: "take over a name that has records of another owner or of none"},
		&cli.DurationFlag{Name: "dns-wait-timeout", Category: catDNS, Value: dnsupdate.DefaultWaitTimeout, EnvVars: env("DNS_WAIT_TIMEOUT"), Usage: "how long to wait for the authoritative servers to answer before registering"},
		&cli.StringSliceFlag{Name: "dns-server", Category: catDNS, EnvVars: env("DNS_SERVER"), Usage: "rfc2136: a server taking updates, HOST:PORT (repeatable; tried in order)"},
		&cli.StringFlag{Name: "dns-tsig-key-name", Category: catDNS, EnvVars: env("DNS_TSIG_KEY_NAME"), Usage: "rfc2136: the TSIG key's name"},
		&cli.StringFlag{Name: "dns-tsig-secret", Category: catDNS, EnvVars: env("DNS_TSIG_SECRET"), Usage: "rfc2136: the TSIG key's secret (base64)"},
		&cli.StringFlag{Name: "dns-tsig-algorithm", Category: catDNS, Value: "hmac-sha256", EnvVars: env("DNS_TSIG_ALGORITHM"), Usage: "rfc2136: hmac-sha256, hmac-sha384, hmac-sha512 or hmac-sha1"},
		&cli.StringFlag{Name: "dns-hosted-zone-id", Category: catDNS, EnvVars: env("DNS_HOSTED_ZONE_ID"), Usage: "route53: the hosted zone (default: found from --dns-zone)"},
		&cli.StringFlag{Name: "aws-region", Category: catDNS, EnvVars: env("AWS_REGION"), Usage: "AWS region for route53 when not on EC2"},
		&cli.StringFlag{Name: "route53-endpoint", Category: catDNS, Hidden: true, EnvVars: env("ROUTE53_ENDPOINT"), Usage: "Route53 API endpoint override (tests)"},
	}
}

// dnsSettings are a node's checked DNS settings.
type dnsSettings struct {
	kind  string // rfc2136 or route53
	zone  string // without the trailing dot
	ttl   uint32
	owner string
	// rfc2136 is the provider of kind rfc2136, not contacted yet; route53's
	// reads the hosted zone when it is built (dnsManager).
	rfc2136 *dnsupdate.RFC2136
}

// dnsConfig checks the DNS settings; nil with provider none.
func dnsConfig(c *cli.Context) (*dnsSettings, error) {
	kind := c.String("dns-provider")
	if kind == "none" || kind == "" {
		return nil, nil
	}
	if kind != "rfc2136" && kind != "route53" {
		return nil, fmt.Errorf("dns-provider %q: want none, rfc2136 or route53", kind)
	}
	s := &dnsSettings{kind: kind, zone: strings.TrimSuffix(c.String("dns-zone"), "."), owner: c.String("dns-owner-id")}
	var errs []error
	if s.zone == "" {
		errs = append(errs, fmt.Errorf("dns-provider %s needs --dns-zone (the node's name is <node-name>.<zone>)", kind))
	}
	if ttl := c.Int("dns-ttl"); ttl < 1 || ttl > 86400 {
		errs = append(errs, fmt.Errorf("dns-ttl %d: want 1 to 86400 seconds", ttl))
	} else {
		s.ttl = uint32(ttl)
	}
	if s.owner == "" {
		if s.owner = ownerFromRegistrar(c); s.owner == "" {
			errs = append(errs, fmt.Errorf("give %s: one id per fleet, written beside each record", setting("dns-owner-id")))
		}
	}
	if kind == "rfc2136" && s.zone != "" {
		p, err := dnsupdate.NewRFC2136(dnsupdate.RFC2136Config{
			Servers: c.StringSlice("dns-server"), Zone: s.zone, TSIGKeyName: c.String("dns-tsig-key-name"),
			TSIGSecret: c.String("dns-tsig-secret"), TSIGAlgorithm: c.String("dns-tsig-algorithm"),
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("dns-provider %s: %w", kind, err))
		}
		s.rfc2136 = p
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// dnsManager builds the node's DNS manager (route53: reading the hosted
// zone); nil with provider none.
func dnsManager(ctx context.Context, c *cli.Context, n *node) (*dnsupdate.Manager, error) {
	s := n.dns
	if s == nil {
		return nil, nil
	}
	var provider dnsupdate.Provider = s.rfc2136
	if s.kind == "route53" {
		p, err := route53Provider(ctx, c, n, s.zone)
		if err != nil {
			return nil, fmt.Errorf("dns-provider %s: %w", s.kind, err)
		}
		provider = p
	}
	return &dnsupdate.Manager{Provider: provider, FQDN: n.name + "." + s.zone, TTL: s.ttl,
		Owner: dnsupdate.Owner{ID: s.owner, Node: n.name}, Takeover: c.Bool("dns-takeover"), WaitTimeout: c.Duration("dns-wait-timeout")}, nil
}

// providerCheck asks the provider whether it takes the node's changes,
// where it can tell without changing anything (rfc2136: the servers accept
// the key for the zone).
func providerCheck(ctx context.Context, p dnsupdate.Provider) error {
	if ch, ok := p.(interface{ Check(context.Context) error }); ok {
		return ch.Check(ctx)
	}
	return nil
}

// ownerFromRegistrar is the default owner id: the balancer's host name.
func ownerFromRegistrar(c *cli.Context) string {
	for _, flag := range []string{"balancer-url", "scalelite-url"} {
		if u, err := url.Parse(c.String(flag)); err == nil && u.Hostname() != "" {
			return u.Hostname()
		}
	}
	return ""
}

func route53Provider(ctx context.Context, c *cli.Context, n *node, zone string) (dnsupdate.Provider, error) {
	region := c.String("aws-region")
	if region == "" && n.metadata != nil {
		r, err := n.metadata.Region(ctx)
		if err != nil {
			return nil, fmt.Errorf("the AWS region from EC2 metadata: %w (or give %s)", err, setting("aws-region"))
		}
		region = r
	}
	if region == "" {
		region = "us-east-1" // Route53 is global; the SDK still wants a region
	}
	cfg, err := ec2.LoadConfig(ctx, region)
	if err != nil {
		return nil, fmt.Errorf("AWS credentials: %w", err)
	}
	if ep := c.String("route53-endpoint"); ep != "" {
		cfg.BaseEndpoint = &ep
	}
	return dnsupdate.NewRoute53(ctx, dnsupdate.Route53Config{AWS: cfg, HostedZoneID: c.String("dns-hosted-zone-id"), Zone: zone})
}

// dnsCommand is `bbb-agent dns plan|apply|delete`, for an operator by hand.
func dnsCommand() *cli.Command {
	action := func(what string) cli.ActionFunc {
		return func(c *cli.Context) error {
			if _, err := loadConfigFile(c); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(c.Context, c.Duration("dns-wait-timeout")+time.Minute)
			defer cancel()
			n, err := resolve(ctx, c)
			if err != nil {
				return err
			}
			m, err := dnsManager(ctx, c, n)
			if err != nil {
				return err
			}
			if m == nil {
				return errors.New("dns-provider is none: nothing to do")
			}
			addrs, err := addresses(ctx, n)
			if err != nil && what != "delete" {
				return err
			}
			var plan dnsupdate.Plan
			switch what {
			case "plan":
				// What apply would do includes whether the provider takes
				// it: the records are read without the key.
				if err := providerCheck(ctx, m.Provider); err != nil {
					return fmt.Errorf("dns plan: %w", err)
				}
				plan, err = m.Plan(ctx, addrs.PublicIPv4, addrs.PublicIPv6, c.Bool("delete"))
			case "apply":
				plan, err = m.Ensure(ctx, addrs.PublicIPv4, addrs.PublicIPv6)
			case "delete":
				plan, err = m.Remove(ctx)
			}
			if err != nil {
				// No plan printed: an empty one reads "up to date".
				return fmt.Errorf("dns %s: %w", what, err)
			}
			fmt.Fprintln(c.App.Writer, plan)
			switch what {
			case "apply":
				fmt.Fprintf(c.App.Writer, "%s answers %s at every authoritative server\n", m.FQDN, describe(addrs))
			case "delete":
				fmt.Fprintf(c.App.Writer, "%s: the node's records are gone\n", m.FQDN)
			}
			return nil
		}
	}
	flags := append(runFlags(), &cli.BoolFlag{Name: "delete", Usage: "plan: show what delete would do"})
	return &cli.Command{
		Name:  "dns",
		Usage: "the node's DNS records by hand: plan, apply, delete",
		Subcommands: []*cli.Command{
			{Name: "plan", Usage: "show what apply (or, with --delete, delete) would change", Flags: flags, Action: action("plan")},
			{Name: "apply", Usage: "publish the node's records and wait until they answer", Flags: runFlags(), Action: action("apply")},
			{Name: "delete", Usage: "remove the node's records (only ours)", Flags: runFlags(), Action: action("delete")},
		},
	}
}

func describe(a agent.Addresses) string {
	var parts []string
	if a.PublicIPv4.IsValid() {
		parts = append(parts, a.PublicIPv4.String())
	}
	if a.PublicIPv6.IsValid() {
		parts = append(parts, a.PublicIPv6.String())
	}
	return strings.Join(parts, " and ")
}
