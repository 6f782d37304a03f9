package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// runCLI runs the command in-process (testenv.RunCLI).
func runCLI(t *testing.T, args ...string) (stdout string, err error) {
	t.Helper()
	return testenv.RunCLI(t, newApp(), append([]string{"bbb-agent"}, args...)...)
}

// TestSubcommandHelp: a subcommand's help shows its own flags only (not the
// global --admin-socket, nor run's), run's in categories and without the
// test seams.
func TestSubcommandHelp(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		flags []string
	}{
		{[]string{"status", "--help"}, []string{"--json", "--help"}},
		{[]string{"drain", "--help"}, []string{"--wait", "--deadline", "--help"}},
		{[]string{"undrain", "--help"}, []string{"--help"}},
		{[]string{"recordings", "list", "--help"}, []string{"--json", "--help"}},
		{[]string{"recordings", "notify", "--help"}, []string{"--record-id", "--format", "--help"}},
	} {
		out, err := runCLI(t, tc.args...)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if got := testenv.HelpFlags(out); !slices.Equal(got, tc.flags) {
			t.Errorf("the help of %v shows the flags %v, want %v:\n%s", tc.args, got, tc.flags, out)
		}
	}

	out, err := runCLI(t, "run", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, category := range []string{"Balancer", "BBB", "DNS", "Drain", "EC2", "Logging and metrics", "Node", "Recordings", "TURN"} {
		if !strings.Contains(out, "\n   "+category+"\n\n") {
			t.Errorf("run's help has no category %s:\n%s", category, out)
		}
	}
	flags := testenv.HelpFlags(out)
	for _, want := range []string{"--config", "--balancer-url", "--dns-zone", "--turn-uri", "--recordings-storage", "--drain-deadline", "--log-level"} {
		if !slices.Contains(flags, want) {
			t.Errorf("run's help does not show %s", want)
		}
	}
	for _, seam := range []string{"--host-root", "--imds-endpoint", "--route53-endpoint"} {
		if slices.Contains(flags, seam) {
			t.Errorf("run's help shows the test seam %s", seam)
		}
	}
	// Hidden, not gone: a hidden flag still works.
	empty := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(empty, []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	testenv.ClearCommandEnv(t)
	if out, err := runCLI(t, "config", "--config", empty, "--host-root", "/srv/host"); err != nil || !strings.Contains(out, "/srv/host") {
		t.Errorf("config --host-root: %v\n%s", err, out)
	}
}

// TestTypoSuggests: a mistyped command or flag is an error naming the
// nearest one.
func TestTypoSuggests(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"stauts"}, `Did you mean "status"?`},
		{[]string{"chekc"}, `Did you mean "check"?`},
		{[]string{"dns", "plna"}, `Did you mean "plan"?`},
		{[]string{"run", "--node-nmae", "x"}, "did you mean --node-name? (bbb-agent run --help lists the flags)"},
		{[]string{"check", "--dns-zon", "x"}, "did you mean --dns-zone?"},
	} {
		out, err := runCLI(t, tc.args...)
		if err == nil || !strings.Contains(err.Error()+out, tc.want) {
			t.Errorf("%v: error %v, output %q; want an error and %s", tc.args, err, out, tc.want)
		}
	}
}

// TestOneMeeting: counts of one are singular.
func TestOneMeeting(t *testing.T) {
	for n, want := range map[int]string{0: "0 meetings", 1: "1 meeting", 2: "2 meetings"} {
		if got := plural(n, "meeting"); got != want {
			t.Errorf("plural(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestLocalTime: printed times carry their zone.
func TestLocalTime(t *testing.T) {
	at := time.Date(2026, 12, 4, 20, 5, 0, 0, time.UTC)
	got := localTime(at)
	if !strings.HasSuffix(got, " "+at.Local().Format("MST")) || !strings.HasPrefix(got, at.Local().Format("2006-01-02 15:04:05")) {
		t.Errorf("localTime = %q, want the local date and time and the zone", got)
	}
}
