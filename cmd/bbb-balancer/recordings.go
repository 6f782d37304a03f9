package main

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bbb-agent/bbb-agent/balancer/adminapi"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/urfave/cli/v2"
)

// recordingsCommand lists, shows and deletes recordings through the
// balancer's own BBB API, signed with its secret: the same rules and the
// same storage changes as a front-end's calls.
func recordingsCommand() *cli.Command {
	secret := &cli.StringFlag{Name: "secret", EnvVars: []string{"BBB_BALANCER_SECRET"}, Usage: "the balancer's BBB API secret"}
	return &cli.Command{
		Name:  "recordings",
		Usage: "list, show or delete the fleet's recordings",
		Subcommands: []*cli.Command{
			{
				Name:  "list",
				Usage: "list recordings, newest first",
				Flags: []cli.Flag{secret,
					&cli.StringFlag{Name: "state", Value: "any", Usage: "states, comma-separated: published, unpublished, deleted, any"},
					&cli.StringFlag{Name: "meeting", Usage: "only these meeting IDs, comma-separated"},
					&cli.IntFlag{Name: "limit", Value: 100, Usage: "at most this many (1-100)"},
					&cli.IntFlag{Name: "offset", Usage: "skip this many"},
					&cli.BoolFlag{Name: "json", Usage: "print JSON"},
				},
				Action: func(c *cli.Context) error {
					q := url.Values{"state": {c.String("state")}, "limit": {fmt.Sprint(c.Int("limit"))}, "offset": {fmt.Sprint(c.Int("offset"))}}
					if m := c.String("meeting"); m != "" {
						q.Set("meetingID", m)
					}
					resp, err := getRecordings(c, q)
					if err != nil {
						return err
					}
					if c.Bool("json") {
						return printJSON(c.App.Writer, resp.Recordings)
					}
					printRecordings(c.App.Writer, resp)
					return nil
				},
			},
			{
				Name:      "show",
				Usage:     "print one recording as JSON",
				ArgsUsage: "RECORD_ID",
				Flags:     []cli.Flag{secret},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return errors.New("usage: bbb-balancer recordings show RECORD_ID")
					}
					resp, err := getRecordings(c, url.Values{"recordID": {c.Args().First()}, "state": {"any"}})
					if err != nil {
						return err
					}
					for _, r := range resp.Recordings {
						if r.RecordID == c.Args().First() {
							return printJSON(c.App.Writer, r)
						}
					}
					return fmt.Errorf("no recording %q", c.Args().First())
				},
			},
			{
				Name:      "delete",
				Usage:     "delete recordings everywhere (every copy, every object); the index keeps them as deleted",
				ArgsUsage: "RECORD_ID...",
				Flags:     []cli.Flag{secret},
				Action: func(c *cli.Context) error {
					if c.NArg() == 0 {
						return errors.New("usage: bbb-balancer recordings delete RECORD_ID...")
					}
					cl, err := apiClient(c)
					if err != nil {
						return err
					}
					if err := cl.DeleteRecordings(c.Context, c.Args().Slice()); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "deleted %s\n", strings.Join(c.Args().Slice(), " "))
					return nil
				},
			},
			{
				Name:  "status",
				Usage: "count the recordings, their bytes, the spool's and the callbacks' backlog",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}},
				Action: func(c *cli.Context) error {
					cl, err := client(c)
					if err != nil {
						return err
					}
					st, err := cl.RecordingsStatus(c.Context)
					if err != nil {
						return err
					}
					if c.Bool("json") {
						return printJSON(c.App.Writer, st)
					}
					printRecordingsStatus(c.App.Writer, st)
					return nil
				},
			},
			{
				Name:      "import",
				Usage:     "import Scalelite-format <record_id>.tar files now, through the balancer's spool importer (paths on the balancer's host)",
				ArgsUsage: "TAR...",
				Action: func(c *cli.Context) error {
					if c.NArg() == 0 {
						return errors.New("usage: bbb-balancer recordings import TAR...")
					}
					var tars []string
					for _, p := range c.Args().Slice() {
						abs, err := filepath.Abs(p)
						if err != nil {
							return err
						}
						tars = append(tars, abs)
					}
					cl, err := client(c)
					if err != nil {
						return err
					}
					results, err := cl.ImportRecordings(c.Context, adminapi.ImportRequest{Tars: tars})
					if err != nil {
						return err
					}
					failed := 0
					for _, r := range results {
						line := r.Tar + ": " + r.Result
						if r.Reason != "" {
							line += ": " + r.Reason
						}
						if r.Result != adminapi.ImportImported {
							failed++
						}
						fmt.Fprintln(c.App.Writer, line)
					}
					if failed > 0 {
						return fmt.Errorf("%d of %d tars not imported", failed, len(results))
					}
					return nil
				},
			},
		},
	}
}

// printRecordingsStatus prints the recordings' summary line.
func printRecordingsStatus(w io.Writer, st adminapi.RecordingsStatus) {
	spool := "no spool"
	if st.SpoolWaiting >= 0 {
		spool = fmt.Sprintf("spool %d waiting, %d failed", st.SpoolWaiting, st.SpoolFailed)
	}
	fmt.Fprintf(w, "Recordings: %d (%s), %s, %s queued\n", st.Recordings, humanBytes(st.Bytes), spool, plural(st.CallbacksQueued, "callback"))
}

// humanBytes writes n bytes in binary units.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func apiClient(c *cli.Context) (*bbb.Client, error) {
	secret := c.String("secret")
	if secret == "" {
		return nil, errors.New("no secret: give --secret or BBB_BALANCER_SECRET (the balancer's BBB API secret)")
	}
	return bbb.NewClient(strings.TrimSuffix(c.String("url"), "/"), secret)
}

func getRecordings(c *cli.Context, q url.Values) (*bbb.GetRecordingsResponse, error) {
	cl, err := apiClient(c)
	if err != nil {
		return nil, err
	}
	var resp bbb.GetRecordingsResponse
	if err := cl.Get(c.Context, bbb.CallGetRecordings, q, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

func printRecordings(w io.Writer, resp *bbb.GetRecordingsResponse) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RECORD ID\tMEETING\tNAME\tSTATE\tFORMATS\tSIZE\tSTART")
	for _, r := range resp.Recordings {
		var formats []string
		for _, f := range r.Playback {
			formats = append(formats, f.Type)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", r.RecordID, r.MeetingID, r.Name, r.State, strings.Join(formats, ","),
			r.Size, time.UnixMilli(r.StartTime).UTC().Format(time.RFC3339))
	}
	tw.Flush()
	if resp.TotalElements != nil && *resp.TotalElements > len(resp.Recordings) {
		fmt.Fprintf(w, "(%d of %d; use --offset for more)\n", len(resp.Recordings), *resp.TotalElements)
	}
}
