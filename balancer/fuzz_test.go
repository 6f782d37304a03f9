package balancer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bbb-agent/bbb-agent/agentapi"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/bbb/sim"
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

// fuzzNode registers the env's first node with a node credential and
// returns the credential.
func fuzzNode(f *testing.F, e *env) string {
	const secret = "fuzz-node-secret-0123456789"
	ts := httptest.NewServer(sim.New(sim.Config{Secret: secret}))
	f.Cleanup(ts.Close)
	var resp agentapi.RegisterResponse
	e.agentCall(agentapi.PathRegister, agentapi.RegisterRequest{Node: "fuzz", URL: ts.URL, Secret: secret, Role: "bbb",
		ReportIntervalSeconds: 3600, NodeCredential: true}, &resp, http.StatusOK)
	if resp.Credential == "" {
		f.Fatal("registration answered no credential")
	}
	return resp.Credential
}

// serveAgent sends one agent API request through the replica's handler.
func serveAgent(e *env, method, path, bearer, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "http://balancer"+path, strings.NewReader(body))
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	w := httptest.NewRecorder()
	e.srv.Handler().ServeHTTP(w, req)
	return w
}

// FuzzAgentAPI throws arbitrary bodies at every agent API path, with the
// agent token, a node's credential, or garbage: never a panic, never a 5xx,
// every refusal the agent API's JSON error with a code (and a field for a
// bad request).
func FuzzAgentAPI(f *testing.F) {
	e := newEnv(f, "sqlite:"+f.TempDir()+"/fuzz.db", testenv.NewClock())
	cred := fuzzNode(f, e)
	paths := []string{agentapi.PathRegister, agentapi.PathReport, agentapi.PathCordon, agentapi.PathEnable, agentapi.PathDrain,
		agentapi.PathUndrain, agentapi.PathDeregister, agentapi.PathRotate, agentapi.PathPing}
	seeds := []struct {
		path   uint8
		bearer uint8
		body   string
	}{
		{0, 0, `{"node":"bbb9","url":"http://127.0.0.1:1","secret":"x","role":"bbb"}`},
		{0, 0, `{"node":"fuzz","url":"http://user:pw@127.0.0.1:1","secret":"x","role":"bbb","takeover":true}`},
		{0, 1, `{"node":"fuzz","role":"turn","turn_uris":["turn:x:3478"]}`},
		{0, 0, `{"node":"x","role":"bbb","load_multiplier":1e308,"report_interval_seconds":-1}`},
		{1, 1, `{"node":"fuzz","seq":3,"run":"r","load":{"participants":-100000,"cpu_percent":1e308}}`},
		{1, 1, `{"node":"fuzz","load":{"mem_total_bytes":-1}}`},
		{1, 0, `{"node":"fuzz","load":{}}`},
		{2, 1, `{"node":"bbb1"}`},
		{6, 1, `{"node":"fuzz"}`},
		{7, 1, `{"node":"fuzz"}`},
		{8, 2, ``},
		{1, 1, `{"node":"fuzz","meeting_ids":[1,2]}`},
		{1, 1, `[]`},
	}
	for _, s := range seeds {
		f.Add(s.path, s.bearer, s.body)
	}
	f.Fuzz(func(t *testing.T, path, bearer uint8, body string) {
		p := paths[int(path)%len(paths)]
		method := http.MethodPost
		if p == agentapi.PathPing {
			method = http.MethodGet
		}
		token := []string{agentToken, cred, "garbage", ""}[int(bearer)%4]
		w := serveAgent(e, method, p, token, body)
		if w.Code >= 500 {
			t.Fatalf("HTTP %d for %s %q: %s", w.Code, p, body, w.Body)
		}
		if w.Code < 400 {
			return
		}
		var apiErr agentapi.Error
		if err := json.Unmarshal(w.Body.Bytes(), &apiErr); err != nil || apiErr.Code == "" || apiErr.Error == "" {
			t.Fatalf("HTTP %d for %s %q is not the agent API's error: %q", w.Code, p, body, w.Body)
		}
		if w.Code == http.StatusBadRequest && apiErr.Field == "" {
			t.Fatalf("a bad request names no field: %q", w.Body)
		}
	})
}

// FuzzReport sends a node's arbitrary report: a report the balancer accepts
// leaves the node with finite, non-negative figures within bounds and a
// finite placement load; one it refuses names the field.
func FuzzReport(f *testing.F) {
	e := newEnv(f, "sqlite:"+f.TempDir()+"/fuzz.db", testenv.NewClock())
	cred := fuzzNode(f, e)
	for _, s := range []string{
		`{"cpu_percent":12.5,"participants":40,"meetings":2,"bbb_healthy":true}`,
		`{"participants":-100000}`,
		`{"cpu_percent":-1000}`,
		`{"cpu_percent":1e308,"load1":1e308}`,
		`{"mem_total_bytes":10,"mem_used_bytes":11}`,
		`{"meetings":9223372036854775807}`,
		`{"net_rx_bps":"NaN"}`,
		`{"video":1000001}`,
	} {
		f.Add(s, int64(1), "run")
	}
	f.Fuzz(func(t *testing.T, load string, seq int64, run string) {
		body := fmt.Sprintf(`{"node":"fuzz","seq":%d,"run":%q,"load":%s}`, seq, run, load)
		w := serveAgent(e, http.MethodPost, agentapi.PathReport, cred, body)
		switch w.Code {
		case http.StatusOK:
			n, ok := e.srv.reg.byNodeName("fuzz")
			if !ok {
				t.Fatal("the node is gone")
			}
			if field, msg := validateReport(&agentapi.ReportRequest{Seq: n.LastSeq, Load: n.Load}); field != "" {
				t.Fatalf("accepted %s: the node now has %s %s", body, field, msg)
			}
			if l := e.srv.cfg.Policy.Load(n, 0); !finite(l) || l < 0 {
				t.Fatalf("accepted %s: placement load %v", body, l)
			}
		case http.StatusBadRequest:
			var apiErr agentapi.Error
			if json.Unmarshal(w.Body.Bytes(), &apiErr) != nil || apiErr.Field == "" {
				t.Fatalf("refused %s naming no field: %q", body, w.Body)
			}
		default:
			t.Fatalf("HTTP %d for %s: %s", w.Code, body, w.Body)
		}
	})
}
