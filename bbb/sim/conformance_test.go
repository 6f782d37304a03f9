package sim

import (
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/bbb-agent/bbb-agent/bbb"
)

// TestConformanceErrorAnswers checks the simulator's error and empty answers
// against the shapes in BBB's API reference
// (https://docs.bigbluebutton.org/development/api/): HTTP 200, text/xml, a
// <response> with returncode and messageKey.
func TestConformanceErrorAnswers(t *testing.T) {
	const secret = "conformance-secret-0123456789"
	ts := httptest.NewServer(New(Config{Secret: secret, Seed: 1}))
	t.Cleanup(ts.Close)
	c, err := bbb.NewClient(ts.URL, secret)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, url, returnCode, key string
	}{
		{"getMeetings empty", c.URL("getMeetings", nil), "SUCCESS", "noMeetings"},
		{"getRecordings empty", c.URL("getRecordings", nil), "SUCCESS", "noRecordings"},
		{"getMeetingInfo unknown", c.URL("getMeetingInfo", url.Values{"meetingID": {"nope"}}), "FAILED", "notFound"},
		{"end unknown", c.URL("end", url.Values{"meetingID": {"nope"}}), "FAILED", "notFound"},
		{"join unknown", c.URL("join", url.Values{"meetingID": {"nope"}, "fullName": {"A"}, "role": {"MODERATOR"}, "redirect": {"false"}}), "FAILED", "invalidMeetingIdentifier"},
		{"bad checksum", ts.URL + "/bigbluebutton/api/getMeetings?checksum=0000000000000000000000000000000000000000", "FAILED", "checksumError"},
		{"create without meetingID", c.URL("create", url.Values{"name": {"x"}}), "FAILED", "missingParamMeetingID"},
		{"isMeetingRunning unknown", c.URL("isMeetingRunning", url.Values{"meetingID": {"nope"}}), "SUCCESS", ""},
		{"sendChatMessage unknown", c.URL("sendChatMessage", url.Values{"meetingID": {"nope"}, "message": {"hi"}}), "FAILED", "meetingNotFound"},
		{"sendChatMessage without meetingID", c.URL("sendChatMessage", url.Values{"message": {"hi"}}), "FAILED", "missingParamMeetingID"},
		{"sendChatMessage too long", c.URL("sendChatMessage", url.Values{"meetingID": {"nope"}, "message": {strings.Repeat("x", 501)}}), "FAILED", "validationError"},
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
			if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/xml") {
				t.Errorf("status %d Content-Type %q, want 200 text/xml", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			var a struct {
				XMLName    xml.Name `xml:"response"`
				ReturnCode string   `xml:"returncode"`
				MessageKey string   `xml:"messageKey"`
			}
			if err := xml.Unmarshal(body, &a); err != nil {
				t.Fatalf("answer is not a <response>: %v; body %s", err, body)
			}
			if a.ReturnCode != tc.returnCode || a.MessageKey != tc.key {
				t.Errorf("returncode %q messageKey %q, want %q %q; body %s", a.ReturnCode, a.MessageKey, tc.returnCode, tc.key, body)
			}
		})
	}
}
