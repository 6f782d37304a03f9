package scalelite

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/fleet"
)

const (
	secret      = "loadbalancer-secret-0123456789"
	otherSecret = "second-loadbalancer-secret-42"
	apiURL      = "https://bbb1.example.com/bigbluebutton/api/"
)

type emu struct {
	*Emulator
	ts *httptest.Server
}

func start(t *testing.T, cfg Config) emu {
	t.Helper()
	if cfg.Secrets == nil {
		cfg.Secrets = []string{secret, otherSecret}
	}
	e := New(cfg)
	ts := httptest.NewServer(e)
	t.Cleanup(ts.Close)
	return emu{e, ts}
}

type reply struct {
	status int
	ctype  string
	body   []byte
}

// send sends a request with a ready query string (checksum included).
func (e emu) send(t *testing.T, method, action, query, body string) reply {
	t.Helper()
	req, err := http.NewRequest(method, e.ts.URL+PathPrefix+action+"?"+query, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{resp.StatusCode, resp.Header.Get("Content-Type"), b}
}

// signed sends a call signed as Scalelite expects: the checksum covers the
// call name and the query string, not the body.
func (e emu) signed(t *testing.T, method, action string, query url.Values, body string) reply {
	t.Helper()
	return e.send(t, method, action, bbb.SignQuery(bbb.SHA256, action, query.Encode(), secret), body)
}

// failed returns the messageKey of BBB's XML FAILED answer, or "".
func (r reply) failed() string {
	var x struct {
		XMLName    xml.Name `xml:"response"`
		ReturnCode string   `xml:"returncode"`
		MessageKey string   `xml:"messageKey"`
	}
	if xml.Unmarshal(r.body, &x) != nil || x.ReturnCode != "FAILED" {
		return ""
	}
	return x.MessageKey
}

func (r reply) server(t *testing.T) map[string]any {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("HTTP %d: %s", r.status, r.body)
	}
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("%v: %s", err, r.body)
	}
	return m
}

func TestEmulationChecksum(t *testing.T) {
	e := start(t, Config{})
	srv, err := e.AddServer(apiURL, "bbb-secret")
	if err != nil {
		t.Fatal(err)
	}
	idQuery := url.Values{"id": {srv.ID}}.Encode()
	body := `{"server":{"url":"https://bbb2.example.com/bigbluebutton/api/","secret":"s"}}`
	tests := []struct {
		name, method, action, query, body string
		refused                           bool
	}{
		{"sha256", "GET", "getServers", bbb.SignQuery(bbb.SHA256, "getServers", "", secret), "", false},
		{"sha1", "GET", "getServers", bbb.SignQuery(bbb.SHA1, "getServers", "", secret), "", false},
		{"sha512", "GET", "getServers", bbb.SignQuery(bbb.SHA512, "getServers", "", secret), "", false},
		{"upper-case hex", "GET", "getServers", "checksum=" + strings.ToUpper(bbb.Checksum(bbb.SHA256, "getServers", "", secret)), "", false},
		{"second secret", "GET", "getServers", bbb.SignQuery(bbb.SHA256, "getServers", "", otherSecret), "", false},
		{"sha384 is not in Scalelite's default set", "GET", "getServers", bbb.SignQuery(bbb.SHA384, "getServers", "", secret), "", true},
		{"no checksum", "GET", "getServers", "", "", true},
		{"empty checksum", "GET", "getServers", "checksum=", "", true},
		{"wrong secret", "GET", "getServers", bbb.SignQuery(bbb.SHA256, "getServers", "", "wrong"), "", true},
		{"another call's checksum", "GET", "getServers", bbb.SignQuery(bbb.SHA256, "getServerInfo", "", secret), "", true},
		{"query signed", "GET", "getServerInfo", bbb.SignQuery(bbb.SHA256, "getServerInfo", idQuery, secret), "", false},
		{"query left out of the checksum", "GET", "getServerInfo", idQuery + "&checksum=" + bbb.Checksum(bbb.SHA256, "getServerInfo", "", secret), "", true},
		{"POST: call name and empty query", "POST", "addServer", bbb.SignQuery(bbb.SHA256, "addServer", "", secret), body, false},
		{"POST: body signed (issue #1158)", "POST", "addServer", "checksum=" + bbb.Checksum(bbb.SHA256, "addServer", body, secret), body, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.send(t, tt.method, tt.action, tt.query, tt.body)
			refused := r.failed() == "checksumError"
			if refused != tt.refused {
				t.Fatalf("refused = %v, want %v: HTTP %d %s", refused, tt.refused, r.status, r.body)
			}
			if refused && (r.status != http.StatusOK || !strings.Contains(r.ctype, "xml")) {
				t.Errorf("checksumError came as HTTP %d %s; Scalelite answers HTTP 200 with XML", r.status, r.ctype)
			}
		})
	}
}

