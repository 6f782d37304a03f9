package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/bbb-agent/bbb-agent/balancer"
	"github.com/bbb-agent/bbb-agent/balancer/placement"
	"github.com/bbb-agent/bbb-agent/balancer/store"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/urfave/cli/v2"
	"golang.org/x/sync/errgroup"
)

func env(name string) []string { return []string{"BBB_BALANCER_" + name} }

// The categories of serve's flags in --help; --config comes first, without
// one.
const (
	catListen     = "Listeners and TLS"
	catAuth       = "Secrets and tokens"
	catDatabase   = "Database"
	catAPI        = "BBB API"
	catFleet      = "Fleet"
	catDashboard  = "Dashboard"
	catRecordings = "Recordings and playback"
	catLogging    = "Logging"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the balancer: BBB API at /bigbluebutton/api/, agent API, admin API, /metrics, /healthz",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Value: DefaultConfigFile, EnvVars: env("CONFIG"), Usage: "YAML file of these settings (keys: the flag names); flags and environment win over it"},
			&cli.StringFlag{Name: "listen", Category: catListen, Value: balancer.DefaultListen, EnvVars: env("LISTEN"), Usage: "address to listen on"},
			&cli.StringFlag{Name: "admin-listen", Category: catListen, EnvVars: env("ADMIN_LISTEN"), Usage: "serve the admin API and /metrics (no token) on this address only, e.g. 127.0.0.1:8091 (a port alone means loopback); default: on --listen, /metrics with the admin token"},
			&cli.StringFlag{Name: "tls-cert", Category: catListen, EnvVars: env("TLS_CERT"), Usage: "PEM certificate chain for HTTPS on --listen, read again when it changes (certbot renewals)"},
			&cli.StringFlag{Name: "tls-key", Category: catListen, EnvVars: env("TLS_KEY"), Usage: "PEM private key of --tls-cert"},
			&cli.StringSliceFlag{Name: "acme-domain", Category: catListen, EnvVars: env("ACME_DOMAIN"), Usage: "get HTTPS certificates for this name over ACME (Let's Encrypt; repeat for several names)"},
			&cli.StringFlag{Name: "acme-email", Category: catListen, EnvVars: env("ACME_EMAIL"), Usage: "contact address of the ACME account"},
			&cli.StringFlag{Name: "acme-ca", Category: catListen, EnvVars: env("ACME_CA"), Usage: "ACME directory URL (default: Let's Encrypt production)"},
			&cli.StringFlag{Name: "acme-cache", Category: catListen, EnvVars: env("ACME_CACHE"), Usage: "directory keeping the ACME account key and certificates, e.g. /var/lib/bbb-balancer/acme"},
			&cli.StringFlag{Name: "acme-http-listen", Category: catListen, Value: ":80", EnvVars: env("ACME_HTTP_LISTEN"), Usage: "address answering ACME HTTP-01 challenges (and redirecting to HTTPS); empty: TLS-ALPN-01 on --listen only"},
			&cli.StringSliceFlag{Name: "secret", Category: catAuth, EnvVars: env("SECRET"), Usage: "BBB API secret front-ends sign with (repeat to accept several)"},
			&cli.StringFlag{Name: "agent-token", Category: catAuth, EnvVars: env("AGENT_TOKEN"), Usage: "token agents authenticate with"},
			&cli.StringFlag{Name: "admin-token", Category: catAuth, EnvVars: env("ADMIN_TOKEN"), Usage: "token the admin API and CLI authenticate with"},
			&cli.StringFlag{Name: "data-dir", Category: catDatabase, Value: store.DefaultDataDir, EnvVars: env("DATA_DIR"), Usage: "directory of the embedded database"},
			&cli.StringFlag{Name: "db", Category: catDatabase, EnvVars: env("DB"), Usage: "postgres://... to share one database between replicas (instead of the embedded one)"},
			&cli.StringFlag{Name: "checksum-algorithms", Category: catAPI, EnvVars: env("CHECKSUM_ALGORITHMS"), Usage: "accepted checksum algorithms, comma-separated (default: sha1,sha256,sha384,sha512)"},
			&cli.StringFlag{Name: "node-checksum", Category: catAPI, Value: string(balancer.DefaultNodeAlgorithm), EnvVars: env("NODE_CHECKSUM"), Usage: "algorithm for calls to nodes (sha1 for BBB older than 2.4)"},
			&cli.IntFlag{Name: "missed-reports", Category: catFleet, Value: balancer.DefaultMissedReports, EnvVars: env("MISSED_REPORTS"), Usage: "report intervals without a report before a node is offline"},
			&cli.DurationFlag{Name: "poll-interval", Category: catFleet, Value: balancer.DefaultPollInterval, EnvVars: env("POLL_INTERVAL"), Usage: "how often operator-added nodes (no agent) are polled"},
			&cli.DurationFlag{Name: "refresh-interval", Category: catFleet, Value: balancer.DefaultRefreshInterval, EnvVars: env("REFRESH_INTERVAL"), Usage: "how often the fleet is reloaded from the database (other replicas' changes)"},
			&cli.DurationFlag{Name: "node-timeout", Category: catFleet, Value: balancer.DefaultNodeTimeout, EnvVars: env("NODE_TIMEOUT"), Usage: "time limit of one call to a node"},
			&cli.DurationFlag{Name: "get-meetings-timeout", Category: catAPI, Value: balancer.DefaultGetMeetingsTimeout, EnvVars: env("GET_MEETINGS_TIMEOUT"), Usage: "time limit of each node's part of getMeetings"},
			&cli.DurationFlag{Name: "get-meetings-max-age", Category: catAPI, Value: balancer.DefaultGetMeetingsMaxAge, EnvVars: env("GET_MEETINGS_MAX_AGE"), Usage: "how stale getMeetings may be (a node's answer is kept this long; a create or end through this replica shows at once); negative: ask every node on every call"},
			&cli.Float64Flag{Name: "cpu-ceiling", Category: catFleet, Value: placement.DefaultPolicy().CPUCeiling, EnvVars: env("CPU_CEILING"), Usage: "CPU percent above which a node takes no new meetings while others can"},
			&cli.Int64Flag{Name: "max-body-bytes", Category: catAPI, Value: balancer.DefaultMaxBodyBytes, EnvVars: env("MAX_BODY_BYTES"), Usage: "largest BBB API request body accepted"},
			&cli.StringFlag{Name: "log-level", Category: catLogging, Value: "info", EnvVars: env("LOG_LEVEL"), Usage: "debug, info, warn or error"},
			&cli.BoolFlag{Name: "dashboard", Category: catDashboard, Value: true, EnvVars: env("DASHBOARD"), Usage: "serve the fleet page at /dashboard/ (--dashboard=false: off)"},
			&cli.StringFlag{Name: "dashboard-users", Category: catDashboard, EnvVars: env("DASHBOARD_USERS"), Usage: "file of dashboard users, name:bcrypt-hash:role (admin or readonly) per line; without it, log in with the admin token"},
			&cli.StringFlag{Name: "recordings-storage", Category: catRecordings, EnvVars: env("RECORDINGS_STORAGE"), Usage: "where recordings' files are: dir:/var/bigbluebutton or s3://BUCKET/PREFIX (default: index only)"},
			&cli.StringFlag{Name: "recordings-s3-endpoint", Category: catRecordings, EnvVars: env("RECORDINGS_S3_ENDPOINT"), Usage: "URL of an S3-compatible server (path-style addressing)"},
			&cli.StringFlag{Name: "recordings-spool", Category: catRecordings, EnvVars: env("RECORDINGS_SPOOL"), Usage: "directory of Scalelite-format <record_id>.tar files to import (needs dir: storage)"},
			&cli.StringFlag{Name: "recordings-replica", Category: catRecordings, EnvVars: env("RECORDINGS_REPLICA"), Usage: "this replica's name in the spool's work/ directory, stable across restarts (default: the host name)"},
			&cli.DurationFlag{Name: "recordings-retention", Category: catRecordings, EnvVars: env("RECORDINGS_RETENTION"), Usage: "delete recordings everywhere this long after they ended, e.g. 8760h (default: keep)"},
			&cli.DurationFlag{Name: "recordings-spool-interval", Category: catRecordings, Value: 10 * time.Second, EnvVars: env("RECORDINGS_SPOOL_INTERVAL"), Usage: "how often the spool is looked at for new tars"},
			&cli.DurationFlag{Name: "recordings-callback-interval", Category: catRecordings, Value: 10 * time.Second, EnvVars: env("RECORDINGS_CALLBACK_INTERVAL"), Usage: "how often due recording-ready callbacks are sent"},
			&cli.DurationFlag{Name: "recordings-callback-backoff", Category: catRecordings, Value: 30 * time.Second, EnvVars: env("RECORDINGS_CALLBACK_BACKOFF"), Usage: "wait after a recording-ready callback's first failed attempt, doubled per attempt up to 6h"},
			&cli.BoolFlag{Name: "recordings-protected", Category: catRecordings, EnvVars: env("RECORDINGS_PROTECTED"), Usage: "protect every new recording: playable only through getRecordings' one-use links (updateRecordings protect=true|false changes one)"},
			&cli.StringFlag{Name: "playback-player-dir", Category: catRecordings, EnvVars: env("PLAYBACK_PLAYER_DIR"), Usage: "serve bbb-playback's player from this directory at /playback/presentation/2.3/ (e.g. /var/bigbluebutton/playback/presentation/2.3)"},
			&cli.StringFlag{Name: "playback-url", Category: catRecordings, EnvVars: env("PLAYBACK_URL"), Usage: "scheme and host of playback links, e.g. https://rec.example.com (default: the API request's own)"},
		},
		Action: serve,
	}
}

