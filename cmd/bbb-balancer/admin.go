package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bbb-agent/bbb-agent/balancer/adminapi"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/urfave/cli/v2"
)

// client is the admin API client the global flags describe; its errors
// name the flag and the variable to fix.
func client(c *cli.Context) (*adminapi.Client, error) {
	cl, err := adminapi.NewClient(c.String("url"), c.String("admin-token"))
	switch {
	case errors.Is(err, adminapi.ErrNoToken):
		return nil, fmt.Errorf("%w: give --admin-token or set BBB_BALANCER_ADMIN_TOKEN", err)
	case err != nil:
		return nil, fmt.Errorf("--url (BBB_BALANCER_URL): %w", err)
	}
	return cl, nil
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show every server: state, liveness, meetings, participants, load",
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
			if st, err := cl.RecordingsStatus(c.Context); err == nil {
				fmt.Fprintln(c.App.Writer)
				printRecordingsStatus(c.App.Writer, st)
			}
			return nil
		},
	}
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printStatus prints BBB nodes, then TURN nodes, as tables: the columns of
// Scalelite's `rake status` (with the node's name for its host name), then
// CPU, report age and why a node is not healthy ("-" when it is).
func printStatus(w io.Writer, servers []adminapi.Server) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tSTATUS\tMEETINGS\tPARTICIPANTS\tLARGEST MEETING\tVIDEOS\tLOAD\tBBB VERSION\tTAGS\tCPU PERCENT\tLAST REPORT AGE\tREASON")
	for _, s := range servers {
		if s.Role == fleet.RoleTURN {
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%.1f\t%s\t%s\t%.0f%%\t%s\t%s\n", cmp.Or(s.Name, s.Hostname), s.State, s.Status,
			s.Meetings, s.Participants, s.LargestMeeting, s.Videos, s.Load, orDash(s.BBBVersion), orDash(strings.Join(s.Tags, ",")),
			s.CPUPercent, age(s.LastReportAgeSeconds), orDash(s.Reason))
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
	fmt.Fprintln(tw, "NAME\tSTATE\tSTATUS\tCPU PERCENT\tLAST REPORT AGE\tREASON")
	for _, s := range turn {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f%%\t%s\t%s\n", s.Name, s.State, s.Status, s.CPUPercent, age(s.LastReportAgeSeconds), orDash(s.Reason))
	}
	tw.Flush()
}

// orDash is s, or "-" for nothing, so that a table's empty cell reads as one.
func orDash(s string) string { return cmp.Or(s, "-") }

// age tells how long ago a node last reported. A report stamped slightly in
// the future (another replica's clock) counts as just now.
func age(sec *float64) string {
	if sec == nil {
		return "never"
	}
	return max(time.Duration(*sec*float64(time.Second)), 0).Round(100*time.Millisecond).String() + " ago"
}

// withArgs wraps a servers subcommand's action: it takes the command's flags
// also after the arguments (urfave/cli stops parsing flags at the first
// argument, and operators write `servers panic ID --yes`), answers --help
// there, and wants exactly n arguments; need says which, for the error.
func withArgs(n int, need string, action func(c *cli.Context, args []string) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		args, help, err := positional(c)
		if err != nil {
			return err
		}
		if help {
			cli.HelpPrinter(c.App.Writer, cli.CommandHelpTemplate, c.Command)
			return nil
		}
		if len(args) != n {
			return fmt.Errorf("servers %s needs %s (usage: bbb-balancer servers %s [options] %s)", c.Command.Name, need, c.Command.Name, c.Command.ArgsUsage)
		}
		return action(c, args)
	}
}

// positional splits the command's arguments from its flags written after
// them, and sets those flags. A "--" ends the flags (for a secret that starts
// with a dash). help reports a --help or -h among them.
func positional(c *cli.Context) (args []string, help bool, err error) {
	rest := c.Args().Slice()
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--" {
			return append(args, rest[i+1:]...), help, nil
		}
		if len(a) < 2 || a[0] != '-' {
			args = append(args, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name == "help" || name == "h" {
			help = true
			continue
		}
		f := commandFlag(c.Command, name)
		if f == nil {
			return nil, false, fmt.Errorf("servers %s: flag %s is not defined (bbb-balancer servers %s --help lists them)", c.Command.Name, a, c.Command.Name)
		}
		if _, isBool := f.(*cli.BoolFlag); isBool && !hasValue {
			value, hasValue = "true", true
		}
		if !hasValue {
			if i+1 == len(rest) {
				return nil, false, fmt.Errorf("servers %s: flag %s needs a value", c.Command.Name, a)
			}
			i++
			value = rest[i]
		}
		if err := c.Set(name, value); err != nil {
			return nil, false, fmt.Errorf("servers %s: flag %s: %w", c.Command.Name, a, err)
		}
	}
	return args, help, nil
}

