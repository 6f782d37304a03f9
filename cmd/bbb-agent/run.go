package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
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
	"github.com/bbb-agent/bbb-agent/recordings/storage"
	"github.com/bbb-agent/bbb-agent/registrar"
	"github.com/bbb-agent/bbb-agent/systemd"
	"github.com/urfave/cli/v2"
	"golang.org/x/sync/errgroup"
)

// node is what the command resolves before the agent can start: every
// setting of `bbb-agent run`, checked (resolve).
type node struct {
	name      string
	role      fleet.Role
	serverURL string
	secret    string
	bbb       *bbb.Client
	reg       registrar.Registrar
	metadata  *ec2.Metadata
	explicit  agent.Addresses // --public-ipv4 and --public-ipv6
	logLevel  slog.Level
	// dns is nil with --dns-provider none.
	dns  *dnsSettings
	turn turnSettings
	// storage is where a BBB node's recordings go (storage.None: they
	// stay); nil with role turn.
	storage storage.Storage
	// metricsAddr is --metrics-listen, a loopback address, or "".
	metricsAddr string
}

// logLevel reads --log-level.
func logLevel(c *cli.Context) (slog.Level, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return level, settingError("log-level", fmt.Errorf("%q: want debug, info, warn or error", c.String("log-level")))
	}
	return level, nil
}