// serve is `bbb-balancer serve`: build the parts, then supervise them.
func serve(c *cli.Context) error {
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Once it is stopping, a second signal ends the process at once.
	context.AfterFunc(ctx, stop)
	gcPercent := setGCPercent()
	r, err := newReplica(ctx, c)
	if err != nil {
		return err
	}
	r.gcPercent = gcPercent
	defer r.store.Close()
	return r.supervise(ctx)
}

// replica is what `bbb-balancer serve` supervises: the balancer on its open
// database and the HTTP server on its bound listener, not started yet.
type replica struct {
	log   *slog.Logger
	store *store.Store
	srv   *balancer.Server
	http  *http.Server
	ln    net.Listener
	https bool
	// admin serves --admin-listen, acme the HTTP-01 challenges; nil if off.
	admin   *http.Server
	adminLn net.Listener
	acme    *http.Server
	acmeLn  net.Listener
	// gcPercent is the collector's GOGC (setGCPercent), for the log.
	gcPercent int
}

// newReplica checks the configuration, opens the database, loads the balancer
// and binds --listen.
func newReplica(ctx context.Context, c *cli.Context) (*replica, error) {
	if err := loadConfigFile(c); err != nil {
		return nil, err
	}
	// `bbb-balancer --admin-token T serve` gives the token to the CLI's
	// global flag; serve takes it from there too.
	adminToken := c.String("admin-token")
	if lineage := c.Lineage(); adminToken == "" && len(lineage) > 1 {
		adminToken = lineage[1].String("admin-token")
	}
	// What balancer.New would refuse is checked before the database is
	// opened, so a wrong command line creates nothing under --data-dir.
	switch {
	case len(c.StringSlice("secret")) == 0:
		return nil, errors.New("no BBB API secret: give --secret or BBB_BALANCER_SECRET (the secret front-ends sign their calls to the balancer with)")
	case c.String("agent-token") == "":
		return nil, errors.New("no agent token: give --agent-token or BBB_BALANCER_AGENT_TOKEN (agents send it to register and report)")
	case adminToken == "":
		return nil, errors.New("no admin token: give --admin-token or BBB_BALANCER_ADMIN_TOKEN (the CLI and the admin API need it)")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.String("log-level"))
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg := balancer.Config{
		Secrets:            c.StringSlice("secret"),
		AgentToken:         c.String("agent-token"),
		AdminToken:         adminToken,
		MissedReports:      c.Int("missed-reports"),
		PollInterval:       c.Duration("poll-interval"),
		RefreshInterval:    c.Duration("refresh-interval"),
		NodeTimeout:        c.Duration("node-timeout"),
		GetMeetingsTimeout: c.Duration("get-meetings-timeout"),
		GetMeetingsMaxAge:  c.Duration("get-meetings-max-age"),
		MaxBodyBytes:       c.Int64("max-body-bytes"),
		Policy:             placement.DefaultPolicy(),
		Logger:             log,
		DisableDashboard:   !c.Bool("dashboard"),
		DashboardUsers:     c.String("dashboard-users"),
		SeparateAdmin:      c.String("admin-listen") != "",
		Recordings: balancer.RecordingsConfig{
			Storage: c.String("recordings-storage"), S3Endpoint: c.String("recordings-s3-endpoint"),
			Spool: c.String("recordings-spool"), Replica: c.String("recordings-replica"), PlaybackURL: c.String("playback-url"),
			Retention: c.Duration("recordings-retention"),
			Protected: c.Bool("recordings-protected"), PlayerDir: c.String("playback-player-dir"),
			SpoolInterval: c.Duration("recordings-spool-interval"), CallbackInterval: c.Duration("recordings-callback-interval"),
			CallbackBackoff: c.Duration("recordings-callback-backoff"),
		},
	}
	cfg.Policy.CPUCeiling = c.Float64("cpu-ceiling")
	if s := c.String("checksum-algorithms"); s != "" {
		for _, name := range strings.Split(s, ",") {
			a, err := bbb.ParseAlgorithm(name)
			if err != nil {
				return nil, fmt.Errorf("--checksum-algorithms: %w", err)
			}
			cfg.Algorithms = append(cfg.Algorithms, a)
		}
	}
	a, err := bbb.ParseAlgorithm(c.String("node-checksum"))
	if err != nil {
		return nil, fmt.Errorf("--node-checksum: %w", err)
	}
	cfg.NodeAlgorithm = a

	tlsSetup, err := newTLS(c.String("tls-cert"), c.String("tls-key"), c.StringSlice("acme-domain"),
		c.String("acme-email"), c.String("acme-ca"), c.String("acme-cache"), log)
	if err != nil {
		return nil, err
	}

	var st *store.Store
	if dsn := c.String("db"); dsn != "" {
		st, err = store.Open(ctx, dsn)
	} else {
		st, err = store.OpenDataDir(ctx, c.String("data-dir"))
	}
	if err != nil {
		return nil, err
	}
	if err := st.PageCacheErr(); err != nil {
		log.Warn("SQLite runs with its process-wide page cache: reads evict the writer's pages, and flushes of reports are slower at thousands of nodes", "err", err)
	}
	srv, err := balancer.New(ctx, cfg, st)
	if err != nil {
		st.Close()
		return nil, err
	}
	r := &replica{log: log, store: st, srv: srv, http: newHTTPServer(srv.Handler())}
	fail := func(err error) (*replica, error) {
		for _, ln := range []net.Listener{r.ln, r.adminLn, r.acmeLn} {
			if ln != nil {
				ln.Close()
			}
		}
		st.Close()
		return nil, err
	}
	if r.ln, err = net.Listen("tcp", c.String("listen")); err != nil {
		return fail(fmt.Errorf("--listen %s: %w", c.String("listen"), err))
	}
	if tlsSetup != nil {
		r.https = true
		r.ln = tls.NewListener(r.ln, tlsSetup.config)
		if addr := c.String("acme-http-listen"); tlsSetup.http01 != nil && addr != "" {
			if r.acmeLn, err = net.Listen("tcp", addr); err != nil {
				return fail(fmt.Errorf("--acme-http-listen %s (HTTP-01 challenges; empty: TLS-ALPN-01 only): %w", addr, err))
			}
			r.acme = newHTTPServer(tlsSetup.http01)
		}
	}
	if addr := c.String("admin-listen"); addr != "" {
		if !strings.Contains(addr, ":") {
			addr = "127.0.0.1:" + addr
		}
		if r.adminLn, err = net.Listen("tcp", addr); err != nil {
			return fail(fmt.Errorf("--admin-listen %s: %w", addr, err))
		}
		r.admin = newHTTPServer(srv.AdminHandler())
	}
	return r, nil
}

func newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
}

// supervise runs the balancer loop and the HTTP server until ctx ends or
// one of them fails; then it stops both and waits for them: first the HTTP
// server finishes the requests under way, then the loop writes the last
// reports (the database stays open until it has). The first error is
// returned, a later one is logged.
func (r *replica) supervise(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	part := func(name string, f func(context.Context) error) {
		g.Go(func() error {
			err := f(gctx)
			if err != nil && gctx.Err() != nil && !errors.Is(err, context.Canceled) {
				r.log.Error(name+" failed while the balancer stopped", "err", err)
			}
			return err
		})
	}
	scheme := "http://"
	if r.https {
		scheme = "https://"
	}
	attrs := []any{"url", scheme + r.ln.Addr().String(), "api", scheme + r.ln.Addr().String() + "/bigbluebutton/api/", "database", r.store.Dialect()}
	if r.adminLn != nil {
		attrs = append(attrs, "admin", "http://"+r.adminLn.Addr().String())
	}
	if r.acmeLn != nil {
		attrs = append(attrs, "acme_http01", r.acmeLn.Addr().String())
	}
	r.log.Info("bbb-balancer listening", append(attrs, "gogc", r.gcPercent)...)
	// The loop stops after the HTTP server, so its last write holds the
	// reports of the requests the shutdown let finish.
	loopCtx, stopLoop := context.WithCancel(context.WithoutCancel(gctx))
	defer stopLoop()
	part("HTTP server", func(ctx context.Context) error {
		defer stopLoop()
		return r.serveHTTP(ctx, r.http, r.ln)
	})
	if r.admin != nil {
		part("admin HTTP server", func(ctx context.Context) error { return r.serveHTTP(ctx, r.admin, r.adminLn) })
	}
	if r.acme != nil {
		part("ACME HTTP-01 server", func(ctx context.Context) error { return r.serveHTTP(ctx, r.acme, r.acmeLn) })
	}
	part("balancer loop", func(context.Context) error { return r.srv.Run(loopCtx) })
	return g.Wait()
}

// shutdownGrace bounds the wait for the HTTP requests under way at shutdown.
const shutdownGrace = 10 * time.Second

// serveHTTP serves until ctx ends, then shuts the server down gracefully.
func (r *replica) serveHTTP(ctx context.Context, hs *http.Server, ln net.Listener) error {
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	select {
	case err := <-served: // Serve only returns before Shutdown when it fails
		return fmt.Errorf("serving HTTP on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	r.log.Info("shutting down", "addr", ln.Addr().String())
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	if err := hs.Shutdown(shutdown); err != nil {
		r.log.Warn("shutdown", "err", err)
	}
	<-served
	return nil
}
