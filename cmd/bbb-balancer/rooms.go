package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bbb-agent/bbb-agent/balancer"
	"github.com/bbb-agent/bbb-agent/balancer/adminapi"
	"github.com/bbb-agent/bbb-agent/balancer/web"
	"github.com/urfave/cli/v2"
)

// roomsCommand administers room links: a meeting opened with a moderator
// link and a participant link, no front-end needed.
func roomsCommand() *cli.Command {
	return &cli.Command{
		Name:  "rooms",
		Usage: "rooms opened with links (one for moderators, one for participants), no front-end needed",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "create a room and print its two links",
				ArgsUsage: "NAME",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "record", Usage: "let moderators record the meeting"},
					&cli.IntFlag{Name: "max-participants", Usage: "at most this many people (0: no limit)"},
					&cli.BoolFlag{Name: "wait-for-moderator", Usage: "participants wait until a moderator has started the room"},
				},
				Action: roomArgs(1, "the room's name", func(c *cli.Context, args []string) error {
					var links web.RoomLinks
					err := roomCall(c, http.MethodPost, balancer.PathRooms, balancer.CreateRoomRequest{Name: args[0], Record: c.Bool("record"),
						MaxParticipants: c.Int("max-participants"), WaitForModerator: c.Bool("wait-for-moderator")}, &links)
					if err != nil {
						return err
					}
					printLinks(c.App.Writer, links)
					return nil
				}),
			},
			{
				Name:  "list",
				Usage: "list the rooms (their links are shown only when created or rotated)",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}},
				Action: roomArgs(0, "no argument", func(c *cli.Context, _ []string) error {
					var rooms []balancer.Room
					if err := roomCall(c, http.MethodGet, balancer.PathRooms, nil, &rooms); err != nil {
						return err
					}
					if c.Bool("json") {
						return printJSON(c.App.Writer, rooms)
					}
					tw := tabwriter.NewWriter(c.App.Writer, 0, 0, 2, ' ', 0)
					fmt.Fprintln(tw, "ID\tNAME\tMEETING ID\tRECORD\tMAX\tWAIT FOR MODERATOR\tCREATED")
					for _, r := range rooms {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%t\t%d\t%t\t%s\n", r.ID, r.Name, r.MeetingID, r.Record, r.MaxParticipants,
							r.WaitForModerator, localTime(r.CreatedAt))
					}
					return tw.Flush()
				}),
			},
			{
				Name:      "rotate",
				Usage:     "replace a room's two links with new ones (the old ones stop working)",
				ArgsUsage: "ID",
				Action: roomArgs(1, "exactly one room ID (bbb-balancer rooms list shows them)", func(c *cli.Context, args []string) error {
					var links web.RoomLinks
					if err := roomCall(c, http.MethodPost, balancer.PathRoom+url.PathEscape(args[0])+"/rotate", struct{}{}, &links); err != nil {
						return err
					}
					printLinks(c.App.Writer, links)
					return nil
				}),
			},
			{
				Name:      "delete",
				Usage:     "delete a room: its links stop working (a meeting running in it goes on)",
				ArgsUsage: "ID",
				Action: roomArgs(1, "exactly one room ID (bbb-balancer rooms list shows them)", func(c *cli.Context, args []string) error {
					if err := roomCall(c, http.MethodDelete, balancer.PathRoom+url.PathEscape(args[0]), nil, nil); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "room %s deleted\n", args[0])
					return nil
				}),
			},
		},
	}
}

func printLinks(w io.Writer, l web.RoomLinks) {
	fmt.Fprintf(w, "room %q (id %s)\nmoderator:   %s\nparticipant: %s\n", l.Name, l.ID, l.Moderator, l.Viewer)
}

// roomArgs is withArgs for the rooms commands: flags may follow the
// arguments (`rooms create "Physics 101" --record`).
func roomArgs(n int, need string, action func(c *cli.Context, args []string) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		args, help, err := positional(c)
		if err != nil {
			return errors.New(strings.Replace(err.Error(), "servers ", "rooms ", 1))
		}
		if help {
			cli.HelpPrinter(c.App.Writer, cli.CommandHelpTemplate, c.Command)
			return nil
		}
		if len(args) != n {
			return fmt.Errorf("rooms %s needs %s (usage: bbb-balancer rooms %s [options] %s)", c.Command.Name, need, c.Command.Name, c.Command.ArgsUsage)
		}
		return action(c, args)
	}
}

// roomCall calls the rooms admin API.
func roomCall(c *cli.Context, method, path string, in, out any) error {
	base, token := strings.TrimRight(c.String("url"), "/"), c.String("admin-token")
	if token == "" {
		return errors.New("no admin token: give --admin-token or BBB_BALANCER_ADMIN_TOKEN")
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(c.Context, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return fmt.Errorf("--url %q: %w", base, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the balancer at %s (is bbb-balancer serve running there? check --url or BBB_BALANCER_URL): %w", base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("balancer at %s: reading the answer: %w", base, err)
	}
	if resp.StatusCode/100 != 2 {
		var e adminapi.Error
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return fmt.Errorf("balancer at %s: %s", base, e.Error)
		}
		return fmt.Errorf("balancer at %s: HTTP %d", base, resp.StatusCode)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("balancer at %s: unexpected answer: %w", base, err)
		}
	}
	return nil
}