func TestEmulationConfiguredAlgorithms(t *testing.T) {
	e := start(t, Config{Algorithms: []bbb.Algorithm{bbb.SHA512}})
	for alg, refused := range map[bbb.Algorithm]bool{bbb.SHA1: true, bbb.SHA256: true, bbb.SHA512: false} {
		r := e.send(t, "GET", "getServers", bbb.SignQuery(alg, "getServers", "", secret), "")
		if got := r.failed() == "checksumError"; got != refused {
			t.Errorf("%s: refused = %v, want %v", alg, got, refused)
		}
	}
}

func TestEmulationServerLifecycle(t *testing.T) {
	e := start(t, Config{})
	// An empty pool: getServers answers 404.
	if r := e.signed(t, "GET", "getServers", nil, ""); r.status != http.StatusNotFound {
		t.Errorf("getServers on an empty pool: HTTP %d, want 404", r.status)
	}
	added := e.signed(t, "POST", "addServer", nil, `{"server":{"url":"`+apiURL+`","secret":"bbb-secret","tag":"eu"}}`).server(t)
	id, _ := added["id"].(string)
	want := map[string]any{"id": id, "url": apiURL, "secret": "bbb-secret", "tag": "eu", "state": "disabled",
		"load": 0.0, "load_multiplier": "1.0", "online": "offline"}
	for k, v := range want {
		if added[k] != v {
			t.Errorf("added server %s = %#v, want %#v", k, added[k], v)
		}
	}
	if len(id) != 36 {
		t.Errorf("id %q is not a UUID", id)
	}
	r := e.signed(t, "GET", "getServers", nil, "")
	var list []map[string]any
	if err := json.Unmarshal(r.body, &list); err != nil || len(list) != 1 || list[0]["id"] != id {
		t.Fatalf("getServers = HTTP %d %s", r.status, r.body)
	}
	steps := []struct {
		server string
		field  string
		want   any
	}{
		{`{"state":"enable"}`, "state", "enabled"},
		{`{"state":"cordon"}`, "state", "cordoned"},
		{`{"state":"disable"}`, "state", "disabled"},
		{`{"secret":"rotated"}`, "secret", "rotated"},
		{`{"load_multiplier":2.5}`, "load_multiplier", "2.5"},
		{`{"tag":""}`, "tag", nil},
	}
	for _, s := range steps {
		got := e.signed(t, "POST", "updateServer", nil, `{"id":"`+id+`","server":`+s.server+`}`).server(t)
		if got[s.field] != s.want {
			t.Errorf("updateServer %s: %s = %#v, want %#v", s.server, s.field, got[s.field], s.want)
		}
		info := e.signed(t, "GET", "getServerInfo", url.Values{"id": {id}}, "").server(t)
		if info[s.field] != s.want {
			t.Errorf("getServerInfo after %s: %s = %#v, want %#v", s.server, s.field, info[s.field], s.want)
		}
	}
	del := e.signed(t, "POST", "deleteServer", nil, `{"id":"`+id+`"}`).server(t)
	if del["success"] != "Server id="+id+" was destroyed" {
		t.Errorf("deleteServer = %v", del)
	}
	if r := e.signed(t, "GET", "getServerInfo", url.Values{"id": {id}}, ""); r.status != http.StatusNotFound || !json.Valid(r.body) {
		t.Errorf("getServerInfo after delete: HTTP %d %s, want a JSON 404", r.status, r.body)
	}
	if n := len(e.Servers()); n != 0 {
		t.Errorf("%d servers left", n)
	}
}

