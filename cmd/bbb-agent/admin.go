package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/bbb-agent/bbb-agent/agent"
	"github.com/urfave/cli/v2"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "what the running agent is doing",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}},
		Action: func(c *cli.Context) error {
			st, err := agent.NewAdminClient(c.String("admin-socket")).Status(c.Context)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			printStatus(c.App.Writer, st)
			return nil
		},
	}
}

func drainCommand() *cli.Command {
	return &cli.Command{
		Name:  "drain",
		Usage: "drain the node: no new meetings, wait for the running ones, then leave the fleet",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "wait", Usage: "wait until the node is drained (or leaving: past the deadline with meetings running), printing progress; Ctrl-C stops the waiting, not the drain"},
			&cli.StringFlag{Name: "deadline", Usage: "this drain's deadline: a duration from now (30m, 1h30m) or a time (RFC 3339 such as 2026-12-04T21:30:00Z, or local \"2026-12-04 21:30\" or 21:30); default: the agent's --drain-deadline. A drain under way that still waits gets the new deadline"},
		},
		Action: drain,
	}
}

func drain(c *cli.Context) error {
	cl := agent.NewAdminClient(c.String("admin-socket"))
	var st agent.Status
	var err error
	if s := c.String("deadline"); s != "" {
		at, in, perr := parseDeadline(s, time.Now())
		if perr != nil {
			return perr
		}
		st, err = cl.DrainWith(c.Context, agent.DrainRequest{Deadline: at, DeadlineInSeconds: in.Seconds()})
	} else {
		st, err = cl.Drain(c.Context)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "%s is draining: no new meetings; %s\n", st.Node, drainPlan(st))
	if !c.Bool("wait") {
		return nil
	}
	if d := st.Drain; d != nil && (d.Finished != "" || d.Phase == "leaving" || d.Phase == "done") {
		return drainOutcome(c.App.Writer, st) // over already (never registered: nothing to wait for)
	}
	return waitDrain(c, cl)
}

// drainPlan says when a draining node leaves the fleet.
func drainPlan(st agent.Status) string {
	switch n := drainLeft(st); n {
	case 0:
		return "no meetings are running, so it leaves the fleet shortly"
	default:
		return fmt.Sprintf("it leaves the fleet when its %s ended (deadline %s; then it leaves placement, and its meetings stay joinable until they end or the host stops)",
			hasHave(n), drainDeadline(st))
	}
}

// hasHave is "1 meeting has", "2 meetings have".
func hasHave(n int) string {
	if n == 1 {
		return "1 meeting has"
	}
	return fmt.Sprintf("%d meetings have", n)
}

// parseDeadline reads --deadline: a duration from now, or a time (RFC 3339,
// or a local date and time, or a local time of day: today, or tomorrow once
// it has passed).
func parseDeadline(s string, now time.Time) (time.Time, time.Duration, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, 0, fmt.Errorf("--deadline %s: give a duration after now, such as 30m", s)
		}
		return time.Time{}, d, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, 0, nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02T15:04:05", "2006-01-02T15:04"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, 0, nil
		}
	}
	for _, layout := range []string{"15:04", "15:04:05"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			local := now.In(time.Local)
			at := time.Date(local.Year(), local.Month(), local.Day(), t.Hour(), t.Minute(), t.Second(), 0, time.Local)
			if !at.After(now) {
				at = at.AddDate(0, 0, 1)
			}
			return at, 0, nil
		}
	}
	return time.Time{}, 0, fmt.Errorf("--deadline %q: want a duration from now (30m, 1h30m) or a time (2026-12-04T21:30:00Z, \"2026-12-04 21:30\", 21:30)", s)
}

