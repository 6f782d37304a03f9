package main

import (
	"context"
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
)

func env(name string) []string { return []string{"BBB_BALANCER_" + name} }

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the balancer: BBB API at /bigbluebutton/api/, agent API, admin API, /metrics, /healthz",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:8090", EnvVars: env("LISTEN"), Usage: "address to listen on"},
			&cli.StringSliceFlag{Name: "secret", EnvVars: env("SECRET"), Usage: "BBB API secret front-ends sign with (repeat to accept several)"},
			&cli.StringFlag{Name: "agent-token", EnvVars: env("AGENT_TOKEN"), Usage: "token agents authenticate with"},
			&cli.StringFlag{Name: "admin-token", EnvVars: env("ADMIN_TOKEN"), Usage: "token the admin API and CLI authenticate with"},
			&cli.StringFlag{Name: "data-dir", Value: "/var/lib/bbb-balancer", EnvVars: env("DATA_DIR"), Usage: "directory of the embedded database"},
			&cli.StringFlag{Name: "db", EnvVars: env("DB"), Usage: "postgres://... to share one database between replicas (instead of the embedded one)"},
			&cli.StringFlag{Name: "checksum-algorithms", EnvVars: env("CHECKSUM_ALGORITHMS"), Usage: "accepted checksum algorithms, comma-separated (default: sha1,sha256,sha384,sha512)"},
			&cli.StringFlag{Name: "node-checksum", Value: "sha256", EnvVars: env("NODE_CHECKSUM"), Usage: "algorithm for calls to nodes (sha1 for BBB older than 2.4)"},
			&cli.IntFlag{Name: "missed-reports", Value: 3, EnvVars: env("MISSED_REPORTS"), Usage: "report intervals without a report before a node is offline"},
			&cli.DurationFlag{Name: "poll-interval", Value: 10 * time.Second, EnvVars: env("POLL_INTERVAL"), Usage: "how often operator-added nodes (no agent) are polled"},
			&cli.DurationFlag{Name: "refresh-interval", Value: time.Second, EnvVars: env("REFRESH_INTERVAL"), Usage: "how often the fleet is reloaded from the database (other replicas' changes)"},
			&cli.DurationFlag{Name: "node-timeout", Value: 5 * time.Second, EnvVars: env("NODE_TIMEOUT"), Usage: "time limit of one call to a node"},
			&cli.DurationFlag{Name: "get-meetings-timeout", Value: 3 * time.Second, EnvVars: env("GET_MEETINGS_TIMEOUT"), Usage: "time limit of each node's part of getMeetings"},
			&cli.Float64Flag{Name: "cpu-ceiling", Value: placement.DefaultPolicy().CPUCeiling, EnvVars: env("CPU_CEILING"), Usage: "CPU percent above which a node takes no new meetings while others can"},
			&cli.Int64Flag{Name: "max-body-bytes", Value: 16 << 20, EnvVars: env("MAX_BODY_BYTES"), Usage: "largest BBB API request body accepted"},
			&cli.StringFlag{Name: "log-level", Value: "info", EnvVars: env("LOG_LEVEL"), Usage: "debug, info, warn or error"},
			&cli.StringFlag{Name: "recordings-storage", EnvVars: env("RECORDINGS_STORAGE"), Usage: "where recordings' files are: dir:/var/bigbluebutton or s3://BUCKET/PREFIX (default: index only)"},
			&cli.StringFlag{Name: "recordings-s3-endpoint", EnvVars: env("RECORDINGS_S3_ENDPOINT"), Usage: "URL of an S3-compatible server (path-style addressing)"},
			&cli.StringFlag{Name: "recordings-spool", EnvVars: env("RECORDINGS_SPOOL"), Usage: "directory of Scalelite-format <record_id>.tar files to import (needs dir: storage)"},
			&cli.StringFlag{Name: "recordings-replica", EnvVars: env("RECORDINGS_REPLICA"), Usage: "this replica's name in the spool's work/ directory, stable across restarts (default: the host name)"},
			&cli.DurationFlag{Name: "recordings-retention", EnvVars: env("RECORDINGS_RETENTION"), Usage: "delete recordings everywhere this long after they ended, e.g. 8760h (default: keep)"},
			&cli.StringFlag{Name: "playback-url", EnvVars: env("PLAYBACK_URL"), Usage: "scheme and host of playback links, e.g. https://rec.example.com (default: the API request's own)"},
		},
		Action: serve,
	}
}

func serve(c *cli.Context) error {
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
		return errors.New("no BBB API secret: give --secret or BBB_BALANCER_SECRET (the secret front-ends sign their calls to the balancer with)")
	case c.String("agent-token") == "":
		return errors.New("no agent token: give --agent-token or BBB_BALANCER_AGENT_TOKEN (agents send it to register and report)")
	case adminToken == "":
		return errors.New("no admin token: give --admin-token or BBB_BALANCER_ADMIN_TOKEN (the CLI and the admin API need it)")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", c.String("log-level"))
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
		MaxBodyBytes:       c.Int64("max-body-bytes"),
		Policy:             placement.DefaultPolicy(),
		Logger:             log,
		Recordings: balancer.RecordingsConfig{
			Storage: c.String("recordings-storage"), S3Endpoint: c.String("recordings-s3-endpoint"),
			Spool: c.String("recordings-spool"), Replica: c.String("recordings-replica"), PlaybackURL: c.String("playback-url"),
			Retention: c.Duration("recordings-retention"),
		},
	}
	cfg.Policy.CPUCeiling = c.Float64("cpu-ceiling")
	if s := c.String("checksum-algorithms"); s != "" {
		for _, name := range strings.Split(s, ",") {
			a, err := bbb.ParseAlgorithm(name)
			if err != nil {
				return fmt.Errorf("--checksum-algorithms: %w", err)
			}
			cfg.Algorithms = append(cfg.Algorithms, a)
		}
	}
	a, err := bbb.ParseAlgorithm(c.String("node-checksum"))
	if err != nil {
		return fmt.Errorf("--node-checksum: %w", err)
	}
	cfg.NodeAlgorithm = a

	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()

	var st *store.Store
	if dsn := c.String("db"); dsn != "" {
		st, err = store.Open(ctx, dsn)
	} else {
		st, err = store.OpenDataDir(ctx, c.String("data-dir"))
	}
	if err != nil {
		return err
	}
	defer st.Close()

	srv, err := balancer.New(ctx, cfg, st)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.String("listen"))
	if err != nil {
		return fmt.Errorf("--listen %s: %w", c.String("listen"), err)
	}
	httpSrv := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	log.Info("bbb-balancer listening", "url", "http://"+ln.Addr().String(), "api", "http://"+ln.Addr().String()+"/bigbluebutton/api/", "database", st.Dialect())

	ran := make(chan error, 1)
	go func() { ran <- srv.Run(ctx) }()
	served := make(chan error, 1)
	go func() { served <- httpSrv.Serve(ln) }()
	var failed error
	select {
	case <-ctx.Done():
	case err := <-served: // Serve only returns before Shutdown when it fails
		failed = fmt.Errorf("serving HTTP on %s: %w", ln.Addr(), err)
	}
	stop()
	log.Info("shutting down")
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := httpSrv.Shutdown(shutdown); err != nil {
		log.Warn("shutdown", "err", err)
	}
	// Run writes the last reports; the database stays open until it is done.
	select {
	case err := <-ran:
		return errors.Join(failed, err)
	case <-shutdown.Done():
		log.Warn("the last reports were not written in time")
		return failed
	}
}