func TestEmulationRefusesBadRequests(t *testing.T) {
	e := start(t, Config{})
	srv, err := e.AddServer(apiURL, "bbb-secret")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, method, action string
		query                url.Values
		body                 string
		status               int
		messageKey           string // of an XML answer, else ""
	}{
		{"add without a secret", "POST", "addServer", nil, `{"server":{"url":"` + apiURL + `"}}`, 400, ""},
		{"add with a bad URL", "POST", "addServer", nil, `{"server":{"url":"bbb1","secret":"s"}}`, 400, ""},
		{"body not JSON", "POST", "addServer", nil, `url=x`, 400, ""},
		{"unknown state", "POST", "updateServer", nil, `{"id":"` + srv.ID + `","server":{"state":"drain"}}`, 400, ""},
		{"zero load multiplier", "POST", "updateServer", nil, `{"id":"` + srv.ID + `","server":{"load_multiplier":0}}`, 400, ""},
		{"update an unknown id", "POST", "updateServer", nil, `{"id":"nope","server":{"state":"enable"}}`, 404, ""},
		{"delete an unknown id", "POST", "deleteServer", nil, `{"id":"nope"}`, 404, ""},
		{"panic an unknown id", "POST", "panicServer", nil, `{"id":"nope"}`, 404, ""},
		{"info without an id", "GET", "getServerInfo", nil, "", 404, ""},
		{"wrong method", "GET", "addServer", nil, "", 200, "unsupportedRequest"},
		{"unknown call", "GET", "getTenants", nil, "", 200, "unsupportedRequest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.signed(t, tt.method, tt.action, tt.query, tt.body)
			if r.status != tt.status || r.failed() != tt.messageKey {
				t.Fatalf("HTTP %d %s, want HTTP %d %q", r.status, r.body, tt.status, tt.messageKey)
			}
			if tt.messageKey == "" {
				var e struct{ Error string }
				if json.Unmarshal(r.body, &e) != nil || e.Error == "" {
					t.Errorf("error body %s is not JSON with an error", r.body)
				}
			}
		})
	}
	if got := e.Servers(); len(got) != 1 || got[0].State != fleet.Disabled || got[0].LoadMultiplier != 1 {
		t.Errorf("refused requests changed the pool: %+v", got)
	}
}

func TestEmulationPanicServer(t *testing.T) {
	e := start(t, Config{})
	for _, tt := range []struct {
		keep string
		want fleet.AdminState
	}{{"false", fleet.Disabled}, {"true", fleet.Cordoned}} {
		srv, err := e.AddServer(apiURL, "bbb-secret")
		if err != nil {
			t.Fatal(err)
		}
		if err := e.SetState(srv.ID, fleet.Cordoned); err != nil {
			t.Fatal(err)
		}
		r := e.signed(t, "POST", "panicServer", nil, `{"id":"`+srv.ID+`","server":{"keep_state":`+tt.keep+`}}`).server(t)
		if !strings.Contains(r["success"].(string), "has been disabled") {
			t.Errorf("panicServer = %v", r)
		}
		info := e.signed(t, "GET", "getServerInfo", url.Values{"id": {srv.ID}}, "").server(t)
		if info["state"] != string(tt.want) {
			t.Errorf("keep_state %s: state %v, want %s", tt.keep, info["state"], tt.want)
		}
	}
}