func commandFlag(cmd *cli.Command, name string) cli.Flag {
	for _, f := range cmd.Flags {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}

// needID is what the commands on one server take.
const needID = "exactly one server ID or name (bbb-balancer servers list shows them)"

func serversCommand() *cli.Command {
	setState := func(st fleet.AdminState) cli.ActionFunc {
		return withArgs(1, needID, func(c *cli.Context, args []string) error {
			cl, err := client(c)
			if err != nil {
				return err
			}
			s, err := cl.SetState(c.Context, args[0], adminapi.SetStateRequest{State: st})
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "%s (%s) is now %s\n", s.Hostname, s.ID, s.State)
			return nil
		})
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
					&cli.Float64Flag{Name: "load-multiplier", Usage: "weight of this server's load (2 = counts double; default 1)"},
				},
				Action: withArgs(2, "API_URL and SECRET, e.g. servers add https://bbb1.example.com/bigbluebutton/api/ SECRET", func(c *cli.Context, args []string) error {
					cl, err := client(c)
					if err != nil {
						return err
					}
					s, err := cl.AddServer(c.Context, adminapi.AddServerRequest{URL: args[0], Secret: args[1],
						Tags: c.StringSlice("tag"), LoadMultiplier: c.Float64("load-multiplier")})
					if err != nil {
						return err
					}
					fmt.Fprintln(c.App.Writer, s.ID)
					if !s.Healthy {
						// The id is the output scripts read; the warning goes beside it.
						fmt.Fprintf(c.App.ErrWriter, "warning: %s was added but is not healthy: %s\n"+
							"It takes no meetings until it answers; the balancer keeps polling it (bbb-balancer status shows its reason).\n",
							s.Name, s.Reason)
					}
					return nil
				}),
			},
			{
				Name:      "update",
				Usage:     "change a server's tags or load multiplier (what is not given stays)",
				ArgsUsage: "ID",
				Flags: []cli.Flag{
					&cli.StringSliceFlag{Name: "tag", Usage: "the server's tags, replacing the old ones (repeatable; --tag '' clears them)"},
					&cli.Float64Flag{Name: "load-multiplier", Usage: "weight of this server's load (2 = counts double)"},
				},
				Action: withArgs(1, needID, func(c *cli.Context, args []string) error {
					var req adminapi.UpdateServerRequest
					if c.IsSet("tag") {
						tags := slices.DeleteFunc(c.StringSlice("tag"), func(t string) bool { return t == "" })
						req.Tags = &tags
					}
					if c.IsSet("load-multiplier") {
						m := c.Float64("load-multiplier")
						req.LoadMultiplier = &m
					}
					if req.Tags == nil && req.LoadMultiplier == nil {
						return errors.New("nothing to update: give --tag and/or --load-multiplier")
					}
					cl, err := client(c)
					if err != nil {
						return err
					}
					s, err := cl.UpdateServer(c.Context, args[0], req)
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "%s (%s): tags %s, load multiplier %g\n", s.Hostname, s.ID, strings.Join(s.Tags, ","), s.LoadMultiplier)
					return nil
				}),
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
					return printList(c.App.Writer, servers)
				},
			},
			{Name: "enable", Usage: "let the server take new meetings", ArgsUsage: "ID", Action: setState(fleet.Enabled)},
			{Name: "cordon", Usage: "no new meetings; running ones go on (disabled once empty)", ArgsUsage: "ID", Action: setState(fleet.Cordoned)},
			{Name: "disable", Usage: "no new meetings until enabled again; running ones go on and stay joinable", ArgsUsage: "ID",
				Description: "The server takes no new meetings until `servers enable ID`. Its running meetings keep running and stay joinable:\n" +
					"joins, getMeetingInfo and end through the balancer still reach them, and a create of one of them goes to it.\n" +
					"Unlike cordon, nothing drains: its agent, if it has one, keeps it in the fleet instead of leaving once it is\n" +
					"empty. To end its meetings now: servers panic ID.",
				Action: setState(fleet.Disabled)},
			{
				Name:      "panic",
				Usage:     "disable the server and END EVERY MEETING on it",
				ArgsUsage: "ID",
				Flags:     []cli.Flag{&cli.BoolFlag{Name: "yes", Usage: "go on without asking (required when standard input is not a terminal)"}},
				Action: withArgs(1, needID, func(c *cli.Context, args []string) error {
					id := args[0]
					cl, err := client(c)
					if err != nil {
						return err
					}
					s, err := cl.Server(c.Context, id)
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "panic: disabling %s and ending its %s (%s). To drain without ending meetings, use `servers cordon %s`.\n",
						s.Hostname, plural(s.Meetings, "meeting"), plural(s.Participants, "participant"), id)
					if !c.Bool("yes") {
						if !isTerminal(os.Stdin) {
							return fmt.Errorf("panic cancelled, nothing changed: standard input is not a terminal to confirm on; give --yes (servers panic %s --yes)", id)
						}
						if !confirm(c.Context, c.App.Writer, os.Stdin) {
							return errors.New("panic cancelled, nothing changed")
						}
					}
					res, err := cl.Panic(c.Context, s.ID)
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "ended %s on %s\n", plural(len(res.Ended), "meeting"), s.Hostname)
					if len(res.Failed) > 0 {
						return fmt.Errorf("%s is disabled, but %s could not be ended: %s (run servers panic %s again)",
							s.Hostname, plural(len(res.Failed), "meeting"), strings.Join(res.Failed, ", "), id)
					}
					return nil
				}),
			},
			{
				Name:      "allow-takeover",
				Usage:     "let the next agent that registers this name with --takeover take it over (a replaced server, a lost node credential)",
				ArgsUsage: "NAME",
				Action: withArgs(1, needID, func(c *cli.Context, args []string) error {
					cl, err := client(c)
					if err != nil {
						return err
					}
					s, err := cl.AllowTakeover(c.Context, args[0])
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "the next agent registering %s with --takeover takes it over\n", s.Name)
					return nil
				}),
			},
			{
				Name:      "remove",
				Usage:     "forget the server (an agent that still runs registers it again); asks first when it has meetings",
				ArgsUsage: "ID",
				Flags:     []cli.Flag{&cli.BoolFlag{Name: "yes", Usage: "go on without asking (required when the server has meetings and standard input is not a terminal)"}},
				Action: withArgs(1, needID, func(c *cli.Context, args []string) error {
					cl, err := client(c)
					if err != nil {
						return err
					}
					s, err := cl.Server(c.Context, args[0])
					if err != nil {
						return err
					}
					if s.Meetings > 0 && !c.Bool("yes") {
						fmt.Fprintf(c.App.Writer, "%s has %s (%s). Removing it does not end them: they go on on the server, "+
							"but the balancer forgets them, so joins and getMeetingInfo through the balancer answer notFound and a new create "+
							"starts the room again on another server. To empty it first: servers cordon %s.\n",
							s.Hostname, plural(s.Meetings, "meeting"), plural(s.Participants, "participant"), args[0])
						if !isTerminal(os.Stdin) {
							return fmt.Errorf("remove cancelled, nothing changed: standard input is not a terminal to confirm on; give --yes (servers remove %s --yes)", args[0])
						}
						if !confirm(c.Context, c.App.Writer, os.Stdin) {
							return errors.New("remove cancelled, nothing changed")
						}
					}
					s, err = cl.RemoveServer(c.Context, s.ID)
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "removed %s (%s)\n", s.Hostname, s.ID)
					return nil
				}),
			},
		},
	}
}

// plural is "1 meeting", "2 meetings".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// printList prints `servers list`.
func printList(w io.Writer, servers []adminapi.Server) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tURL\tROLE\tSOURCE\tSTATE\tSTATUS\tTAGS\tLOAD MULTIPLIER")
	for _, s := range servers {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Name, s.URL, s.Role, s.Source, s.State, s.Status,
			strings.Join(s.Tags, ";"), strconv.FormatFloat(s.LoadMultiplier, 'g', -1, 64))
	}
	return tw.Flush()
}

// isTerminal tells whether f is a terminal an operator can answer on: a
// character device other than /dev/null (the standard input of cron,
// systemd and most scripts, which is a character device too).
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	if err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	null, err := os.Stat(os.DevNull)
	return err != nil || !os.SameFile(st, null)
}

func confirm(ctx context.Context, w io.Writer, r io.Reader) bool {
	fmt.Fprint(w, "Type yes to go on: ")
	line, _ := bufio.NewReader(r).ReadString('\n')
	return ctx.Err() == nil && strings.TrimSpace(line) == "yes"
}