// waitDrain follows the drain until it is done or leaving, printing a line at
// every change; Ctrl-C stops the waiting and says the drain goes on.
func waitDrain(c *cli.Context, cl *agent.AdminClient) error {
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	w := c.App.Writer
	var last string
	st, err := cl.WaitDrain(ctx, func(st agent.Status) {
		if line := drainProgress(st); line != last {
			fmt.Fprintf(w, "%s  %s\n", time.Now().Format("15:04:05"), line)
			last = line
		}
	})
	switch {
	case ctx.Err() != nil && c.Context.Err() == nil:
		return errors.New("interrupted: stopped waiting, but the drain goes on (bbb-agent status follows it; bbb-agent undrain cancels it)")
	case err != nil:
		return fmt.Errorf("waiting for the drain: %w", err)
	}
	return drainOutcome(w, st)
}

// drainProgress is one progress line: the phase, what it waits for, the
// deadline.
func drainProgress(st agent.Status) string {
	d := st.Drain
	if d == nil {
		return "no drain"
	}
	what := d.Message
	for _, p := range []string{"draining: ", "leaving: "} {
		what = strings.TrimPrefix(what, p)
	}
	if what == "" {
		what = plural(d.MeetingsLeft, "meeting") + " left"
	}
	return fmt.Sprintf("%s: %s (deadline %s)", d.Phase, what, localTime(d.Deadline))
}

// drainOutcome says how the drain ended for drain --wait: drained or leaving
// is a success, anything else an error.
func drainOutcome(w io.Writer, st agent.Status) error {
	d := st.Drain
	switch {
	case d == nil:
		return errors.New("the drain was cancelled (bbb-agent undrain, a cancelled shutdown, or the node enabled again at the balancer)")
	case d.Phase == "leaving":
		fmt.Fprintf(w, "%s passed its drain deadline (%s) with %s running: it takes no new meetings and the host is released; "+
			"it stays registered so they stay joinable, and leaves the balancer once they end or the host stops\n",
			st.Node, localTime(d.Deadline), plural(d.MeetingsLeft, "meeting"))
		return nil
	case d.Finished != "" && d.Error != "":
		return fmt.Errorf("%s is drained (%s), but: %s", st.Node, d.Finished, d.Error)
	case d.Finished != "":
		fmt.Fprintf(w, "%s is drained: %s\n", st.Node, d.Finished)
		return nil
	}
	return fmt.Errorf("the agent stopped before the drain finished (phase %s, %s left): it resumes the drain when it runs again", d.Phase, plural(d.MeetingsLeft, "meeting"))
}

func undrain(c *cli.Context) error {
	st, err := agent.NewAdminClient(c.String("admin-socket")).Undrain(c.Context)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "%s is %s again and takes new meetings\n", st.Node, st.State)
	return nil
}

func rotateCredential(c *cli.Context) error {
	st, err := agent.NewAdminClient(c.String("admin-socket")).RotateCredential(c.Context)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "%s has a new node credential; the old one no longer works\n", st.Node)
	return nil
}

func drainLeft(st agent.Status) int {
	if st.Drain == nil {
		return 0
	}
	return st.Drain.MeetingsLeft
}

func drainDeadline(st agent.Status) string {
	if st.Drain == nil {
		return "-"
	}
	return localTime(st.Drain.Deadline)
}

