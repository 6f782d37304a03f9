package balancer

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// FuzzAPIRequest throws arbitrary calls, queries and bodies at the BBB API
// front, signed or not: it must never panic, never answer 5xx, and always
// answer a BBB XML envelope (or a join redirect).
func FuzzAPIRequest(f *testing.F) {
	e := newEnv(f, "sqlite:"+f.TempDir()+"/fuzz.db", testenv.NewClock())
	e.addNodes(1)
	seeds := []struct {
		method, call, query, body string
		sign                      bool
	}{
		{"GET", "create", "meetingID=abc&name=x", "", true},
		{"POST", "create", "meetingID=abc", "<modules><module name=\"presentation\"><document url=\"http://x/a.pdf\"/></module></modules>", true},
		{"GET", "join", "meetingID=abc&fullName=A&role=VIEWER", "", true},
		{"GET", "join", "meetingID=abc&fullName=A&redirect=false", "", true},
		{"GET", "getMeetings", "", "", true},
		{"GET", "end", "meetingID=abc", "", false},
		{"GET", "create", "meetingID=%FF%FE&meetingID=x", "", true},
		{"GET", "create", "checksum=1&checksum=2", "", false},
		{"POST", "insertDocument", "meetingID=abc", "<modules", true},
		{"GET", "../../admin", "", "", true},
		{"GET", "", "", "", false},
	}
	for _, s := range seeds {
		f.Add(s.method, s.call, s.query, s.body, s.sign)
	}
	f.Fuzz(func(t *testing.T, method, call, query, body string, sign bool) {
		if method != "GET" && method != "POST" {
			method = "GET"
		}
		if sign {
			query = bbb.SignQuery(bbb.SHA256, call, query, lbSecret)
		}
		target := "/bigbluebutton/api/" + call
		req, err := http.NewRequest(method, "http://balancer"+target, strings.NewReader(body))
		if err != nil {
			return // not a request a client could send
		}
		req.URL.RawQuery = query
		w := httptest.NewRecorder()
		e.srv.Handler().ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("HTTP %d for %s %q?%q", w.Code, method, call, query)
		}
		if w.Code == http.StatusFound || w.Code == http.StatusNotFound || w.Code == http.StatusMovedPermanently || w.Code == http.StatusTemporaryRedirect {
			return // a join redirect, or a path outside the API (mux 404/redirect)
		}
		if err := bbb.DecodeResponse(call, w.Body.Bytes(), nil); err != nil && !bytes.Contains(w.Body.Bytes(), []byte("<returncode>FAILED</returncode>")) {
			t.Fatalf("not a BBB answer (HTTP %d): %q", w.Code, w.Body.String())
		}
	})
}
