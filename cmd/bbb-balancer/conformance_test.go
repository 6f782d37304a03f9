package main

import (
	"encoding/xml"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/bbb-agent/bbb-agent/balancer/balancertest"
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
			resp, err := http.Get(tc.url)
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
