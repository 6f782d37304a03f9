package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/balancer/adminapi"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/bbb/sim"
)

// TestRecordingsCommand runs the CLI against a server speaking the BBB
// API (the simulator stands in for the balancer: same calls, same rules).
func TestRecordingsCommand(t *testing.T) {
	const secret = "cli-secret-0123456789"
	srv := sim.New(sim.Config{Secret: secret, Seed: 1})
	ts := httptest.NewServer(srv)
	defer ts.Close()
	c, err := bbb.NewClient(ts.URL, secret)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var cr bbb.CreateResponse
	if err := c.Get(ctx, bbb.CallCreate, url.Values{"meetingID": {"cli"}, "name": {"CLI class"}, "record": {"true"}}, &cr); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, bbb.CallJoin, url.Values{"meetingID": {"cli"}, "fullName": {"T"}, "role": {"moderator"}, "redirect": {"false"}}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, bbb.CallEnd, url.Values{"meetingID": {"cli"}}, nil); err != nil {
		t.Fatal(err)
	}
	id := cr.InternalMeetingID
	run := func(args ...string) (string, error) {
		app := newApp()
		var out bytes.Buffer
		app.Writer, app.ErrWriter = &out, &out
		err := app.Run(append([]string{"bbb-balancer", "--url", ts.URL}, args...))
		return out.String(), err
	}
	out, err := run("recordings", "list", "--secret", secret)
	if err != nil || !strings.Contains(out, id) || !strings.Contains(out, "CLI class") || !strings.Contains(out, "published") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	if out, err = run("recordings", "show", "--secret", secret, id); err != nil || !strings.Contains(out, `"RecordID": "`+id+`"`) {
		t.Fatalf("show: %v\n%s", err, out)
	}
	if out, err = run("recordings", "delete", "--secret", secret, id); err != nil {
		t.Fatalf("delete: %v\n%s", err, out)
	}
	if out, err = run("recordings", "list", "--secret", secret, "--state", "deleted", "--json"); err != nil || !strings.Contains(out, id) {
		t.Fatalf("list deleted: %v\n%s", err, out)
	}
	if _, err = run("recordings", "list"); err == nil || !strings.Contains(err.Error(), "no secret") {
		t.Errorf("without a secret: %v", err)
	}
	if _, err = run("recordings", "show", "--secret", secret, "nope"); err == nil {
		t.Error("show of an unknown recording succeeded")
	}
}

func TestPrintRecordingsStatus(t *testing.T) {
	for _, c := range []struct {
		st   adminapi.RecordingsStatus
		want string
	}{
		{adminapi.RecordingsStatus{Recordings: 3, Bytes: 5 << 20, SpoolWaiting: 2, SpoolFailed: 1, CallbacksQueued: 4},
			"Recordings: 3 (5.0 MiB), spool 2 waiting, 1 failed, 4 callbacks queued\n"},
		{adminapi.RecordingsStatus{Recordings: 1, Bytes: 512, SpoolWaiting: -1, SpoolFailed: -1},
			"Recordings: 1 (512 B), no spool, 0 callbacks queued\n"},
	} {
		var buf bytes.Buffer
		printRecordingsStatus(&buf, c.st)
		if buf.String() != c.want {
			t.Errorf("%+v: %q, want %q", c.st, buf.String(), c.want)
		}
	}
}
