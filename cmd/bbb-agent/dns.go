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
		&cli.StringFlag{Name: "dns-provider", Value: "none", EnvVars: env("DNS_PROVIDER"), Usage: "none, rfc2136 (BIND, Knot, PowerDNS) or route53"},
		&cli.StringFlag{Name: "dns-zone", EnvVars: env("DNS_ZONE"), Usage: "the zone the node's name lives in; the name is <node-name>.<zone>"},
		&cli.IntFlag{Name: "dns-ttl", Value: dnsupdate.DefaultTTL, EnvVars: env("DNS_TTL"), Usage: "TTL of the node's records, in seconds"},
		&cli.StringFlag{Name: "dns-owner-id", EnvVars: env("DNS_OWNER_ID"), Usage: "who owns the records (one id per fleet; default: the balancer's host name)"},
		&cli.BoolFlag{Name: "dns-takeover", EnvVars: env("DNS_TAKEOVER"), Usage: "take over a name that has records of another owner or of none"},
		&cli.DurationFlag{Name: "dns-wait-timeout", Value: dnsupdate.DefaultWaitTimeout, EnvVars: env("DNS_WAIT_TIMEOUT"), Usage: "how long to wait for the authoritative servers to answer before registering"},
		&cli.StringSliceFlag{Name: "dns-server", EnvVars: env("DNS_SERVER"), Usage: "rfc2136: a server taking updates, HOST:PORT (repeatable; tried in order)"},
		&cli.StringFlag{Name: "dns-tsig-key-name", EnvVars: env("DNS_TSIG_KEY_NAME"), Usage: "rfc2136: the TSIG key's name"},
		&cli.StringFlag{Name: "dns-tsig-secret", EnvVars: env("DNS_TSIG_SECRET"), Usage: "rfc2136: the TSIG key's secret (base64)"},
		&cli.StringFlag{Name: "dns-tsig-algorithm", Value: "hmac-sha256", EnvVars: env("DNS_TSIG_ALGORITHM"), Usage: "rfc2136: hmac-sha256, hmac-sha384, hmac-sha512 or hmac-sha1"},
		&cli.StringFlag{Name: "dns-hosted-zone-id", EnvVars: env("DNS_HOSTED_ZONE_ID"), Usage: "route53: the hosted zone (default: found from --dns-zone)"},
		&cli.StringFlag{Name: "aws-region", EnvVars: env("AWS_REGION"), Usage: "AWS region for route53 when not on EC2"},
		&cli.StringFlag{Name: "route53-endpoint", EnvVars: env("ROUTE53_ENDPOINT"), Usage: "Route53 API endpoint override (tests)"},
	}
}

// dnsManager builds the node's DNS manager; nil with provider none.
func dnsManager(ctx context.Context, c *cli.Context, n *node) (*dnsupdate.Manager, error) {
	kind := c.String("dns-provider")
	if kind == "none" || kind == "" {
		return nil, nil
	}
	zone := strings.TrimSuffix(c.String("dns-zone"), ".")
	if zone == "" {
		return nil, fmt.Errorf("dns-provider %s needs --dns-zone (the node's name is <node-name>.<zone>)", kind)
	}
	ttl := c.Int("dns-ttl")
	if ttl < 1 || ttl > 86400 {
		return nil, fmt.Errorf("dns-ttl %d: want 1 to 86400 seconds", ttl)
	}
	var provider dnsupdate.Provider
	var err error
	switch kind {
	case "rfc2136":
		provider, err = dnsupdate.NewRFC2136(dnsupdate.RFC2136Config{
			Servers: c.StringSlice("dns-server"), Zone: zone, TSIGKeyName: c.String("dns-tsig-key-name"),
			TSIGSecret: c.String("dns-tsig-secret"), TSIGAlgorithm: c.String("dns-tsig-algorithm"),
		})
	case "route53":
		provider, err = route53Provider(ctx, c, n, zone)
	default:
		return nil, fmt.Errorf("dns-provider %q: want none, rfc2136 or route53", kind)
	}
	if err != nil {
		return nil, fmt.Errorf("dns-provider %s: %w", kind, err)
	}
	owner := c.String("dns-owner-id")
	if owner == "" {
		if owner = ownerFromRegistrar(c); owner == "" {
			return nil, fmt.Errorf("give %s: one id per fleet, written beside each record", setting("dns-owner-id"))
		}
	}
	return &dnsupdate.Manager{Provider: provider, FQDN: n.name + "." + zone, TTL: uint32(ttl),
		Owner: dnsupdate.Owner{ID: owner, Node: n.name}, Takeover: c.Bool("dns-takeover"), WaitTimeout: c.Duration("dns-wait-timeout")}, nil
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
				plan, err = m.Plan(ctx, addrs.PublicIPv4, addrs.PublicIPv6, c.Bool("delete"))
			case "apply":
				plan, err = m.Ensure(ctx, addrs.PublicIPv4, addrs.PublicIPv6)
			case "delete":
				plan, err = m.Remove(ctx)
			}
			fmt.Fprintln(c.App.Writer, plan)
			if err != nil {
				return err
			}
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
