package main

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

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
		},
	}
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
