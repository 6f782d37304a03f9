package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/bbb-agent/bbb-agent/agent"
	"github.com/bbb-agent/bbb-agent/agentapi"
	"github.com/bbb-agent/bbb-agent/recordings"
	"github.com/bbb-agent/bbb-agent/recordings/storage"
	"github.com/bbb-agent/bbb-agent/registrar"
	"github.com/urfave/cli/v2"
)

// recordingsFlags are run's recordings settings (--recordings-dir is with
// the host's, it also names the volume whose free space is reported).
func recordingsFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "recordings-storage", Category: catRecordings, Value: "none", EnvVars: env("RECORDINGS_STORAGE"), Usage: "where finished recordings go: none (they stay on the node), spool:/DIR (Scalelite's <record_id>.tar) or s3://BUCKET/PREFIX"},
		&cli.StringFlag{Name: "recordings-s3-endpoint", Category: catRecordings, EnvVars: env("RECORDINGS_S3_ENDPOINT"), Usage: "an S3-compatible server's URL (path-style addressing); default: AWS"},
		&cli.DurationFlag{Name: "recordings-delete-after", Category: catRecordings, EnvVars: env("RECORDINGS_DELETE_AFTER"), Usage: "remove a recording's local copy this long after the storage confirmed it; 0: never"},
		&cli.BoolFlag{Name: "drain-wait-recordings", Category: catDrain, Value: true, EnvVars: env("DRAIN_WAIT_RECORDINGS"), Usage: "a drain waits (within --drain-deadline) for BBB to finish processing recordings and for them to ship"},
	}
}

// recordingsConfig checks the recordings settings and opens
// --recordings-storage (without contacting it).
func recordingsConfig(ctx context.Context, c *cli.Context) (storage.Storage, error) {
	if d := c.Duration("recordings-delete-after"); d < 0 {
		return nil, settingError("recordings-delete-after", fmt.Errorf("%s is negative: give a duration, or 0 to keep local copies", d))
	}
	st, err := storage.Open(ctx, c.String("recordings-storage"), storage.Options{S3Endpoint: c.String("recordings-s3-endpoint")})
	if err != nil {
		return nil, settingError("recordings-storage", err)
	}
	return st, nil
}

// shipper is the recordings part of a daemon.
type shipper struct {
	sh    *recordings.Shipper
	queue *recordings.Queue
}

// run ships until ctx ends; its end is not an error of the daemon.
func (s *shipper) run(ctx context.Context) error {
	defer s.queue.Close()
	if err := s.sh.Run(ctx); err != nil && ctx.Err() == nil {
		return fmt.Errorf("recordings: %w", err)
	}
	return nil
}

// wireRecordings builds the recordings shipper of a BBB node: the queue in
// the state directory, the storage, and with registrar balancer the
// balancer's recordings index.
func wireRecordings(ctx context.Context, c *cli.Context, n *node, cfg *agent.Config, deps *agent.Deps, log *slog.Logger) (*shipper, error) {
	st := n.storage
	q, err := recordings.OpenQueue(ctx, c.String("state-dir"))
	if err != nil {
		return nil, fmt.Errorf("recordings queue in %s: %w", setting("state-dir"), err)
	}
	var idx recordings.Indexer
	if b, ok := n.reg.(*registrar.Balancer); ok && !storage.IsNone(st) {
		idx = indexer{b}
	}
	sh := recordings.NewShipper(recordings.Config{Dir: c.String("recordings-dir"), Queue: q, Storage: st, Indexer: idx,
		Logger: log, DeleteAfter: c.Duration("recordings-delete-after")})
	deps.Recordings = sh
	cfg.RecordingsStorage = st.String()
	cfg.DrainWaitRecordings = c.Bool("drain-wait-recordings")
	log.Info("recordings", "dir", c.String("recordings-dir"), "storage", st.String(), "indexed", idx != nil)
	return &shipper{sh: sh, queue: q}, nil
}

// checkStorage is check's line for the recordings storage: a probe written
// and deleted.
func checkStorage(ctx context.Context, st storage.Storage, k *checker) {
	if storage.IsNone(st) {
		k.warn("recordings storage", "none: recordings stay on this node (give "+setting("recordings-storage")+" to ship them)")
		return
	}
	if err := st.Check(ctx); err != nil {
		k.fail("recordings storage", fmt.Errorf("%s: %w", st, err))
		return
	}
	k.ok("recordings storage", st.String()+" takes a probe write and delete")
}

