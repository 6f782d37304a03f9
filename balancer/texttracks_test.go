package balancer

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/bbb-agent/bbb-agent/bbb"
)

// TestTextTracks: the caption-track calls answer in BBB's JSON (they were
// XML notFound before): an indexed recording lists no tracks, an unknown
// one is noRecordings, a missing recordID says so, an upload is refused
// with what to do.
func TestTextTracks(t *testing.T) {
	re := newRecEnv(t, backends[0].dsn(t)) // SQLite: the answer does not depend on the store
	id := re.record(t, "room-1", nil)
	for _, tc := range []struct {
		call      string
		method    string
		recordID  string
		code, key string
		tracks    bool
	}{
		{bbb.CallGetRecordingTextTracks, http.MethodGet, id, bbb.ReturnSuccess, "", true},
		{bbb.CallGetRecordingTextTracks, http.MethodGet, "nope", bbb.ReturnFailed, "noRecordings", false},
		{bbb.CallGetRecordingTextTracks, http.MethodGet, "", bbb.ReturnFailed, "missingParamRecordID", false},
		{bbb.CallPutRecordingTextTrack, http.MethodPost, id, bbb.ReturnFailed, "unsupportedRequest", false},
		{bbb.CallPutRecordingTextTrack, http.MethodPost, "nope", bbb.ReturnFailed, "noRecordings", false},
	} {
		t.Run(tc.call+"/"+tc.recordID, func(t *testing.T) {
			v := url.Values{}
			if tc.recordID != "" {
				v.Set("recordID", tc.recordID)
			}
			if tc.call == bbb.CallPutRecordingTextTrack {
				v.Set("kind", "subtitles")
				v.Set("lang", "en-US")
			}
			req, err := http.NewRequest(tc.method, re.client.URL(tc.call, v), strings.NewReader(""))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || !strings.HasPrefix(ct, "application/json") {
				t.Fatalf("HTTP %d %s, want 200 application/json: %s", resp.StatusCode, ct, body)
			}
			var got struct {
				Response struct {
					ReturnCode string             `json:"returncode"`
					MessageKey string             `json:"messageKey"`
					Message    string             `json:"message"`
					Tracks     *[]json.RawMessage `json:"tracks"`
				} `json:"response"`
			}
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("not JSON: %v: %s", err, body)
			}
			r := got.Response
			if r.ReturnCode != tc.code || r.MessageKey != tc.key || (tc.tracks != (r.Tracks != nil)) {
				t.Fatalf("answer %s, want returncode %s messageKey %q tracks %v", body, tc.code, tc.key, tc.tracks)
			}
			if tc.code == bbb.ReturnFailed && r.Message == "" {
				t.Fatalf("a failure without a message: %s", body)
			}
		})
	}
}
