package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strings"
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

func drain(c *cli.Context) error {
	st, err := agent.NewAdminClient(c.String("admin-socket")).Drain(c.Context)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "%s is draining: no new meetings; %s\n", st.Node, drainPlan(st))
	return nil
}

// drainPlan says when a draining node leaves the fleet.
func drainPlan(st agent.Status) string {
	switch n := drainLeft(st); n {
	case 0:
		return "no meetings are running, so it leaves the fleet shortly"
	case 1:
		return fmt.Sprintf("it leaves the fleet when its 1 meeting has ended (deadline %s)", drainDeadline(st))
	default:
		return fmt.Sprintf("it leaves the fleet when its %d meetings have ended (deadline %s)", n, drainDeadline(st))
	}
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
	l := st.Load
	row("meetings", fmt.Sprintf("%d (participants %d, voice %d, video %d, listeners %d, largest %d)", l.Meetings, l.Participants, l.Voice, l.Video, l.Listeners, l.LargestMeeting))
	row("host", fmt.Sprintf("CPU %.0f%% of %d cores, load %.2f %.2f %.2f, memory %s of %s, net rx %s/s tx %s/s, free %s",
		l.CPUPercent, l.CPUCores, l.Load1, l.Load5, l.Load15, bytes(l.MemUsedBytes), bytes(l.MemTotalBytes),
		bytes(uint64(l.NetRxBytesPerSec)), bytes(uint64(l.NetTxBytesPerSec)), bytes(l.DiskFreeBytes)))
	if d := st.Drain; d != nil {
		v := fmt.Sprintf("by %s since %s, %s left, deadline %s", d.Source, localTime(d.StartedAt), plural(d.MeetingsLeft, "meeting"), localTime(d.Deadline))
		if d.Finished != "" {
			v += ", finished: " + d.Finished
		}
		row("drain", v)
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
