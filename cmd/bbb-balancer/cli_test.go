package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/balancer/adminapi"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// runCLI runs the command in-process (testenv.RunCLI).
func runCLI(t *testing.T, args ...string) (stdout string, err error) {
	t.Helper()
	return testenv.RunCLI(t, newApp(), append([]string{"bbb-balancer"}, args...)...)
}

// TestSubcommandHelp: a subcommand's help shows its own flags only (not
// the global --url and --admin-token, nor another command's), serve's in
// categories, and disable's says what happens to running meetings.
func TestSubcommandHelp(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		flags []string
		says  []string
	}{
		{[]string{"status", "--help"}, []string{"--json", "--help"}, nil},
		{[]string{"servers", "list", "--help"}, []string{"--help"}, nil},
		{[]string{"servers", "panic", "--help"}, []string{"--yes", "--help"}, []string{"END EVERY MEETING"}},
		{[]string{"servers", "update", "x", "--help"}, []string{"--tag", "--load-multiplier", "--help"}, nil},
		{[]string{"servers", "disable", "--help"}, []string{"--help"}, []string{
			"no new meetings until enabled again", "keep running and stay joinable", "joins, getMeetingInfo and end through the balancer still reach them",
			"Unlike cordon, nothing drains", "servers panic ID"}},
		{[]string{"servers", "disable", "x", "--help"}, []string{"--help"}, []string{"stay joinable"}},
		{[]string{"serve", "--help"}, nil, []string{"   Listeners and TLS\n", "   Secrets and tokens\n", "   Recordings and playback\n", "--acme-domain", "--secret value"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, err := runCLI(t, tc.args...)
			if err != nil {
				t.Fatalf("%v: %v", tc.args, err)
			}
			got := testenv.HelpFlags(out)
			for _, global := range []string{"--url", "--admin-token"} {
				if tc.args[0] != "serve" && strings.Contains(strings.Join(got, " "), global) {
					t.Errorf("the help of %v shows the global %s:\n%s", tc.args, global, out)
				}
			}
			if tc.flags != nil && strings.Join(got, " ") != strings.Join(tc.flags, " ") {
				t.Errorf("the help of %v shows the flags %v, want %v:\n%s", tc.args, got, tc.flags, out)
			}
			for _, s := range tc.says {
				if !strings.Contains(out, s) {
					t.Errorf("the help of %v does not say %q:\n%s", tc.args, s, out)
				}
			}
		})
	}
	if out, _ := runCLI(t, "serve", "--help"); strings.Contains(out, "--url") {
		t.Errorf("serve's help shows the global --url:\n%s", out)
	}
}

// TestTypoSuggestsTheCommand: a mistyped command is an error naming the
// nearest one, at the top and under servers.
func TestTypoSuggestsTheCommand(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"stauts"}, `Did you mean "status"?`},
		{[]string{"servres", "list"}, `Did you mean "servers"?`},
		{[]string{"servers", "disabel", "x"}, `Did you mean "disable"?`},
		{[]string{"servers", "cordn", "x"}, `Did you mean "cordon"?`},
		{[]string{"status", "--jsn"}, `Did you mean "--json"?`},
	} {
		out, err := runCLI(t, tc.args...)
		if err == nil || !strings.Contains(err.Error()+out, tc.want) {
			t.Errorf("%v: error %v, output %q; want an error and %s", tc.args, err, out, tc.want)
		}
	}
}

// TestOneMeeting: counts of one are singular in what the CLI prints.
func TestOneMeeting(t *testing.T) {
	for n, want := range map[int]string{0: "0 meetings", 1: "1 meeting", 2: "2 meetings"} {
		if got := plural(n, "meeting"); got != want {
			t.Errorf("plural(%d) = %q, want %q", n, got, want)
		}
	}
	var buf bytes.Buffer
	printRecordingsStatus(&buf, adminapi.RecordingsStatus{Recordings: 1, SpoolWaiting: -1, CallbacksQueued: 1})
	if !strings.Contains(buf.String(), ", 1 callback queued") {
		t.Errorf("recordings status: %q", buf.String())
	}

	// A panic of a server with one meeting, which fails to end.
	one := adminapi.Server{ID: "0a1b", Name: "bbb1", Hostname: "bbb1.example.com", Role: fleet.RoleBBB, State: fleet.Enabled,
		Meetings: 1, Participants: 1}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var out any = one
		if strings.HasSuffix(r.URL.Path, "/panic") {
			out = adminapi.PanicResponse{Server: one, Ended: []string{}, Failed: []string{"m1"}}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	}))
	defer ts.Close()
	out, err := runCLI(t, "--url", ts.URL, "--admin-token", "t0k3n", "servers", "panic", "0a1b", "--yes")
	for _, want := range []string{"ending its 1 meeting (1 participant)", "ended 0 meetings on bbb1.example.com"} {
		if !strings.Contains(out, want) {
			t.Errorf("panic does not say %q:\n%s", want, out)
		}
	}
	if err == nil || !strings.Contains(err.Error(), "but 1 meeting could not be ended: m1") {
		t.Errorf("panic with one meeting not ended: %v", err)
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
