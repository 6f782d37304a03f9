package bbb_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/bbb/sim"
)

const simSecret = "client-test-secret-0123456789"

func newSim(t *testing.T) (*sim.Server, string) {
	t.Helper()
	s := sim.New(sim.Config{Secret: simSecret, RecordingsDir: t.TempDir(), Seed: 42, RecordingFileSize: 2048})
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts.URL
}

func newClient(t *testing.T, serverURL string, opts ...bbb.ClientOption) *bbb.Client {
	t.Helper()
	c, err := bbb.NewClient(serverURL, simSecret, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestClientEveryAlgorithm(t *testing.T) {
	_, u := newSim(t)
	for _, alg := range bbb.AllAlgorithms {
		c := newClient(t, u, bbb.WithAlgorithm(alg))
		resp, err := c.Create(ctx(t), bbb.CreateRequest{MeetingID: "alg-" + string(alg), Name: "Algorithm " + string(alg)})
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		if resp.ReturnCode != bbb.ReturnSuccess || resp.MeetingID != "alg-"+string(alg) {
			t.Fatalf("%s: %+v", alg, resp)
		}
	}
}

func TestClientWrongSecret(t *testing.T) {
	_, u := newSim(t)
	c, err := bbb.NewClient(u, "not-the-secret")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.GetMeetings(ctx(t))
	if !errors.Is(err, bbb.ErrChecksum) {
		t.Fatalf("err = %v, want checksumError", err)
	}
}

func TestClientMeetingLifecycle(t *testing.T) {
	s, u := newSim(t)
	c := newClient(t, u)
	cx := ctx(t)

	root, err := c.Root(cx)
	if err != nil || root.Version != "2.0" {
		t.Fatalf("root: %+v, %v", root, err)
	}

	req := bbb.CreateRequest{MeetingID: "room-1", Name: "Room 1", AttendeePW: "ap", ModeratorPW: "mp", Record: true,
		Meta: map[string]string{"bbb-origin": "Greenlight"}}
	created, err := c.Create(cx, req)
	if err != nil {
		t.Fatal(err)
	}
	if created.InternalMeetingID != bbb.InternalMeetingID("room-1", created.CreateTime) {
		t.Fatalf("internalMeetingID %q", created.InternalMeetingID)
	}
	again, err := c.Create(cx, req)
	if err != nil || again.MessageKey != bbb.KeyDuplicateWarning || again.InternalMeetingID != created.InternalMeetingID {
		t.Fatalf("repeated create: %+v, %v", again, err)
	}
	conflicting := req
	conflicting.Name = "Another name"
	if _, err := c.Create(cx, conflicting); !errors.Is(err, bbb.ErrIDNotUnique) {
		t.Fatalf("conflicting create: %v", err)
	}

	// join as a URL: the browser follows a 302 to the client.
	joinURL := c.JoinURL(bbb.JoinRequest{MeetingID: "room-1", FullName: "Ada", Role: bbb.RoleModerator})
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(joinURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || !strings.Contains(resp.Header.Get("Location"), "sessionToken=") {
		t.Fatalf("join: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	joined, err := c.Join(cx, bbb.JoinRequest{MeetingID: "room-1", FullName: "Bob", Password: "ap"})
	if err != nil || joined.MessageKey != bbb.KeySuccessfullyJoined || joined.SessionToken == "" {
		t.Fatalf("join redirect=false: %+v, %v", joined, err)
	}
	if _, err := c.Join(cx, bbb.JoinRequest{MeetingID: "room-1", FullName: "Eve", Password: "wrong"}); !errors.Is(err, bbb.ErrInvalidPassword) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := s.AddAttendees("room-1", sim.AttendeeSpec{Count: 3, Voice: true, Video: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddBreakouts("room-1", sim.BreakoutSpec{Rooms: 2, AttendeesPerRoom: 1}); err != nil {
		t.Fatal(err)
	}

	running, err := c.IsMeetingRunning(cx, "room-1")
	if err != nil || !running {
		t.Fatalf("isMeetingRunning: %v, %v", running, err)
	}
	info, err := c.GetMeetingInfo(cx, "room-1")
	if err != nil {
		t.Fatal(err)
	}
	if info.ParticipantCount != 5 || info.ModeratorCount != 1 || info.VideoCount != 3 || len(info.Attendees) != 5 || len(info.BreakoutRooms) != 2 {
		t.Fatalf("getMeetingInfo: %+v", info)
	}
	if v, ok := info.Metadata.Get("bbb-origin"); !ok || v != "Greenlight" {
		t.Fatalf("metadata: %+v", info.Metadata)
	}
	meetings, err := c.GetMeetings(cx)
	if err != nil {
		t.Fatal(err)
	}
	var parents, breakouts int
	for _, m := range meetings {
		if m.IsBreakout {
			breakouts++
			if m.ParentMeetingID != created.InternalMeetingID {
				t.Errorf("breakout parent %q", m.ParentMeetingID)
			}
		} else {
			parents++
		}
	}
	if parents != 1 || breakouts != 2 {
		t.Fatalf("getMeetings: %d parents, %d breakouts", parents, breakouts)
	}

	if err := c.InsertDocument(cx, "room-1", []bbb.Document{{URL: "https://example.com/slides.pdf", Filename: "slides.pdf"}, {Filename: "inline.txt", Content: []byte("hello")}}); err != nil {
		t.Fatalf("insertDocument: %v", err)
	}

	// end: the simulator publishes a recording.
	if err := c.End(cx, "room-1", ""); err != nil {
		t.Fatal(err)
	}
	if running, err := c.IsMeetingRunning(cx, "room-1"); err != nil || running {
		t.Fatalf("after end: running=%v, %v", running, err)
	}
	// BBB keeps an ended meeting's info for a while: running false, forcibly ended.
	if ended, err := c.GetMeetingInfo(cx, "room-1"); err == nil && (ended.Running || !ended.HasBeenForciblyEnded || ended.EndTime == 0) {
		t.Fatalf("getMeetingInfo after end: %+v", ended)
	} else if err != nil && !errors.Is(err, bbb.ErrNotFound) {
		t.Fatalf("getMeetingInfo after end: %v", err)
	}
	recs, err := c.GetRecordings(cx, bbb.GetRecordingsRequest{MeetingIDs: []string{"room-1"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].RecordID != created.InternalMeetingID || !recs[0].Published || len(recs[0].Playback) != 1 {
		t.Fatalf("getRecordings: %+v", recs)
	}
	if recs[0].Playback[0].Preview == nil || len(recs[0].Playback[0].Preview.Images) == 0 {
		t.Fatalf("no preview images: %+v", recs[0].Playback[0])
	}
	id := recs[0].RecordID
	if err := c.UpdateRecordings(cx, []string{id}, map[string]string{"course": "physics"}); err != nil {
		t.Fatal(err)
	}
	if err := c.PublishRecordings(cx, []string{id}, false); err != nil {
		t.Fatal(err)
	}
	recs, err = c.GetRecordings(cx, bbb.GetRecordingsRequest{RecordIDs: []string{id}})
	if err != nil || len(recs) != 1 || recs[0].Published || recs[0].State != "unpublished" {
		t.Fatalf("after unpublish: %+v, %v", recs, err)
	}
	if v, _ := recs[0].Metadata.Get("course"); v != "physics" {
		t.Fatalf("updated metadata: %+v", recs[0].Metadata)
	}
	if err := c.DeleteRecordings(cx, []string{id}); err != nil {
		t.Fatal(err)
	}
	recs, err = c.GetRecordings(cx, bbb.GetRecordingsRequest{MeetingIDs: []string{"room-1"}})
	if err != nil || len(recs) != 0 {
		t.Fatalf("after delete: %+v, %v", recs, err)
	}
}

func TestClientErrors(t *testing.T) {
	_, u := newSim(t)
	c := newClient(t, u)
	cx := ctx(t)
	tests := []struct {
		name string
		call func() error
		want *bbb.APIError
	}{
		{"getMeetingInfo unknown", func() error { _, err := c.GetMeetingInfo(cx, "nope"); return err }, bbb.ErrNotFound},
		{"end unknown", func() error { return c.End(cx, "nope", "") }, bbb.ErrNotFound},
		{"insertDocument unknown", func() error {
			return c.InsertDocument(cx, "nope", []bbb.Document{{URL: "https://example.com/a.pdf", Filename: "a.pdf"}})
		}, bbb.ErrNotFound},
		{"join unknown", func() error {
			_, err := c.Join(cx, bbb.JoinRequest{MeetingID: "nope", FullName: "x", Role: "VIEWER"})
			return err
		}, bbb.ErrInvalidIdentifier},
		{"meetingID with comma", func() error { _, err := c.Create(cx, bbb.CreateRequest{MeetingID: "a,b"}); return err }, bbb.ErrValidation},
		{"meetingID too short", func() error { _, err := c.Create(cx, bbb.CreateRequest{MeetingID: "a"}); return err }, bbb.ErrValidation},
		{"meetingID missing", func() error { _, err := c.Create(cx, bbb.CreateRequest{}); return err }, bbb.ErrMissingMeetingID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var apiErr *bbb.APIError
			if !errors.As(err, &apiErr) || !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want messageKey %s", err, tt.want.MessageKey)
			}
		})
	}
	if running, err := c.IsMeetingRunning(cx, "nope"); err != nil || running {
		t.Fatalf("isMeetingRunning unknown: %v, %v", running, err)
	}
	if ms, err := c.GetMeetings(cx); err != nil || len(ms) != 0 {
		t.Fatalf("getMeetings none: %v, %v", ms, err)
	}
}

// TestClientTransportErrors covers servers that do not answer like BBB.
func TestClientTransportErrors(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    string
	}{
		{"HTTP 500", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) }, "HTTP 500"},
		{"HTML", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html><body>nginx</body></html>")) }, "not a BBB API response"},
		{"garbage", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("\x00\x01garbage")) }, "not a BBB API response"},
		{"too large", func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("<response><returncode>SUCCESS</returncode><x>" + strings.Repeat("a", 4096) + "</x></response>"))
		}, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := httptest.NewServer(tt.handler)
			defer ts.Close()
			c := newClient(t, ts.URL, bbb.WithMaxResponseBytes(1024))
			_, err := c.GetMeetings(ctx(t))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), simSecret) {
				t.Fatal("error leaks the secret")
			}
		})
	}
	// Unreachable: the error names the call but not the checksum.
	c := newClient(t, "http://127.0.0.1:1")
	_, err := c.GetMeetings(ctx(t))
	if err == nil || strings.Contains(err.Error(), "checksum=") {
		t.Fatalf("unreachable: %v", err)
	}
}

func TestAPIURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://bbb1.example.com":                     "https://bbb1.example.com/bigbluebutton/api/",
		"https://bbb1.example.com/":                    "https://bbb1.example.com/bigbluebutton/api/",
		"https://bbb1.example.com/bigbluebutton/":      "https://bbb1.example.com/bigbluebutton/api/",
		"https://bbb1.example.com/bigbluebutton/api":   "https://bbb1.example.com/bigbluebutton/api/",
		"https://bbb1.example.com/bigbluebutton/api/":  "https://bbb1.example.com/bigbluebutton/api/",
		"http://127.0.0.1:8080/prefix/bigbluebutton/":  "http://127.0.0.1:8080/prefix/bigbluebutton/api/",
		" https://bbb1.example.com/bigbluebutton/api ": "https://bbb1.example.com/bigbluebutton/api/",
		"https://bbb1.example.com:443/":                "https://bbb1.example.com/bigbluebutton/api/",
		"http://bbb1.example.com:80/bigbluebutton/api": "http://bbb1.example.com/bigbluebutton/api/",
		"https://[2001:db8::1]:443/":                   "https://[2001:db8::1]/bigbluebutton/api/",
		"https://bbb1.example.com:8443/":               "https://bbb1.example.com:8443/bigbluebutton/api/",
	} {
		if got, err := bbb.APIURL(in); err != nil || got != want {
			t.Errorf("APIURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "bbb1.example.com", "ftp://x", "https://"} {
		if _, err := bbb.APIURL(bad); err == nil {
			t.Errorf("APIURL(%q) accepted", bad)
		}
	}
}

// TestCurlMatchesClient signs a create in the shell (sha1sum, sha256sum...)
// and sends it with curl, as an operator would, and compares the answer with
// the Go client's.
func TestCurlMatchesClient(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("curl is missing: .ci/run installs it")
		}
		t.Skip("curl not installed")
	}
	_, u := newSim(t)
	c := newClient(t, u)
	script := filepath.Join(t.TempDir(), "create.sh")
	if err := os.WriteFile(script, []byte(`set -eu
q="meetingID=$2&name=Shell+Meeting"
sum=$(printf '%s' "create$q$SECRET" | "$3sum" | cut -d' ' -f1)
"$CURL" -fsS "$1/bigbluebutton/api/create?$q&checksum=$sum"
`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, alg := range bbb.AllAlgorithms {
		id := "shell-" + string(alg)
		out, err := runShell(t, script, curl, u, id, string(alg))
		if err != nil {
			t.Fatalf("%s: %v: %s", alg, err, out)
		}
		if err := bbb.DecodeResponse("create", out, nil); err != nil {
			t.Fatalf("%s: curl create: %v", alg, err)
		}
		// The same meeting through the Go client: identical parameters, so duplicateWarning.
		resp, err := c.Create(ctx(t), bbb.CreateRequest{MeetingID: id, Name: "Shell Meeting"})
		if err != nil || resp.MessageKey != bbb.KeyDuplicateWarning {
			t.Fatalf("%s: client create after curl: %+v, %v", alg, resp, err)
		}
	}
	// A wrong checksum from the shell gets checksumError.
	bad := u + "/bigbluebutton/api/create?" + url.Values{"meetingID": {"x1"}}.Encode() + "&checksum=" + strings.Repeat("0", 40)
	outBad, err := runCmd(t, curl, "-fsS", bad)
	if err != nil {
		t.Fatal(err)
	}
	if err := bbb.DecodeResponse("create", outBad, nil); !errors.Is(err, bbb.ErrChecksum) {
		t.Fatalf("wrong checksum via curl: %v", err)
	}
}