func TestEmulationServerIDIsHostname(t *testing.T) {
	e := start(t, Config{IDIsHostname: true})
	r := e.signed(t, "POST", "addServer", nil, `{"server":{"url":"`+apiURL+`","secret":"s","load_multiplier":3}}`).server(t)
	if r["id"] != "bbb1.example.com" || r["load_multiplier"] != "3.0" {
		t.Errorf("added = %v, want id bbb1.example.com, load_multiplier 3.0", r)
	}
	dup := e.signed(t, "POST", "addServer", nil, `{"server":{"url":"https://bbb1.example.com:8443/bigbluebutton/api/","secret":"s"}}`)
	if dup.status != http.StatusBadRequest {
		t.Errorf("a second server on the same host: HTTP %d %s, want 400", dup.status, dup.body)
	}
}

func TestEmulationTestHooks(t *testing.T) {
	e := start(t, Config{})
	srv, err := e.AddServer(apiURL, "bbb-secret")
	if err != nil {
		t.Fatal(err)
	}
	if srv.State != fleet.Disabled || srv.Online {
		t.Errorf("operator-added server = %+v, want disabled and offline", srv)
	}
	if err := e.SetState(srv.ID, fleet.Cordoned); err != nil {
		t.Fatal(err)
	}
	if err := e.SetOnline(srv.ID, true); err != nil {
		t.Fatal(err)
	}
	info := e.signed(t, "GET", "getServerInfo", url.Values{"id": {srv.ID}}, "").server(t)
	if info["state"] != "cordoned" || info["online"] != "online" {
		t.Errorf("getServerInfo = %v, want cordoned and online", info)
	}
	for name, err := range map[string]error{
		"SetState of an unknown id":  e.SetState("nope", fleet.Enabled),
		"SetState to an unknown one": e.SetState(srv.ID, "drained"),
		"SetOnline of an unknown id": e.SetOnline("nope", true),
	} {
		if err == nil {
			t.Errorf("%s succeeded", name)
		}
	}
	if _, err := e.AddServer("not a url", "s"); err == nil {
		t.Error("AddServer with a bad URL succeeded")
	}
	e.send(t, "GET", "getServers", "checksum=bad", "") // refused calls count too
	if got := e.Calls(); got["getServerInfo"] != 1 || got["getServers"] != 1 || len(got) != 2 {
		t.Errorf("Calls() = %v", got)
	}
}

func TestEmulationFaults(t *testing.T) {
	e := start(t, Config{})
	e.SetFault("getServers", InternalError)
	if r := e.signed(t, "GET", "getServers", nil, ""); r.status != http.StatusInternalServerError || !strings.HasPrefix(r.ctype, "text/html") {
		t.Errorf("InternalError: HTTP %d %s", r.status, r.ctype)
	}
	if r := e.signed(t, "POST", "addServer", nil, `{"server":{"url":"`+apiURL+`","secret":"s"}}`); r.status != http.StatusOK {
		t.Errorf("a fault on getServers struck addServer: HTTP %d %s", r.status, r.body)
	}
	e.SetFault("", Unsupported)
	if r := e.signed(t, "POST", "addServer", nil, `{}`); r.failed() != "unsupportedRequest" {
		t.Errorf("Unsupported on every call: addServer answered HTTP %d %s", r.status, r.body)
	}
	if r := e.signed(t, "GET", "getServers", nil, ""); r.status != http.StatusInternalServerError {
		t.Errorf("the fault set for getServers yields to the one for every call: HTTP %d", r.status)
	}
	e.SetFault("getServers", NoFault)
	e.SetFault("", Hang)
	// The hanging call goes through a wrapper that says when it arrived.
	arrived := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		e.ServeHTTP(w, r)
	}))
	defer ts.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+PathPrefix+"getServers", nil)
		resp, err := ts.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	<-arrived
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Hang: the call ended with %v, want the client's cancellation", err)
	}
	e.SetFault("", NoFault)
	if r := e.signed(t, "GET", "getServers", nil, ""); r.status != http.StatusOK {
		t.Errorf("after NoFault: HTTP %d %s", r.status, r.body)
	}
}
