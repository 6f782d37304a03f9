package sim

import (
	"bytes"
	"encoding/xml"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// testSecret is the secret of the BBB API documentation's checksum example.
const testSecret = "639259d4-9dd8-4b25-bf01-95f9567eaf4b"

// env is a simulator behind a real HTTP server, with a fake clock.
type env struct {
	t      *testing.T
	sim    *Server
	cfg    Config
	ts     *httptest.Server
	clock  *testenv.Clock
	client *http.Client
}

func newEnv(t *testing.T, opts ...func(*Config)) *env {
	t.Helper()
	clock := testenv.NewClockAt(time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC))
	logs := &testenv.Buffer{}
	cfg := Config{
		Secret:            testSecret,
		Clock:             clock.Now,
		Seed:              1,
		RecordingFileSize: 1000,
		Logger:            slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, o := range opts {
		o(&cfg)
	}
	s := New(cfg)
	ts := httptest.NewServer(s)
	t.Cleanup(func() {
		ts.Close()
		if strings.Contains(logs.String(), testSecret) {
			t.Errorf("the logs contain the secret:\n%s", logs.String())
		}
	})
	return &env{
		t: t, sim: s, cfg: cfg, ts: ts, clock: clock,
		client: &http.Client{
			Timeout:       5 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

func withRecordings(dir string) func(*Config) {
	return func(c *Config) { c.RecordingsDir = dir }
}

// signed returns the URL of an API call signed with sha1 and the test secret.
func (e *env) signed(call string, v url.Values) string {
	return e.ts.URL + "/bigbluebutton/api/" + call + "?" + bbb.SignQuery(bbb.SHA1, call, bbb.EncodeQuery(v), testSecret)
}

// do sends a request and returns the response with its body read.
func (e *env) do(method, rawURL string, body []byte) (*http.Response, []byte) {
	e.t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, rawURL, r)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/xml")
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, rawURL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, b
}

// xmlCall sends a request that must answer an API document, decodes it into
// out (when not nil) and returns its envelope.
func (e *env) xmlCall(method, rawURL string, body []byte, out any) bbb.Envelope {
	e.t.Helper()
	resp, b := e.do(method, rawURL, body)
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("%s %s: HTTP %d, want 200: %s", method, rawURL, resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/xml;charset=utf-8" {
		e.t.Fatalf("Content-Type %q", ct)
	}
	if !bytes.HasPrefix(b, []byte("<?xml")) {
		e.t.Fatalf("no XML declaration: %s", b)
	}
	var env bbb.Envelope
	if err := xml.Unmarshal(b, &env); err != nil {
		e.t.Fatalf("decoding %s: %v", b, err)
	}
	if out != nil {
		if err := xml.Unmarshal(b, out); err != nil {
			e.t.Fatalf("decoding %s: %v", b, err)
		}
	}
	return env
}

// get calls the API by GET with a sha1 checksum.
func (e *env) get(call string, v url.Values, out any) bbb.Envelope {
	e.t.Helper()
	return e.xmlCall(http.MethodGet, e.signed(call, v), nil, out)
}

func wantSuccess(t *testing.T, env bbb.Envelope, key string) {
	t.Helper()
	if env.ReturnCode != bbb.ReturnSuccess || env.MessageKey != key {
		t.Fatalf("got %s/%s (%s), want SUCCESS/%s", env.ReturnCode, env.MessageKey, env.Message, key)
	}
}

func wantFailed(t *testing.T, env bbb.Envelope, key string) {
	t.Helper()
	if env.ReturnCode != bbb.ReturnFailed || env.MessageKey != key {
		t.Fatalf("got %s/%s (%s), want FAILED/%s", env.ReturnCode, env.MessageKey, env.Message, key)
	}
	if env.Message == "" {
		t.Fatalf("FAILED/%s without a message", key)
	}
}

// vals builds url.Values from key, value pairs.
func vals(kv ...string) url.Values {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v
}

// create makes a meeting and fails the test unless it is new.
func (e *env) create(v url.Values) bbb.CreateResponse {
	e.t.Helper()
	var cr bbb.CreateResponse
	wantSuccess(e.t, e.get(bbb.CallCreate, v, &cr), "")
	return cr
}

func (e *env) info(meetingID string) bbb.GetMeetingInfoResponse {
	e.t.Helper()
	var mi bbb.GetMeetingInfoResponse
	wantSuccess(e.t, e.get(bbb.CallGetMeetingInfo, vals("meetingID", meetingID), &mi), "")
	return mi
}

func (e *env) meetings() []bbb.Meeting {
	e.t.Helper()
	var gm bbb.GetMeetingsResponse
	env := e.get(bbb.CallGetMeetings, nil, &gm)
	if env.ReturnCode != bbb.ReturnSuccess {
		e.t.Fatalf("getMeetings: %+v", env)
	}
	return gm.Meetings
}

// join joins by redirect=false and returns the answer.
func (e *env) join(v url.Values) (bbb.Envelope, bbb.JoinResponse) {
	e.t.Helper()
	v.Set("redirect", "false")
	var jr bbb.JoinResponse
	return e.get(bbb.CallJoin, v, &jr), jr
}

func (e *env) recordings(v url.Values) (bbb.Envelope, []bbb.Recording) {
	e.t.Helper()
	var gr bbb.GetRecordingsResponse
	env := e.get(bbb.CallGetRecordings, v, &gr)
	return env, gr.Recordings
}
