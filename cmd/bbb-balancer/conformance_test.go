package main

import (
	"context"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/balancer"
	"github.com/bbb-agent/bbb-agent/balancer/adminapi"
	"github.com/bbb-agent/bbb-agent/balancer/balancertest"
	"github.com/bbb-agent/bbb-agent/bbb/sim"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// conformanceAnswer is the part of every BBB API answer a third-party client
// (bigbluebutton-api-ruby, Moodle's plugin) reads first.
type conformanceAnswer struct {
	XMLName    xml.Name  `xml:"response"`
	ReturnCode string    `xml:"returncode"`
	MessageKey string    `xml:"messageKey"`
	Message    string    `xml:"message"`
	Running    string    `xml:"running"`
	Meetings   *struct{} `xml:"meetings"`
	Recordings *struct{} `xml:"recordings"`
	MeetingID  string    `xml:"meetingID"`
	URL        string    `xml:"url"`
}

// conformanceGet fetches one API URL and checks what every BBB answer has:
// HTTP 200, an XML content type and a <response> root.
func conformanceGet(t *testing.T, req *http.Request) (conformanceAnswer, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status %d, BBB answers 200 with the error in the XML; body %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/xml") && !strings.HasPrefix(ct, "application/xml") {
		t.Errorf("Content-Type %q, want text/xml", ct)
	}
	var a conformanceAnswer
	if err := xml.Unmarshal(body, &a); err != nil {
		t.Fatalf("answer is not a <response>: %v; body %s", err, body)
	}
	return a, string(body)
}

