package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bbb-agent/bbb-agent/agent"
	"github.com/bbb-agent/bbb-agent/agent/ec2"
	"github.com/bbb-agent/bbb-agent/agent/host"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/registrar"
	"github.com/bbb-agent/bbb-agent/systemd"
	"github.com/urfave/cli/v2"
)

// node is what the command resolves before the agent can start.
type node struct {
	name      string
	role      fleet.Role
	serverURL string
	secret    string
	bbb       *bbb.Client
	reg       registrar.Registrar
	metadata  *ec2.Metadata
	explicit  agent.Addresses // --public-ipv4 and --public-ipv6
}

func newLogger(c *cli.Context) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, fmt.Errorf("log-level %q: want debug, info, warn or error", c.String("log-level"))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})), nil
}

// resolve reads the configuration into a node: name, role, BBB API and registrar.
func resolve(ctx context.Context, c *cli.Context) (*node, error) {
	n := &node{}
	role, err := fleet.ParseRole(c.String("role"))
	if err != nil {
		return nil, fmt.Errorf("role: %w", err)
	}
	n.role = role
	if n.explicit, err = explicitAddresses(c); err != nil {
		return nil, err
	}
	if c.Bool("ec2") {
		if n.metadata, err = ec2.NewMetadata(c.String("imds-endpoint")); err != nil {
			return nil, fmt.Errorf("EC2 metadata: %w", err)
		}
	}
	var instanceID func(context.Context) (string, error)
	if n.metadata != nil {
		instanceID = n.metadata.InstanceID
	}
	if n.name, err = agent.NodeName(ctx, c.String("node-name"), c.String("state-dir"), instanceID); err != nil {
		return nil, err
	}
	if role == fleet.RoleBBB {
		n.serverURL, n.secret = c.String("bbb-url"), c.String("bbb-secret")
		if n.serverURL == "" || n.secret == "" {
			props, err := bbb.ReadServerConfig(c.String("properties-root"))
			if err != nil {
				return nil, fmt.Errorf("BBB API: give --bbb-url and --bbb-secret, or fix bbb-web.properties: %w", err)
			}
			if n.serverURL == "" {
				n.serverURL = props.ServerURL
			}
			if n.secret == "" {
				n.secret = props.Secret
			}
		}
		if n.bbb, err = bbb.NewClient(n.serverURL, n.secret, bbb.WithHTTPClient(&http.Client{Timeout: 10 * time.Second})); err != nil {
			return nil, fmt.Errorf("BBB API: %w", err)
		}
	}
	switch c.String("registrar") {
	case "balancer":
		if c.String("balancer-url") == "" || c.String("agent-token") == "" {
			return nil, errors.New("registrar balancer: give --balancer-url and --agent-token")
		}
		n.reg, err = registrar.NewBalancer(c.String("balancer-url"), c.String("agent-token"),
			registrar.WithCredentialFile(filepath.Join(c.String("state-dir"), "node-credential")), registrar.WithTakeover(c.Bool("takeover")))
	case "scalelite":
		if c.String("scalelite-url") == "" || c.String("scalelite-secret") == "" {
			return nil, errors.New("registrar scalelite: give --scalelite-url and --scalelite-secret")
		}
		n.reg, err = registrar.NewScalelite(c.String("scalelite-url"), c.String("scalelite-secret"))
	default:
		return nil, fmt.Errorf("registrar %q: want balancer or scalelite", c.String("registrar"))
	}
	if err != nil {
		return nil, fmt.Errorf("registrar: %w", err)
	}
	return n, nil
}