func newLogger(level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// resolve checks every setting of `bbb-agent run` and reads them into a
// node: the one validation of run, check and dns, so that check passes
// exactly the configurations run starts with. It reads local files
// (bbb-web.properties, --balancer-ca, the generated node name) and, with
// --ec2 and {instance-id} in the node name, the instance metadata; it
// contacts nothing else, binds nothing and starts nothing. The error names
// every setting that is wrong (errors.Join), each with where to set it.
func resolve(ctx context.Context, c *cli.Context) (*node, error) {
	n := &node{}
	var errs []error
	check := func(err error) bool {
		if err != nil {
			errs = append(errs, splitErrors(err)...) // one problem a line
		}
		return err == nil
	}
	var err error
	n.logLevel, err = logLevel(c)
	check(err)
	check(validateTimings(c))
	if d := c.Float64("load-multiplier"); !(d > 0 && d <= maxLoadMultiplier) {
		check(settingError("load-multiplier", fmt.Errorf("%g: want more than 0 and at most %d (the default 1 weighs the node's load as it is)", d, maxLoadMultiplier)))
	}
	n.role, err = fleet.ParseRole(c.String("role"))
	roleOK := check(settingError("role", err))
	n.explicit, err = explicitAddresses(c)
	check(err)
	ec2OK := true
	if c.Bool("ec2") {
		n.metadata, err = ec2.NewMetadata(c.String("imds-endpoint"))
		ec2OK = check(settingError("imds-endpoint", err))
	} else if c.String("asg-lifecycle-hook") != "" {
		check(settingError("asg-lifecycle-hook", errors.New("the lifecycle hook needs the instance metadata: give --ec2 too")))
	}
	if ec2OK {
		var instanceID func(context.Context) (string, error)
		if n.metadata != nil {
			instanceID = n.metadata.InstanceID
		}
		n.name, err = agent.NodeName(ctx, c.String("node-name"), c.String("state-dir"), instanceID)
		check(err)
	}
	if roleOK && n.role == fleet.RoleBBB {
		check(resolveBBB(c, n))
	}
	n.reg, err = newRegistrar(c)
	check(err)
	n.dns, err = dnsConfig(c)
	check(err)
	if roleOK {
		n.turn, err = turnConfig(c, n.role)
		check(err)
	}
	if roleOK && n.role == fleet.RoleBBB {
		n.storage, err = recordingsConfig(ctx, c)
		check(err)
	}
	n.metricsAddr, err = metricsAddress(c.String("metrics-listen"))
	check(err)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return n, nil
}

// resolveBBB reads the node's BBB API: the flags, else bbb-web.properties.
func resolveBBB(c *cli.Context, n *node) error {
	n.serverURL, n.secret = c.String("bbb-url"), c.String("bbb-secret")
	if n.serverURL == "" || n.secret == "" {
		props, err := bbb.ReadServerConfig(c.String("properties-root"))
		if err != nil {
			return fmt.Errorf("BBB API: give %s and %s, or fix bbb-web.properties: %w", setting("bbb-url"), setting("bbb-secret"), err)
		}
		if n.serverURL == "" {
			n.serverURL = props.ServerURL
		}
		if n.secret == "" {
			n.secret = props.Secret
		}
	}
	var err error
	if n.bbb, err = bbb.NewClient(n.serverURL, n.secret, bbb.WithHTTPClient(&http.Client{Timeout: 10 * time.Second})); err != nil {
		return fmt.Errorf("BBB API: %w", err)
	}
	return nil
}

// newRegistrar builds the registrar --registrar names; it contacts nothing.
func newRegistrar(c *cli.Context) (registrar.Registrar, error) {
	regClient, err := registrarClient(c.String("balancer-ca"))
	if err != nil {
		return nil, err
	}
	var reg registrar.Registrar
	switch c.String("registrar") {
	case "balancer":
		if c.String("balancer-url") == "" || c.String("agent-token") == "" {
			return nil, errors.New("registrar balancer: give --balancer-url and --agent-token")
		}
		reg, err = registrar.NewBalancer(c.String("balancer-url"), c.String("agent-token"),
			registrar.WithCredentialFile(filepath.Join(c.String("state-dir"), "node-credential")), registrar.WithTakeover(c.Bool("takeover")), registrar.WithHTTPClient(regClient),
			registrar.WithReportStream(c.Bool("report-stream")))
	case "scalelite":
		if c.String("scalelite-url") == "" || c.String("scalelite-secret") == "" {
			return nil, errors.New("registrar scalelite: give --scalelite-url and --scalelite-secret")
		}
		reg, err = registrar.NewScalelite(c.String("scalelite-url"), c.String("scalelite-secret"), registrar.WithHTTPClient(regClient),
			registrar.WithChecksumAlgorithm(bbb.Algorithm(c.String("scalelite-checksum"))))
	default:
		return nil, settingError("registrar", fmt.Errorf("%q: want balancer or scalelite", c.String("registrar")))
	}
	if err != nil {
		return nil, err // the registrar's errors say "registrar: ..."
	}
	return reg, nil
}

// The shortest report interval and drain deadline accepted: a report every
// millisecond floods the balancer (hundreds of reports a second per node),
// and a drain must see the node empty twice, a report interval apart.
const (
	minReportInterval = 100 * time.Millisecond
	minDrainDeadline  = 10 * time.Second
)

// maxLoadMultiplier is the largest --load-multiplier the balancer takes.
const maxLoadMultiplier = 100

// validateTimings refuses report intervals and drain deadlines that cannot
// work, naming the setting.
func validateTimings(c *cli.Context) error {
	if d := c.Duration("report-interval"); d < minReportInterval {
		return settingError("report-interval", fmt.Errorf("%v is too short: at least %v (the default is %v)", d, minReportInterval, fleet.DefaultReportInterval))
	}
	if d := c.Duration("drain-deadline"); d < minDrainDeadline {
		return settingError("drain-deadline", fmt.Errorf("%v is too short: at least %v (the default is %v)", d, minDrainDeadline, agent.DefaultDrainDeadline))
	}
	if d := c.Duration("drain-unknown-grace"); d < minDrainDeadline {
		return settingError("drain-unknown-grace", fmt.Errorf("%v is too short: at least %v (the default is %v)", d, minDrainDeadline, agent.DefaultDrainUnknownGrace))
	}
	return nil
}

// run is `bbb-agent run`: build the parts, then supervise them.
func run(c *cli.Context) error {
	if _, err := loadConfigFile(c); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(c.Context)
	defer cancel()
	n, err := resolve(ctx, c)
	if err != nil {
		return err
	}
	d, err := newDaemon(ctx, c, n, newLogger(n.logLevel))
	if err != nil {
		return err
	}
	return d.supervise(ctx)
}

// daemon is what `bbb-agent run` supervises: the agent and what serves
// beside it, built and bound but not started.
type daemon struct {
	log      *slog.Logger // the command's own lines, with the node name
	node     *node
	agent    *agent.Agent
	notifier systemd.Notifier
	admin    net.Listener // the admin socket
	// metrics serves Prometheus metrics on metricsLn (nil without --metrics-listen).
	metrics   *http.Server
	metricsLn net.Listener
	// recordings ships the node's recordings (nil: role turn).
	recordings *shipper
	// drainOnSignal: SIGTERM and SIGINT drain (--drain-on-sigterm, for
	// hosts without logind); otherwise they stop the agent and the node
	// stays registered (a restart, a package upgrade).
	drainOnSignal bool
	// now is the clock of the signal handler (two signals in the same
	// instant count as one).
	now func() time.Time
}

// newDaemon builds the agent of the resolved node and its dependencies and
// binds the metrics address and the admin socket. Nothing runs yet, except
// what ctx bounds (the logind delay lock).
func newDaemon(ctx context.Context, c *cli.Context, n *node, base *slog.Logger) (d *daemon, err error) {
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
		Host:      collector.Sample,
	}
	if c.Bool("logind") {
		if guard := shutdownGuard(ctx, c, log); guard != nil {
			deps.Shutdown = guard
		}
	}
	if n.metadata != nil {
		scaleIn, err := scaleIn(ctx, c, n, log)
		if err != nil {
			return nil, err
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
		DrainDeadline: c.Duration("drain-deadline"), DrainUnknownGrace: c.Duration("drain-unknown-grace"), StateDir: c.String("state-dir"), HeartbeatEvery: c.Duration("asg-heartbeat"), Logger: base,
	}
	dnsm, err := dnsManager(ctx, c, n)
	if err != nil {
		return nil, err
	}
	if dnsm != nil {
		deps.DNS = dnsm
		deps.Addresses = func(ctx context.Context) (agent.Addresses, error) { return addresses(ctx, n) }
		cfg.FQDN, cfg.DNSProvider, cfg.DNSWait = dnsm.FQDN, dnsm.Provider.Name(), dnsm.WaitTimeout
	}
	wireTURN(c, n, &cfg, &deps, log)
	var ship *shipper
	if n.role == fleet.RoleBBB {
		if ship, err = wireRecordings(ctx, c, n, &cfg, &deps, log); err != nil {
			return nil, err
		}
		defer func() {
			if d == nil {
				ship.queue.Close() // not started
			}
		}()
	}
	a, err := agent.New(cfg, deps)
	if err != nil {
		return nil, err
	}
	d = &daemon{log: log, node: n, agent: a, notifier: notifier, recordings: ship,
		drainOnSignal: c.Bool("drain-on-sigterm"), now: time.Now}
	if n.metricsAddr != "" {
		if d.metricsLn, err = listenMetrics(n.metricsAddr); err != nil {
			return nil, err
		}
		d.metrics = &http.Server{Handler: a.MetricsHandler(), ReadHeaderTimeout: 5 * time.Second}
	}
	// Last, so that nothing after it fails and leaves the socket behind; and
	// before the agent runs, so a second agent stops before it registers.
	if d.admin, err = agent.ListenAdmin(adminSocket(c)); err != nil {
		if d.metricsLn != nil {
			d.metricsLn.Close()
		}
		return nil, err
	}
	return d, nil
}

// supervise runs the agent, the admin server, the metrics server, the
// systemd watchdog and the signal handler until the agent is done (a
// finished drain: nil) or one of them fails; then it stops the others and
// waits for them. The first error is returned, a later one is logged.
func (d *daemon) supervise(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Registered before anything runs: a SIGTERM from now on stops (or,
	// with --drain-on-sigterm, drains).
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)

	// The ready line: the admin socket is bound, so status answers from now on.
	d.log.Info("bbb-agent starting", "version", version, "role", d.node.role, "registrar", d.node.reg.Kind(), "bbb", d.node.serverURL)
	g, gctx := errgroup.WithContext(ctx)
	part := func(name string, f func(context.Context) error) {
		g.Go(func() error {
			err := f(gctx)
			if err != nil && gctx.Err() != nil && !errors.Is(err, context.Canceled) {
				d.log.Error(name+" failed while the agent stopped", "err", err)
			}
			return err
		})
	}
	part("agent", func(ctx context.Context) error {
		// The agent's end, a finished drain included, ends everything else.
		defer cancel()
		return d.agent.Run(ctx)
	})
	part("admin socket", func(ctx context.Context) error {
		// It removes its socket once it has stopped.
		if err := d.agent.ServeAdmin(ctx, d.admin); err != nil {
			return fmt.Errorf("admin socket: %w", err)
		}
		return nil
	})
	if d.recordings != nil {
		part("recordings", d.recordings.run)
	}
	if d.metrics != nil {
		part("metrics server", func(ctx context.Context) error { return serveMetrics(ctx, d.metrics, d.metricsLn) })
	}
	if interval, ok := systemd.WatchdogInterval(); ok {
		part("watchdog", func(ctx context.Context) error {
			systemd.RunWatchdog(ctx, d.notifier, interval, d.agent.Healthy, d.log)
			return nil
		})
	}
	var stoppedBySignal, drainCut atomic.Bool
	part("signal handler", func(ctx context.Context) error {
		return d.handleSignals(ctx, sigs, cancel, &stoppedBySignal, &drainCut, part)
	})
	err := g.Wait()
	switch {
	case drainCut.Load() && errors.Is(err, context.Canceled):
		return errors.New("stopped by a second signal before the drain finished: the node stays at the balancer, cordoned, until it goes offline there")
	case stoppedBySignal.Load() && errors.Is(err, context.Canceled):
		return nil // a stop or restart: the node stays registered
	}
	return err
}

// signalRepeat is how long after a first signal a second one counts as
// another signal: GNU timeout, and some init scripts, signal the agent and
// its process group at once, which delivers the same SIGTERM twice.
const signalRepeat = time.Second

// handleSignals turns SIGTERM and SIGINT into a stop or a drain. Without
// --drain-on-sigterm a signal stops the agent at once and the node stays
// registered: systemctl restart and a package upgrade never drain, and a
// host shutdown drains through logind's delay lock (or a scale-in through
// Auto Scaling) before systemd sends its SIGTERM. With it, the first signal
// drains and a second one, at least signalRepeat later, stops the drain
// short.
func (d *daemon) handleSignals(ctx context.Context, sigs <-chan os.Signal, cancel context.CancelFunc,
	stopped, drainCut *atomic.Bool, part func(string, func(context.Context) error)) error {
	var first time.Time
	for {
		var sig os.Signal
		select {
		case <-ctx.Done():
			return nil
		case sig = <-sigs:
		}
		now := d.now()
		switch {
		case !d.drainOnSignal:
			if st := d.agent.Status(); st.Drain != nil && st.Drain.Phase == "leaving" {
				d.log.Info("signal: stopping; the drain's deadline has passed and the host is going away, so the node is deregistered on the way out", "signal", sig)
			} else {
				d.log.Info("signal: stopping; the node stays registered (a restart or an upgrade does not drain: use bbb-agent drain, or a shutdown drains through logind)", "signal", sig)
			}
			stopped.Store(true)
			cancel()
			return nil
		case first.IsZero():
			first = now
			d.log.Info("signal: draining", "signal", sig)
			// Not in this loop: the agent takes the drain between two report
			// cycles, and a second signal must not wait for that.
			part("drain", func(ctx context.Context) error {
				if err := d.agent.Drain(ctx, agent.SourceSignal); err != nil && ctx.Err() == nil {
					d.log.Error("starting the drain", "err", err)
				}
				return nil
			})
		case now.Sub(first) < signalRepeat:
			d.log.Info("signal again within a second (sent to the process group too?): the drain goes on", "signal", sig)
		default:
			d.log.Warn("second signal: stopping without finishing the drain", "signal", sig)
			drainCut.Store(true)
			cancel()
			return nil
		}
	}
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
		return nil, settingError("asg-lifecycle-hook", fmt.Errorf("the instance ID: %w", err))
	}
	group := c.String("asg-name")
	if group == "" {
		if group, err = n.metadata.AutoScalingGroup(ctx); err != nil {
			return nil, settingError("asg-lifecycle-hook", fmt.Errorf("give %s or enable instance metadata tags: %w", setting("asg-name"), err))
		}
	}
	region, err := n.metadata.Region(ctx)
	if err != nil {
		return nil, settingError("asg-lifecycle-hook", fmt.Errorf("the region: %w", err))
	}
	cfg, err := ec2.LoadConfig(ctx, region)
	if err != nil {
		return nil, settingError("asg-lifecycle-hook", fmt.Errorf("AWS credentials: %w", err))
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

// metricsAddress checks --metrics-listen: empty, or a loopback address.
func metricsAddress(addr string) (string, error) {
	if addr == "" {
		return "", nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", settingError("metrics-listen", fmt.Errorf("%q: %w", addr, err))
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return "", settingError("metrics-listen", fmt.Errorf("%q: use a loopback address (127.0.0.1:PORT); put a proxy in front to expose it", addr))
	}
	return addr, nil
}

// listenMetrics binds the metrics address (checked by metricsAddress).
func listenMetrics(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, settingError("metrics-listen", err)
	}
	return ln, nil
}

// serveMetrics serves the agent's Prometheus metrics on ln until ctx ends.
func serveMetrics(ctx context.Context, srv *http.Server, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	defer stop()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics-listen %s: %w", ln.Addr(), err)
	}
	return nil
}

// registrarClient is the HTTP client of the registrar: it trusts the CA of
// --balancer-ca besides the system's roots; nil (the registrar's default)
// without it.
func registrarClient(caFile string) (*http.Client, error) {
	if caFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, settingError("balancer-ca", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, settingError("balancer-ca", fmt.Errorf("%s holds no PEM certificate", caFile))
	}
	t := registrar.NewTransport() // HTTP/1.1, as without the CA
	t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	// Like the registrar's default client, it does not follow redirects.
	return &http.Client{Transport: t, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, nil
}