// TestConformanceMeeting checks the meeting calls that need a BBB server
// behind the balancer (a bbb/sim) against BBB's API reference
// (https://docs.bigbluebutton.org/development/api/): create by GET and by
// POST with a pre-upload XML body, a second create with the same ID
// (duplicateWarning), join with redirect=false, join of an unknown meeting.
func TestConformanceMeeting(t *testing.T) {
	lb := balancertest.Start(t, balancertest.Options{Run: true, Config: balancer.Config{PollInterval: 100 * time.Millisecond}})
	const simSecret = "conformance-sim-secret-0123456789"
	node := httptest.NewServer(sim.New(sim.Config{Secret: simSecret, Seed: 1}))
	t.Cleanup(node.Close)
	ctx := context.Background()
	srv, err := lb.Admin.AddServer(ctx, adminapi.AddServerRequest{URL: node.URL, Secret: simSecret})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lb.Admin.SetState(ctx, srv.ID, adminapi.SetStateRequest{State: fleet.Enabled}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the sim polled and online", func() bool {
		s, err := lb.Admin.Server(ctx, srv.ID)
		return err == nil && s.Online
	})
	get := func(call string, q url.Values) *http.Request {
		req, err := http.NewRequest(http.MethodGet, lb.Client.URL(call, q), nil)
		if err != nil {
			t.Fatal(err)
		}
		return req
	}
	create := url.Values{"meetingID": {"conf-1"}, "name": {"Conformance"}, "moderatorPW": {"mp"}, "attendeePW": {"ap"}, "meta_bbb-origin": {"greenlight"}}
	t.Run("create GET", func(t *testing.T) {
		a, body := conformanceGet(t, get("create", create))
		if a.ReturnCode != "SUCCESS" || a.MeetingID != "conf-1" {
			t.Errorf("create answered %s", body)
		}
	})
	t.Run("create again duplicateWarning", func(t *testing.T) {
		a, body := conformanceGet(t, get("create", create))
		if a.ReturnCode != "SUCCESS" || a.MessageKey != "duplicateWarning" {
			t.Errorf("second create answered %s, want SUCCESS duplicateWarning", body)
		}
	})
	t.Run("create POST with pre-upload body", func(t *testing.T) {
		q := url.Values{"meetingID": {"conf-2"}, "name": {"Conformance 2"}}
		body := `<?xml version="1.0" encoding="UTF-8"?><modules><module name="presentation"><document url="https://example.org/a.pdf" filename="a.pdf"/></module></modules>`
		req, err := http.NewRequest(http.MethodPost, lb.Client.URL("create", q), strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/xml")
		a, got := conformanceGet(t, req)
		if a.ReturnCode != "SUCCESS" || a.MeetingID != "conf-2" {
			t.Errorf("POST create answered %s", got)
		}
	})
	t.Run("join redirect=false", func(t *testing.T) {
		a, body := conformanceGet(t, get("join", url.Values{"meetingID": {"conf-1"}, "fullName": {"Ann"}, "role": {"MODERATOR"}, "redirect": {"false"}}))
		if a.ReturnCode != "SUCCESS" || a.URL == "" {
			t.Errorf("join redirect=false answered %s, want SUCCESS with <url>", body)
		}
	})
	t.Run("join unknown meeting", func(t *testing.T) {
		a, body := conformanceGet(t, get("join", url.Values{"meetingID": {"nope"}, "fullName": {"Ann"}, "role": {"MODERATOR"}, "redirect": {"false"}}))
		if a.ReturnCode != "FAILED" || a.MessageKey != "invalidMeetingIdentifier" {
			t.Errorf("join of an unknown meeting answered %s, want FAILED invalidMeetingIdentifier", body)
		}
	})
	t.Run("isMeetingRunning", func(t *testing.T) {
		a, body := conformanceGet(t, get("isMeetingRunning", url.Values{"meetingID": {"conf-1"}}))
		if a.ReturnCode != "SUCCESS" || a.Running == "" {
			t.Errorf("isMeetingRunning answered %s", body)
		}
	})
	t.Run("create same ID other passwords idNotUnique", func(t *testing.T) {
		q := url.Values{"meetingID": {"conf-1"}, "name": {"Conformance"}, "moderatorPW": {"other"}, "attendeePW": {"ap"}}
		a, body := conformanceGet(t, get("create", q))
		if a.ReturnCode != "FAILED" || a.MessageKey != "idNotUnique" {
			t.Errorf("create of a running meetingID with other passwords answered %s, want FAILED idNotUnique", body)
		}
	})
	for _, id := range []string{"x", strings.Repeat("m", 257), "a,b"} {
		t.Run("create invalid meetingID "+id[:1]+"/"+strconv.Itoa(len(id)), func(t *testing.T) {
			a, body := conformanceGet(t, get("create", url.Values{"meetingID": {id}, "name": {"Conformance"}}))
			if a.ReturnCode != "FAILED" || a.MessageKey == "" {
				t.Errorf("create with meetingID of %d characters %q answered %s, want FAILED (meetingID is 2..256 characters, no commas)", len(id), id[:1], body)
			}
		})
	}
	t.Run("getMeetings lists the meetings", func(t *testing.T) {
		_, body := conformanceGet(t, get("getMeetings", nil))
		var m struct {
			ReturnCode string   `xml:"returncode"`
			IDs        []string `xml:"meetings>meeting>meetingID"`
		}
		if err := xml.Unmarshal([]byte(body), &m); err != nil || m.ReturnCode != "SUCCESS" || len(m.IDs) != 2 {
			t.Errorf("getMeetings answered %s, want SUCCESS with conf-1 and conf-2 (%v)", body, err)
		}
	})
	t.Run("getMeetingInfo", func(t *testing.T) {
		a, body := conformanceGet(t, get("getMeetingInfo", url.Values{"meetingID": {"conf-1"}}))
		if a.ReturnCode != "SUCCESS" || a.MeetingID != "conf-1" || !strings.Contains(body, "<bbb-origin>greenlight</bbb-origin>") {
			t.Errorf("getMeetingInfo answered %s, want SUCCESS with the metadata", body)
		}
	})
	t.Run("getRecordings paging and filters", func(t *testing.T) {
		for _, q := range []url.Values{{"offset": {"0"}, "limit": {"10"}}, {"state": {"published,unpublished"}}, {"meta_bbb-origin": {"greenlight"}}, {"meetingID": {"conf-1,conf-2"}}} {
			a, body := conformanceGet(t, get("getRecordings", q))
			if a.ReturnCode != "SUCCESS" || a.Recordings == nil {
				t.Errorf("getRecordings?%s answered %s, want SUCCESS with <recordings>", q.Encode(), body)
			}
		}
	})
	t.Run("insertDocument POST", func(t *testing.T) {
		body := `<?xml version="1.0" encoding="UTF-8"?><modules><module name="presentation"><document url="https://example.org/b.pdf" filename="b.pdf"/></module></modules>`
		req, err := http.NewRequest(http.MethodPost, lb.Client.URL("insertDocument", url.Values{"meetingID": {"conf-2"}}), strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/xml")
		a, got := conformanceGet(t, req)
		if a.ReturnCode != "SUCCESS" {
			t.Errorf("insertDocument answered %s, want SUCCESS", got)
		}
	})
	t.Run("sendChatMessage (BBB 3.0) reaches the meeting's node", func(t *testing.T) {
		a, body := conformanceGet(t, get("sendChatMessage", url.Values{"meetingID": {"conf-2"}, "message": {"hello"}, "userName": {"Bot"}}))
		if a.ReturnCode != "SUCCESS" {
			t.Errorf("sendChatMessage answered %s, want SUCCESS", body)
		}
		a, body = conformanceGet(t, get("sendChatMessage", url.Values{"meetingID": {"conf-2"}, "message": {""}}))
		if a.ReturnCode != "FAILED" || a.MessageKey != "validationError" {
			t.Errorf("sendChatMessage without a message answered %s, want FAILED validationError", body)
		}
	})
	t.Run("join POST refused", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodPost, lb.Client.URL("join", url.Values{"meetingID": {"conf-1"}, "fullName": {"Ann"}, "role": {"MODERATOR"}, "redirect": {"false"}}), nil)
		if err != nil {
			t.Fatal(err)
		}
		if a, body := conformanceGet(t, req); a.ReturnCode != "FAILED" {
			t.Errorf("join by POST answered %s, want FAILED (BBB 2.7.8+ accepts join by GET only)", body)
		}
	})
	t.Run("end", func(t *testing.T) {
		a, body := conformanceGet(t, get("end", url.Values{"meetingID": {"conf-1"}}))
		if a.ReturnCode != "SUCCESS" || a.MessageKey != "sentEndMeetingRequest" {
			t.Errorf("end answered %s, want SUCCESS sentEndMeetingRequest", body)
		}
	})
}

