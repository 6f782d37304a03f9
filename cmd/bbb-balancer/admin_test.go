package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/bbb-agent/bbb-agent/balancer/adminapi"
	"github.com/bbb-agent/bbb-agent/balancer/records"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

func seconds(s float64) *float64 { return &s }

func TestAge(t *testing.T) {
	for _, tc := range []struct {
		sec  *float64
		want string
	}{
		{nil, "never"},
		{seconds(0), "0s ago"},
		{seconds(0.131), "100ms ago"},
		{seconds(0.96), "1s ago"},
		{seconds(12.34), "12.3s ago"},
		{seconds(3725), "1h2m5s ago"},
		{seconds(-0.4), "0s ago"}, // stamped by a replica whose clock is a little ahead
		{seconds(-30), "0s ago"},
	} {
		if got := age(tc.sec); got != tc.want {
			t.Errorf("age(%v) = %q, want %q", deref(tc.sec), got, tc.want)
		}
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

// fleetFixture is a BBB node that reports, one that never did, and a TURN node.
func fleetFixture() []adminapi.Server {
	return []adminapi.Server{
		{
			ID: "0a1b", Name: "bbb1", Hostname: "bbb1.example.com", URL: "https://bbb1.example.com/bigbluebutton/api/",
			Role: fleet.RoleBBB, Source: records.SourceAgent, State: fleet.Enabled, Online: true, Status: fleet.Online,
			Meetings: 12, Participants: 240, Users: 240, LargestMeeting: 80, Videos: 31, Load: 123.456, CPUPercent: 41.6,
			LoadMultiplier: 1, Tags: []string{"eu", "big"}, LastReportAgeSeconds: seconds(2.04), BBBVersion: "3.0.4", Healthy: true,
		},
		{
			ID: "2c3d", Name: "bbb2.example.com", Hostname: "bbb2.example.com", URL: "https://bbb2.example.com/bigbluebutton/api/",
			Role: fleet.RoleBBB, Source: records.SourcePoll, State: fleet.Cordoned, Status: fleet.Offline,
			LoadMultiplier: 2.5, Tags: []string{}, Reason: "checksumError: wrong secret", ReasonClass: "checksum_error",
		},
		{
			ID: "4e5f", Name: "turn1", Hostname: "turn1", Role: fleet.RoleTURN, Source: records.SourceAgent,
			State: fleet.Enabled, Online: true, Status: fleet.Online, CPUPercent: 7.2, LoadMultiplier: 1,
			LastReportAgeSeconds: seconds(65), Reason: "TURN: the node fails its own STUN/TURN probe", ReasonClass: "turn_error",
		},
	}
}

func TestPrintStatus(t *testing.T) {
	var buf bytes.Buffer
	printStatus(&buf, fleetFixture())
	want := "" +
		"NAME              STATE     STATUS   MEETINGS  PARTICIPANTS  LARGEST MEETING  VIDEOS  LOAD   BBB VERSION  TAGS    CPU PERCENT  LAST REPORT AGE  REASON\n" +
		"bbb1              enabled   online   12        240           80               31      123.5  3.0.4        eu,big  42%          2s ago           -\n" +
		"bbb2.example.com  cordoned  offline  0         0             0                0       0.0    -            -       0%           never            checksumError: wrong secret\n" +
		"\n" +
		"TURN servers:\n" +
		"NAME   STATE    STATUS  CPU PERCENT  LAST REPORT AGE  REASON\n" +
		"turn1  enabled  online  7%           1m5s ago         TURN: the node fails its own STUN/TURN probe\n"
	if got := buf.String(); got != want {
		t.Errorf("status table:\n%s\nwant:\n%s", got, want)
	}
}

func TestPrintStatusWithoutTURN(t *testing.T) {
	var buf bytes.Buffer
	printStatus(&buf, fleetFixture()[:2])
	if strings.Contains(buf.String(), "TURN") {
		t.Errorf("a fleet without TURN nodes gets a TURN table:\n%s", buf.String())
	}
	buf.Reset()
	printStatus(&buf, nil)
	if got := strings.Join(strings.Fields(buf.String()), " "); got != "NAME STATE STATUS MEETINGS PARTICIPANTS LARGEST MEETING VIDEOS LOAD BBB VERSION TAGS CPU PERCENT LAST REPORT AGE REASON" {
		t.Errorf("empty fleet: %q", buf.String())
	}
}

func TestPrintList(t *testing.T) {
	var buf bytes.Buffer
	if err := printList(&buf, fleetFixture()); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"ID    NAME              URL                                          ROLE  SOURCE  STATE     STATUS   TAGS    LOAD MULTIPLIER\n" +
		"0a1b  bbb1              https://bbb1.example.com/bigbluebutton/api/  bbb   agent   enabled   online   eu;big  1\n" +
		"2c3d  bbb2.example.com  https://bbb2.example.com/bigbluebutton/api/  bbb   poll    cordoned  offline          2.5\n" +
		"4e5f  turn1                                                          turn  agent   enabled   online           1\n"
	if got := buf.String(); got != want {
		t.Errorf("servers list:\n%s\nwant:\n%s", got, want)
	}
}

// fakeAdmin records admin API calls and answers them with one server.
type fakeAdmin struct {
	mu    sync.Mutex
	calls []string
}

func (f *fakeAdmin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.calls = append(f.calls, strings.TrimSpace(r.Method+" "+r.URL.Path+" "+string(body)))
	f.mu.Unlock()
	srv := fleetFixture()[0]
	var out any = srv
	if strings.HasSuffix(r.URL.Path, "/panic") {
		out = adminapi.PanicResponse{Server: srv, Ended: []string{"m1", "m2"}}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func (f *fakeAdmin) took() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// TestFlagsAfterArguments runs the CLI in-process against a fake admin API:
// operators write flags after the ID (`servers panic ID --yes`), which
// urfave/cli alone refuses.
func TestFlagsAfterArguments(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		calls   []string
		stdout  string
		wantErr string
	}{
		{
			name: "panic ID --yes",
			args: []string{"servers", "panic", "0a1b", "--yes"},
			calls: []string{
				"GET /admin/v1/servers/0a1b",
				`POST /admin/v1/servers/0a1b/panic {}`,
			},
			stdout: "panic: disabling bbb1.example.com and ending its 12 meetings (240 participants). To drain without ending meetings, use `servers cordon 0a1b`.\n" +
				"ended 2 meetings on bbb1.example.com\n",
		},
		{
			name:   "add with flags before and after",
			args:   []string{"servers", "add", "--tag", "eu", "https://bbb9.example.com/", "s3cr3t-value", "--tag=big", "--load-multiplier", "2"},
			calls:  []string{`POST /admin/v1/servers {"url":"https://bbb9.example.com/","secret":"s3cr3t-value","tags":["eu","big"],"load_multiplier":2}`},
			stdout: "0a1b\n",
		},
		{
			name:   "-- ends the flags",
			args:   []string{"servers", "add", "https://bbb9.example.com/", "--", "--secret-with-dashes"},
			calls:  []string{`POST /admin/v1/servers {"url":"https://bbb9.example.com/","secret":"--secret-with-dashes"}`},
			stdout: "0a1b\n",
		},
		{name: "help after the ID does nothing", args: []string{"servers", "remove", "0a1b", "--help"}},
		{name: "unknown flag", args: []string{"servers", "cordon", "0a1b", "--force"}, wantErr: "flag --force is not defined"},
		{name: "flag without its value", args: []string{"servers", "add", "u", "s", "--tag"}, wantErr: "flag --tag needs a value"},
		{name: "bad value", args: []string{"servers", "add", "u", "s", "--load-multiplier", "lots"}, wantErr: "flag --load-multiplier"},
		{name: "two IDs", args: []string{"servers", "enable", "a", "b"}, wantErr: "servers enable needs exactly one server ID"},
		{name: "no ID", args: []string{"servers", "disable"}, wantErr: "servers disable needs exactly one server ID"},
		{name: "one argument to add", args: []string{"servers", "add", "https://bbb9.example.com/"}, wantErr: "servers add needs API_URL and SECRET"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := &fakeAdmin{}
			ts := httptest.NewServer(fake)
			defer ts.Close()
			app := newApp()
			var stdout, stderr bytes.Buffer
			app.Writer, app.ErrWriter = &stdout, &stderr
			err := app.Run(append([]string{"bbb-balancer", "--url", ts.URL, "--admin-token", "t0k3n"}, tc.args...))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one saying %q", err, tc.wantErr)
			}
			if got := fake.took(); strings.Join(got, "\n") != strings.Join(tc.calls, "\n") {
				t.Errorf("admin API calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.calls, "\n"))
			}
			if tc.stdout != "" && stdout.String() != tc.stdout {
				t.Errorf("stdout:\n%s\nwant:\n%s", stdout.String(), tc.stdout)
			}
			if strings.Contains(tc.name, "help") && !strings.Contains(stdout.String(), "USAGE:") {
				t.Errorf("no help printed:\n%s", stdout.String())
			}
		})
	}
}

func TestIsTerminal(t *testing.T) {
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if isTerminal(null) {
		t.Errorf("%s counts as a terminal", os.DevNull)
	}
	file, err := os.CreateTemp(t.TempDir(), "stdin")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if isTerminal(file) {
		t.Error("a regular file counts as a terminal")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if isTerminal(r) {
		t.Error("a pipe counts as a terminal")
	}
}

// TestServeRefusesEarly checks serve's command line before it opens the
// database: nothing is created under --data-dir.
func TestServeRefusesEarly(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no secret", []string{"serve", "--agent-token", "a", "--admin-token", "t"}, "no BBB API secret: give --secret"},
		{"no agent token", []string{"serve", "--secret", "0123456789", "--admin-token", "t"}, "no agent token: give --agent-token"},
		{"no admin token", []string{"serve", "--secret", "0123456789", "--agent-token", "a"}, "no admin token: give --admin-token"},
		{"admin token as the global flag", []string{"--admin-token", "t", "serve", "--secret", "0123456789"}, "no agent token"},
		{"bad log level", []string{"serve", "--secret", "0123456789", "--agent-token", "a", "--admin-token", "t", "--log-level", "loud"}, "--log-level"},
		{"bad node checksum", []string{"serve", "--secret", "0123456789", "--agent-token", "a", "--admin-token", "t", "--node-checksum", "md5"}, "--node-checksum"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testenv.ClearCommandEnv(t)
			dir := t.TempDir()
			app := newApp()
			app.Writer, app.ErrWriter = io.Discard, io.Discard
			err := app.Run(append([]string{"bbb-balancer"}, append(tc.args, "--listen", "127.0.0.1:0", "--data-dir", dir)...))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
			if files, _ := os.ReadDir(dir); len(files) > 0 {
				t.Errorf("a refused serve left %v in --data-dir", files)
			}
		})
	}
}