func run(c *cli.Context) error {
	if _, err := loadConfigFile(c); err != nil {
		return err
	}
	base, err := newLogger(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(c.Context)
	defer cancel()
	n, err := resolve(ctx, c)
	if err != nil {
		return err
	}
	// The agent puts the node on its lines; log is for the command's own.
	log := base.With("node", n.name)

	diskPath := c.String("recordings-dir")
	if n.role == fleet.RoleTURN {
		diskPath = "/"
	} else if _, err := os.Stat(filepath.Join(c.String("host-root"), diskPath)); err != nil {
		log.Warn("recordings-dir is not there: reporting the free space of / instead", "recordings_dir", diskPath, "err", err)
		diskPath = "/"
	}
	collector := host.NewCollector(host.Config{Root: c.String("host-root"), DiskPath: diskPath})
	notifier := systemd.NewNotifier()
	deps := agent.Deps{
		Registrar: n.reg,
		BBB:       n.bbb,
		Notifier:  notifier,
		Host: func(ctx context.Context, l *fleet.Load) error {
			s, err := collector.Sample(ctx)
			if err != nil {
				return err
			}
			s.Apply(l)
			return nil
		},
	}
	if c.Bool("logind") {
		if guard := shutdownGuard(ctx, c, log); guard != nil {
			deps.Shutdown = guard
		}
	}
	if n.metadata != nil {
		scaleIn, err := scaleIn(ctx, c, n, log)
		if err != nil {
			return err
		}
		deps.ScaleIn = scaleIn
	}
	addrs, err := addresses(ctx, n)
	if err != nil {
		log.Warn("the node's addresses", "err", err)
	}
	cfg := agent.Config{
		Addresses: addrs, Node: n.name, Role: n.role, ServerURL: n.serverURL, Secret: n.secret, Tags: c.StringSlice("tag"),
		LoadMultiplier: c.Float64("load-multiplier"), ReportInterval: c.Duration("report-interval"),
		DrainDeadline: c.Duration("drain-deadline"), HeartbeatEvery: c.Duration("asg-heartbeat"), Logger: base,
	}
	dnsm, err := dnsManager(ctx, c, n)
	if err != nil {
		return err
	}
	if dnsm != nil {
		deps.DNS = dnsm
		deps.Addresses = func(ctx context.Context) (agent.Addresses, error) { return addresses(ctx, n) }
		cfg.FQDN, cfg.DNSProvider, cfg.DNSWait = dnsm.FQDN, dnsm.Provider.Name(), dnsm.WaitTimeout
	}
	if err := wireTURN(c, n, &cfg, &deps, log); err != nil {
		return err
	}
	a, err := agent.New(cfg, deps)
	if err != nil {
		return err
	}

	adminLn, err := agent.ListenAdmin(adminSocket(c))
	if err != nil {
		return err
	}
	adminErr := make(chan error, 1)
	go func() { adminErr <- a.ServeAdmin(ctx, adminLn) }()
	if interval, ok := systemd.WatchdogInterval(); ok {
		go systemd.RunWatchdog(ctx, notifier, interval, a.Healthy, log)
	}
	if addr := c.String("metrics-listen"); addr != "" {
		if err := serveMetrics(ctx, addr, a); err != nil {
			return err
		}
	}
	// The first SIGTERM or SIGINT drains; a second one stops at once.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	var stoppedBySignal atomic.Bool
	go func() {
		first := true
		for sig := range sigs {
			if !first {
				log.Warn("second signal: stopping without finishing the drain", "signal", sig)
				stoppedBySignal.Store(true)
				cancel()
				return
			}
			first = false
			log.Info("signal: draining", "signal", sig)
			// Not in this loop: the agent takes the drain between two report
			// cycles, and a second signal must not wait for that.
			go func() {
				if err := a.Drain(ctx, agent.SourceSignal); err != nil && ctx.Err() == nil {
					log.Error("starting the drain", "err", err)
				}
			}()
		}
	}()
	log.Info("bbb-agent starting", "version", version, "role", n.role, "registrar", n.reg.Kind(), "bbb", n.serverURL)
	ran := make(chan error, 1)
	go func() { ran <- a.Run(ctx) }()
	adminDone := false
	select {
	case err = <-ran:
	case err = <-adminErr:
		adminDone = true
		if err != nil {
			cancel()
			<-ran
			return err
		}
		err = <-ran
	}
	// The admin server removes its socket once it has stopped.
	cancel()
	if !adminDone {
		<-adminErr
	}
	if stoppedBySignal.Load() && errors.Is(err, context.Canceled) {
		return errors.New("stopped by a second signal before the drain finished: the node stays at the balancer, cordoned, until it goes offline there")
	}
	return err
}

// explicitAddresses reads --public-ipv4 and --public-ipv6. A value that is
// not an address of its family is a configuration error: the node's DNS
// records would be wrong or missing.
func explicitAddresses(c *cli.Context) (agent.Addresses, error) {
	var a agent.Addresses
	for _, x := range []struct {
		flag, family string
		dst          *netip.Addr
		ok           func(netip.Addr) bool
	}{
		{"public-ipv4", "IPv4", &a.PublicIPv4, netip.Addr.Is4},
		{"public-ipv6", "IPv6", &a.PublicIPv6, func(ip netip.Addr) bool { return ip.Is6() && !ip.Is4In6() }},
	} {
		v := c.String(x.flag)
		if v == "" {
			continue
		}
		ip, err := netip.ParseAddr(v)
		if err != nil || !x.ok(ip) {
			return a, fmt.Errorf("%s %q is not an %s address", x.flag, v, x.family)
		}
		*x.dst = ip
	}
	return a, nil
}

// addresses resolves the node's IP addresses: flags, EC2 metadata, interfaces.
func addresses(ctx context.Context, n *node) (agent.Addresses, error) {
	var md agent.MetadataAddresses
	if n.metadata != nil {
		md = n.metadata
	}
	return agent.ResolveAddresses(ctx, n.explicit, md, host.LiveAddresses)
}

// shutdownGuard takes logind's delay lock; without logind the agent still
// drains on SIGTERM, which systemd sends at shutdown too.
func shutdownGuard(ctx context.Context, c *cli.Context, log *slog.Logger) *systemd.ShutdownGuard {
	lg, err := systemd.NewLogind()
	if err != nil {
		log.Warn("no logind: a shutdown drains through SIGTERM only", "err", err)
		return nil
	}
	if max, err := lg.InhibitDelayMax(ctx); err == nil {
		if w := systemd.CheckInhibitDelay(max, c.Duration("drain-deadline")); w != "" {
			log.Warn(w)
		}
	}
	guard := systemd.NewShutdownGuard(lg, "bbb-agent", "draining BigBlueButton meetings before shutdown", log)
	if err := guard.Start(ctx); err != nil {
		log.Warn("logind delay lock not taken: a shutdown drains through SIGTERM only", "err", err)
		return nil
	}
	return guard
}

// scaleIn wires the Auto Scaling lifecycle: IMDS says when the instance is
// terminated, the lifecycle hook (if configured) waits for the drain.
func scaleIn(ctx context.Context, c *cli.Context, n *node, log *slog.Logger) (agent.ScaleIn, error) {
	s := ec2.ScaleIn{Metadata: n.metadata}
	hook := c.String("asg-lifecycle-hook")
	if hook == "" {
		return s, nil
	}
	instanceID, err := n.metadata.InstanceID(ctx)
	if err != nil {
		return nil, fmt.Errorf("asg-lifecycle-hook: the instance ID: %w", err)
	}
	group := c.String("asg-name")
	if group == "" {
		if group, err = n.metadata.AutoScalingGroup(ctx); err != nil {
			return nil, fmt.Errorf("asg-lifecycle-hook: give --asg-name or enable instance metadata tags: %w", err)
		}
	}
	region, err := n.metadata.Region(ctx)
	if err != nil {
		return nil, fmt.Errorf("asg-lifecycle-hook: the region: %w", err)
	}
	cfg, err := ec2.LoadConfig(ctx, region)
	if err != nil {
		return nil, fmt.Errorf("asg-lifecycle-hook: AWS credentials: %w", err)
	}
	if ep := c.String("aws-endpoint"); ep != "" {
		cfg.BaseEndpoint = &ep
	}
	lc, err := ec2.NewLifecycle(cfg, group, hook, instanceID)
	if err != nil {
		return nil, err
	}
	s.Lifecycle = lc
	log.Info("auto scaling lifecycle hook", "group", group, "hook", hook, "instance", instanceID)
	return s, nil
}

// serveMetrics serves the agent's Prometheus metrics on a loopback address.
func serveMetrics(ctx context.Context, addr string, a *agent.Agent) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("metrics-listen %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("metrics-listen %q: use a loopback address (127.0.0.1:PORT); put a proxy in front to expose it", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics-listen: %w", err)
	}
	srv := &http.Server{Handler: a.MetricsHandler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	go srv.Serve(ln)
	return nil
}