// TestConformanceErrors checks the balancer's answers to the calls no BBB
// server is needed for against the shapes documented in BBB's API reference
// (https://docs.bigbluebutton.org/development/api/): returncode, messageKey,
// the presence of the empty list elements, and the content type.
func TestConformanceErrors(t *testing.T) {
	lb := balancertest.Start(t, balancertest.Options{})
	signed := func(call string, q url.Values) string { return lb.Client.URL(call, q) }
	tests := []struct {
		name, url       string
		returnCode, key string
		running         string
		meetings, recs  bool
	}{
		{name: "getMeetings empty", url: signed("getMeetings", nil), returnCode: "SUCCESS", key: "noMeetings", meetings: true},
		{name: "getRecordings empty", url: signed("getRecordings", nil), returnCode: "SUCCESS", key: "noRecordings", recs: true},
		{name: "getMeetingInfo unknown", url: signed("getMeetingInfo", url.Values{"meetingID": {"nope"}}), returnCode: "FAILED", key: "notFound"},
		{name: "isMeetingRunning unknown", url: signed("isMeetingRunning", url.Values{"meetingID": {"nope"}}), returnCode: "SUCCESS", running: "false"},
		{name: "end unknown", url: signed("end", url.Values{"meetingID": {"nope"}}), returnCode: "FAILED", key: "notFound"},
		{name: "bad checksum", url: lb.URL + "/bigbluebutton/api/getMeetings?checksum=0000000000000000000000000000000000000000", returnCode: "FAILED", key: "checksumError"},
		{name: "no checksum", url: lb.URL + "/bigbluebutton/api/getMeetings", returnCode: "FAILED", key: "checksumError"},
		{name: "create without meetingID", url: signed("create", url.Values{"name": {"x"}}), returnCode: "FAILED", key: "missingParamMeetingID"},
		{name: "getMeetingInfo without meetingID", url: signed("getMeetingInfo", nil), returnCode: "FAILED", key: "missingParamMeetingID"},
		{name: "api root", url: lb.URL + "/bigbluebutton/api", returnCode: "SUCCESS"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, tc.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			a, body := conformanceGet(t, req)
			if a.ReturnCode != tc.returnCode || a.MessageKey != tc.key {
				t.Errorf("returncode %q messageKey %q, want %q %q; body %s", a.ReturnCode, a.MessageKey, tc.returnCode, tc.key, body)
			}
			if tc.returnCode == "FAILED" && a.Message == "" {
				t.Errorf("FAILED answer without <message>; body %s", body)
			}
			if tc.running != "" && a.Running != tc.running {
				t.Errorf("running %q, want %q; body %s", a.Running, tc.running, body)
			}
			if tc.meetings && a.Meetings == nil {
				t.Errorf("no <meetings/> element; body %s", body)
			}
			if tc.recs && a.Recordings == nil {
				t.Errorf("no <recordings/> element; body %s", body)
			}
		})
	}
}