func recordingsCommand() *cli.Command {
	client := func(c *cli.Context) *agent.AdminClient { return agent.NewAdminClient(c.String("admin-socket")) }
	id := func(c *cli.Context) (string, error) {
		if c.NArg() != 1 {
			return "", cli.Exit("give one record ID", 2)
		}
		return c.Args().First(), nil
	}
	return &cli.Command{
		Name:  "recordings",
		Usage: "the node's recordings: list, ship, retry, backfill (and notify, for BBB's post_publish hook)",
		Subcommands: []*cli.Command{
			{
				Name: "list", Usage: "every recording format the agent knows: state, size, attempts, last error",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}},
				Action: func(c *cli.Context) error {
					rows, err := client(c).RecordingsList(c.Context)
					if err != nil {
						return err
					}
					if c.Bool("json") {
						enc := json.NewEncoder(c.App.Writer)
						enc.SetIndent("", "  ")
						if rows == nil {
							rows = []recordings.Row{}
						}
						return enc.Encode(rows)
					}
					printRecordings(c.App.Writer, rows)
					return nil
				},
			},
			{
				Name: "notify", Usage: "queue a recording BBB has published (run by the post_publish hook; never fails the publish)",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "record-id", Required: true, Usage: "the recording's ID"},
					&cli.StringFlag{Name: "format", Usage: "the format just published (default: every published format)"},
				},
				Action: func(c *cli.Context) error {
					ctx, cancel := context.WithTimeout(c.Context, 10*time.Second)
					defer cancel()
					if err := client(c).RecordingsNotify(ctx, c.String("record-id"), c.String("format")); err != nil {
						// BBB's publish step must not fail: the periodic scan
						// finds the recording anyway.
						fmt.Fprintf(c.App.ErrWriter, "bbb-agent recordings notify %s: %v (the agent's periodic scan will find it)\n", c.String("record-id"), err)
					}
					return nil
				},
			},
			{
				Name: "ship", Usage: "ship a recording now (every published format)", ArgsUsage: "RECORD_ID",
				Action: func(c *cli.Context) error {
					rid, err := id(c)
					if err != nil {
						return err
					}
					n, err := client(c).RecordingsShip(c.Context, rid)
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "%s: %s queued to ship now (bbb-agent recordings list shows their progress)\n", rid, plural(n, "format"))
					return nil
				},
			},
			{
				Name: "retry", Usage: "retry a recording's failed or quarantined formats now", ArgsUsage: "RECORD_ID",
				Action: func(c *cli.Context) error {
					rid, err := id(c)
					if err != nil {
						return err
					}
					n, err := client(c).RecordingsRetry(c.Context, rid)
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "%s: %s queued again\n", rid, plural(n, "format"))
					return nil
				},
			},
			{
				Name: "backfill", Usage: "scan the recordings directory now and queue every format not shipped yet (recordings from before the agent)",
				Action: func(c *cli.Context) error {
					n, err := client(c).RecordingsBackfill(c.Context)
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "%s queued\n", plural(n, "format"))
					return nil
				},
			},
		},
	}
}

// printRecordings prints the queue for a person.
func printRecordings(w io.Writer, rows []recordings.Row) {
	if len(rows) == 0 {
		fmt.Fprintln(w, "no recordings")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RECORD ID\tFORMAT\tSTATE\tSIZE\tATTEMPTS\tSHIPPED\tLAST ERROR")
	for _, r := range rows {
		shipped := "-"
		if !r.ShippedAt.IsZero() {
			shipped = localTime(r.ShippedAt)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", r.RecordID, r.Format, r.State, bytes(uint64(max(r.Size, 0))), r.Attempts, shipped, r.LastError)
	}
	tw.Flush()
}

// recordingsStatus is status's lines about recordings.
func recordingsStatus(row func(k, v string), r *agent.RecordingsStatus) {
	b := r.Backlog
	if b.KeptLocally {
		row("recordings", fmt.Sprintf("storage none: recordings stay on this node (%d processing)", b.Processing))
	} else {
		v := fmt.Sprintf("to %s: %d processing, %d queued, %d shipping, %d failed, %d quarantined", r.Storage, b.Processing, b.Queued, b.Shipping, b.Failed, b.Quarantined)
		if b.Unindexed > 0 {
			v += fmt.Sprintf(", %d not indexed yet", b.Unindexed)
		}
		row("recordings", v)
		row("  shipped", fmt.Sprintf("%s, %s since start (%s)", plural(int(r.Shipped), "format"), bytes(r.BytesShipped), plural(int(r.Failed), "failed attempt")))
	}
	if b.FreedBytes > 0 {
		row("  freed", bytes(uint64(b.FreedBytes))+" of local copies deleted after shipping")
	}
	if b.LastFailure != "" {
		row("  last failure", localTime(b.LastFailureAt)+" "+b.LastFailure)
	}
	if r.Error != "" {
		row("  error", r.Error)
	}
}

// indexer tells bbb-balancer about shipped recordings; before the node is
// registered (again, after a restart) that is not an error but "not yet".
type indexer struct{ b *registrar.Balancer }

func (i indexer) Index(ctx context.Context, m agentapi.RecordingMetadata) error {
	err := i.b.Index(ctx, m)
	if errors.Is(err, registrar.ErrNotRegistered) {
		return fmt.Errorf("%w: %w", recordings.ErrNotYet, err)
	}
	return err
}
