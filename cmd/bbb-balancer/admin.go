package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bbb-agent/bbb-agent/balancer/adminapi"
	"github.com/bbb-agent/bbb-agent/balancer/fleet"
	"github.com/urfave/cli/v2"
)

func client(c *cli.Context) (*adminapi.Client, error) {
	return adminapi.NewClient(c.String("url"), c.String("admin-token"))
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show every server: state, liveness, meetings, users, load",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}},
		Action: func(c *cli.Context) error {
			cl, err := client(c)
			if err != nil {
				return err
			}
			servers, err := cl.Servers(c.Context)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, servers)
			}
			printStatus(c.App.Writer, servers)
			return nil
		},
	}
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printStatus prints BBB nodes, then TURN nodes, as tables.
func printStatus(w io.Writer, servers []adminapi.Server) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOSTNAME\tSTATE\tSTATUS\tMEETINGS\tUSERS\tLARGEST MEETING\tVIDEOS\tLOAD\tCPU\tLAST REPORT")
	for _, s := range servers {
		if s.Role == fleet.RoleTURN {
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%.1f\t%.0f%%\t%s\n", s.Hostname, s.State, s.Status,
			s.Meetings, s.Users, s.LargestMeeting, s.Videos, s.Load, s.CPUPercent, age(s.LastReportAgeSeconds))
	}
	tw.Flush()
	var turn []adminapi.Server
	for _, s := range servers {
		if s.Role == fleet.RoleTURN {
			turn = append(turn, s)
		}
	}
	if len(turn) == 0 {
		return
	}
	fmt.Fprintln(w, "\nTURN servers:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tSTATUS\tCPU\tLAST REPORT")
	for _, s := range turn {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f%%\t%s\n", s.Name, s.State, s.Status, s.CPUPercent, age(s.LastReportAgeSeconds))
	}
	tw.Flush()
}

func age(sec *float64) string {
	if sec == nil {
		return "never"
	}
	return (time.Duration(*sec * float64(time.Second))).Round(100*time.Millisecond).String() + " ago"
}

func serversCommand() *cli.Command {
	idArg := func(c *cli.Context) (string, error) {
		if c.NArg() != 1 {
			return "", fmt.Errorf("%s needs exactly one server ID or name (bbb-balancer servers list shows them)", c.Command.Name)
		}
		return c.Args().First(), nil
	}
	setState := func(st fleet.AdminState) cli.ActionFunc {
		return func(c *cli.Context) error {
			id, err := idArg(c)
			if err != nil {
				return err
			}
			cl, err := client(c)
			if err != nil {
				return err
			}
			s, err := cl.SetState(c.Context, id, adminapi.SetStateRequest{State: st})
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "%s (%s) is now %s\n", s.Hostname, s.ID, s.State)
			return nil
		}
	}
	return &cli.Command{
		Name:  "servers",
		Usage: "manage servers",
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "add a BBB server without an agent (the balancer polls it); prints its id",
				ArgsUsage: "API_URL SECRET",
				Flags: []cli.Flag{
					&cli.StringSliceFlag{Name: "tag", Usage: "server tag for meta_server-tag (repeatable)"},
					&cli.Float64Flag{Name: "load-multiplier", Value: 1, Usage: "weight of this server's load (2 = counts double)"},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() != 2 {
						return errors.New("servers add needs API_URL and SECRET, e.g. servers add https://bbb1.example.com/bigbluebutton/api/ SECRET")
					}
					cl, err := client(c)
					if err != nil {
						return err
					}
					s, err := cl.AddServer(c.Context, adminapi.AddServerRequest{URL: c.Args().Get(0), Secret: c.Args().Get(1),
						Tags: c.StringSlice("tag"), LoadMultiplier: c.Float64("load-multiplier")})
					if err != nil {
						return err
					}
					fmt.Fprintln(c.App.Writer, s.ID)
					return nil
				},
			},
			{
				Name:  "list",
				Usage: "list servers with their id, URL, state and tags",
				Action: func(c *cli.Context) error {
					cl, err := client(c)
					if err != nil {
						return err
					}
					servers, err := cl.Servers(c.Context)
					if err != nil {
						return err
					}
					tw := tabwriter.NewWriter(c.App.Writer, 0, 0, 2, ' ', 0)
					fmt.Fprintln(tw, "ID\tNAME\tURL\tROLE\tSOURCE\tSTATE\tSTATUS\tTAGS\tMULTIPLIER")
					for _, s := range servers {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Name, s.URL, s.Role, s.Source, s.State, s.Status,
							strings.Join(s.Tags, ";"), strconv.FormatFloat(s.LoadMultiplier, 'g', -1, 64))
					}
					return tw.Flush()
				},
			},
			{Name: "enable", Usage: "let the server take new meetings", ArgsUsage: "ID", Action: setState(fleet.Enabled)},
			{Name: "cordon", Usage: "no new meetings; running ones go on (disabled once empty)", ArgsUsage: "ID", Action: setState(fleet.Cordoned)},
			{Name: "disable", Usage: "take the server out of service", ArgsUsage: "ID", Action: setState(fleet.Disabled)},
			{
				Name:      "panic",
				Usage:     "disable the server and END EVERY MEETING on it",
				ArgsUsage: "ID",
				Flags:     []cli.Flag{&cli.BoolFlag{Name: "yes", Usage: "do not ask for confirmation on a terminal"}},
				Action: func(c *cli.Context) error {
					id, err := idArg(c)
					if err != nil {
						return err
					}
					cl, err := client(c)
					if err != nil {
						return err
					}
					s, err := cl.Server(c.Context, id)
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "panic: disabling %s and ending its %d meetings (%d users). To drain without ending meetings, use `servers cordon %s`.\n",
						s.Hostname, s.Meetings, s.Users, id)
					if !c.Bool("yes") && isTerminal(os.Stdin) && !confirm(c.Context, c.App.Writer, os.Stdin) {
						return errors.New("panic cancelled")
					}
					res, err := cl.Panic(c.Context, s.ID)
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "ended %d meetings on %s", len(res.Ended), s.Hostname)
					if len(res.Failed) > 0 {
						fmt.Fprintf(c.App.Writer, "; could not end %d: %s", len(res.Failed), strings.Join(res.Failed, ", "))
					}
					fmt.Fprintln(c.App.Writer)
					return nil
				},
			},
			{
				Name:      "remove",
				Usage:     "forget the server (an agent that still runs registers it again)",
				ArgsUsage: "ID",
				Action: func(c *cli.Context) error {
					id, err := idArg(c)
					if err != nil {
						return err
					}
					cl, err := client(c)
					if err != nil {
						return err
					}
					s, err := cl.RemoveServer(c.Context, id)
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "removed %s (%s)\n", s.Hostname, s.ID)
					return nil
				},
			},
		},
	}
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func confirm(ctx context.Context, w io.Writer, r io.Reader) bool {
	fmt.Fprint(w, "Type yes to go on: ")
	line, _ := bufio.NewReader(r).ReadString('\n')
	return ctx.Err() == nil && strings.TrimSpace(line) == "yes"
}