// printStatus prints the status for a person.
func printStatus(w io.Writer, st agent.Status) {
	row := func(k, v string) { fmt.Fprintf(w, "%-16s %s\n", k+":", v) }
	row("node", fmt.Sprintf("%s (%s)", st.Node, st.Role))
	row("state", string(st.State))
	if ad := st.Addresses; ad.PublicIPv4.IsValid() || ad.PublicIPv6.IsValid() {
		var parts []string
		for _, ip := range []netip.Addr{ad.PublicIPv4, ad.PublicIPv6} {
			if ip.IsValid() {
				parts = append(parts, ip.String())
			}
		}
		v := strings.Join(parts, ", ")
		if ad.PrivateIPv4.IsValid() {
			v += " (private " + ad.PrivateIPv4.String() + ")"
		}
		row("addresses", v+" from "+ad.Source)
	}
	if st.ServerURL != "" {
		health := "healthy"
		if !st.BBBHealthy {
			health = "NOT ANSWERING"
			if st.BBBError != "" {
				health += ": " + st.BBBError
			}
		}
		row("BBB", st.ServerURL+" — "+health)
	}
	reg := "not registered"
	if st.Registered {
		reg = "registered"
		if st.DesiredState != "" {
			reg += ", " + string(st.DesiredState) + " at the balancer"
		}
	}
	row("registrar", st.Registrar+" — "+reg)
	age := "never"
	if st.LastReportAgeSeconds != nil {
		age = (time.Duration(*st.LastReportAgeSeconds * float64(time.Second))).Round(100*time.Millisecond).String() + " ago"
	}
	row("last report", fmt.Sprintf("%s (every %s)", age, time.Duration(st.ReportIntervalSeconds*float64(time.Second))))
	switch t := st.ReportTransport; {
	case t == "stream":
		row("reports", "over the report stream")
	case t != "":
		row("reports", "by "+t)
	}
	l := st.Load
	row("meetings", fmt.Sprintf("%d (participants %d, voice %d, video %d, listeners %d, largest %d)", l.Meetings, l.Participants, l.Voice, l.Video, l.Listeners, l.LargestMeeting))
	row("host", fmt.Sprintf("CPU %.0f%% of %d cores, load %.2f %.2f %.2f, memory %s of %s, net rx %s/s tx %s/s, free %s",
		l.CPUPercent, l.CPUCores, l.Load1, l.Load5, l.Load15, bytes(l.MemUsedBytes), bytes(l.MemTotalBytes),
		bytes(uint64(l.NetRxBytesPerSec)), bytes(uint64(l.NetTxBytesPerSec)), bytes(l.DiskFreeBytes)))
	if d := st.Drain; d != nil {
		left := plural(d.MeetingsLeft, "meeting") + " left"
		if !d.MeetingsUnknownSince.IsZero() {
			left = fmt.Sprintf("meetings unknown since %s (BBB not answering; %d when it last answered)", localTime(d.MeetingsUnknownSince), d.MeetingsLeft)
		}
		v := fmt.Sprintf("by %s since %s, phase %s, %s, deadline %s", d.Source, localTime(d.StartedAt), d.Phase, left, localTime(d.Deadline))
		if d.Finished != "" {
			v += ", finished: " + d.Finished
		}
		row("drain", v)
		if d.Message != "" && d.Finished == "" {
			row("  now", d.Message)
		}
		if d.Error != "" {
			row("  error", d.Error)
		}
	}
	if d := st.DNS; d != nil {
		v := fmt.Sprintf("%s via %s: %s", d.FQDN, d.Provider, d.State)
		switch {
		case d.Answering:
			v += ", answered by the authoritative servers"
		case !d.CheckedAt.IsZero():
			v += ", NOT answered by the authoritative servers yet"
		}
		if d.LastError != "" {
			v += " (" + d.LastError + ")"
		}
		row("DNS", v)
	}
	if tt := st.TURN; tt != nil {
		v := "in use: " + strings.Join(tt.InUse, ", ")
		if len(tt.InUse) == 0 {
			v = "none in use"
		}
		if !tt.WrittenAt.IsZero() {
			v += ", file written " + localTime(tt.WrittenAt)
		}
		if tt.RestartPending {
			v += ", bbb-web restart waits for the node to be idle"
		}
		row("TURN", v)
		for _, p := range tt.Probes {
			res := fmt.Sprintf("ok (%.1f ms)", p.RTTMillis)
			if !p.OK {
				res = "FAILING: " + p.Error
			}
			row("  probe", p.URI+" "+res)
		}
		if tt.LastError != "" {
			row("  TURN error", tt.LastError)
		}
	}
	if st.Role == "turn" {
		probe := "ok"
		if st.TURNError != "" {
			probe = "FAILING: " + st.TURNError
		}
		row("self-probe", probe)
	}
	if len(st.TURNServers) > 0 {
		var names []string
		for _, s := range st.TURNServers {
			names = append(names, s.Node)
		}
		row("TURN servers", strings.Join(names, ", "))
	}
	if st.Recordings != nil {
		recordingsStatus(row, st.Recordings)
	}
	if st.LastError != "" {
		row("last error", st.LastError)
	}
}

func bytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
