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
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/bbb/sim"
)

// shutdownTimeout bounds how long a stop waits for requests in flight.
const shutdownTimeout = 5 * time.Second

func main() {
	if err := app().Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "bbb-sim:", err)
		os.Exit(1)
	}
}

func env(name string) []string { return []string{"BBB_SIM_" + name} }

func app() *cli.App {
	return &cli.App{
		Name:            "bbb-sim",
		Usage:           "a simulated BigBlueButton server for tests",
		HideHelpCommand: true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:8090", EnvVars: env("LISTEN"),
				Usage: "address to listen on; port 0 picks a free port"},
			&cli.StringFlag{Name: "secret", Required: true, EnvVars: env("SECRET"),
				Usage: "the shared secret API checksums are made with"},
			&cli.StringSliceFlag{Name: "extra-secret", EnvVars: env("EXTRA_SECRETS"),
				Usage: "further secrets to accept, as during a rotation (repeatable or comma-separated)"},
			&cli.StringFlag{Name: "recordings-dir", EnvVars: env("RECORDINGS_DIR"),
				Usage: "directory that plays /var/bigbluebutton: recordings are published under it and read back at start"},
			&cli.StringFlag{Name: "client-url", EnvVars: env("CLIENT_URL"),
				Usage: "HTML5 client URL that join redirects to (default http://HOST/html5client/join)"},
			&cli.StringSliceFlag{Name: "checksum-algorithms", EnvVars: env("CHECKSUM_ALGORITHMS"),
				Usage: "checksum algorithms to accept: sha1, sha256, sha384, sha512 (default all)"},
			&cli.Int64Flag{Name: "recording-file-size", Value: sim.DefaultRecordingFileSize, EnvVars: env("RECORDING_FILE_SIZE"),
				Usage: "size in bytes of each media file of a published recording"},
			&cli.StringFlag{Name: "bbb-version", Value: sim.DefaultBBBVersion, EnvVars: env("BBB_VERSION"),
				Usage: "BBB version the API root reports"},
			&cli.Uint64Flag{Name: "seed", EnvVars: env("SEED"),
				Usage: "seed for generated IDs, passwords and tokens (0: random)"},
			&cli.DurationFlag{Name: "max-hang", Value: sim.DefaultMaxHang, EnvVars: env("MAX_HANG"),
				Usage: "longest time the hang answering mode holds a request"},
			&cli.StringFlag{Name: "log-level", Value: "info", EnvVars: env("LOG_LEVEL"),
				Usage: "debug, info, warn or error"},
		},
		Action: run,
	}
}

func run(c *cli.Context) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: level}))

	var algs []bbb.Algorithm
	for _, name := range c.StringSlice("checksum-algorithms") {
		alg, err := bbb.ParseAlgorithm(name)
		if err != nil {
			return fmt.Errorf("--checksum-algorithms: %w", err)
		}
		algs = append(algs, alg)
	}
	if c.String("secret") == "" {
		return errors.New("--secret must not be empty")
	}
	s := sim.New(sim.Config{
		Secret:            c.String("secret"),
		Secrets:           c.StringSlice("extra-secret"),
		AllowedAlgorithms: algs,
		RecordingsDir:     c.String("recordings-dir"),
		ClientURL:         c.String("client-url"),
		BBBVersion:        c.String("bbb-version"),
		Seed:              c.Uint64("seed"),
		RecordingFileSize: c.Int64("recording-file-size"),
		MaxHang:           c.Duration("max-hang"),
		Logger:            log,
	})

	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", c.String("listen"))
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	url := "http://" + ln.Addr().String()
	log.Info("bbb-sim started", "api", url+"/bigbluebutton/api/", "recordings_dir", c.String("recordings-dir"))
	fmt.Fprintf(c.App.Writer, "listening on %s\n", url)

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	log.Info("bbb-sim stopping")
	// Release requests that the hang mode holds, then let the others finish.
	_ = s.SetAnswering(sim.AnswerRefuse)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("requests still running at shutdown; closing their connections", "err", err)
		_ = srv.Close()
	}
	log.Info("bbb-sim stopped")
	return nil
}
