package balancer

import (
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/bbb"
)

// noRedirect is a client that shows redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// get GETs a path of the balancer with optional cookies.
func (re *recEnv) get(t *testing.T, p string, cookies ...*http.Cookie) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, re.http.URL+p, nil)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// playbackLink is the path and query of a recording's presentation link
// from getRecordings.
func (re *recEnv) playbackLink(t *testing.T, id string) string {
	t.Helper()
	var resp bbb.GetRecordingsResponse
	if err := re.client.Get(ctxT(t), bbb.CallGetRecordings, url.Values{"recordID": {id}}, &resp); err != nil || len(resp.Recordings) != 1 || len(resp.Recordings[0].Playback) != 1 {
		t.Fatalf("getRecordings %s: %+v %v", id, resp.Recordings, err)
	}
	u, err := url.Parse(resp.Recordings[0].Playback[0].URL)
	if err != nil || u.Host != "play.example.com" {
		t.Fatalf("link %q: %v", resp.Recordings[0].Playback[0].URL, err)
	}
	return u.RequestURI()
}

func TestProtectedRecordings(t *testing.T) {
	re := newRecEnv(t, backends[0].dsn(t))
	id := re.record(t, "prot", nil)
	other := re.record(t, "prot-other", nil)
	file := "/presentation/" + id + "/metadata.xml"
	if resp, _ := re.get(t, file); resp.StatusCode != 200 {
		t.Fatalf("unprotected: HTTP %d", resp.StatusCode)
	}
	plain := re.playbackLink(t, id)
	if err := re.client.Get(ctxT(t), bbb.CallUpdateRecordings, url.Values{"recordID": {id + "," + other}, "protect": {"true"}}, nil); err != nil {
		t.Fatal(err)
	}
	if resp, _ := re.get(t, file); resp.StatusCode != http.StatusForbidden {
		t.Errorf("protected without a cookie: HTTP %d, want 403", resp.StatusCode)
	}
	link := re.playbackLink(t, id)
	if !strings.HasPrefix(link, "/recording/"+id+"/presentation?token=") {
		t.Fatalf("protected link %q", link)
	}
	if second := re.playbackLink(t, id); second == link {
		t.Error("two getRecordings handed out the same one-use link")
	}
	resp, _ := re.get(t, link)
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "https://play.example.com"+plain {
		t.Fatalf("using the link: HTTP %d to %q, want 302 to %q", resp.StatusCode, resp.Header.Get("Location"), plain)
	}
	cookies := resp.Cookies()
	if len(cookies) != 1 {
		t.Fatalf("cookies %v", cookies)
	}
	c := cookies[0]
	if c.Path != "/presentation/"+id || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Secure {
		t.Errorf("cookie %+v: want path /presentation/%s, HttpOnly, SameSite=Lax, not Secure over plain HTTP", c, id)
	}
	if resp, _ := re.get(t, file, &http.Cookie{Name: c.Name, Value: c.Value}); resp.StatusCode != 200 {
		t.Errorf("with the cookie: HTTP %d", resp.StatusCode)
	}
	if resp, _ := re.get(t, "/presentation/"+other+"/metadata.xml", &http.Cookie{Name: c.Name, Value: c.Value}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("another recording with this cookie: HTTP %d, want 403", resp.StatusCode)
	}
	forged := c.Value[:len(c.Value)-2] + "AA"
	if resp, _ := re.get(t, file, &http.Cookie{Name: c.Name, Value: forged}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a forged cookie: HTTP %d, want 403", resp.StatusCode)
	}
	if resp, _ := re.get(t, link); resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
		t.Errorf("a reused link: HTTP %d, cookies %v; want 403 and none", resp.StatusCode, resp.Cookies())
	}
	if resp, _ := re.get(t, strings.Replace(link, "/"+id+"/", "/"+other+"/", 1)); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a token for another recording: HTTP %d, want 403", resp.StatusCode)
	}

	// Over TLS (a proxy saying so) the cookie is Secure.
	req, _ := http.NewRequest(http.MethodGet, re.http.URL+re.playbackLink(t, id), nil)
	req.Header.Set("X-Forwarded-Proto", "https")
	tlsResp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	tlsResp.Body.Close()
	if cs := tlsResp.Cookies(); len(cs) != 1 || !cs[0].Secure {
		t.Errorf("cookies over TLS: %+v, want one Secure", cs)
	}

	// Links expire unused; cookies expire too.
	stale := re.playbackLink(t, id)
	re.clock.Advance(protectedTokenTTL + time.Second)
	if resp, _ := re.get(t, stale); resp.StatusCode != http.StatusForbidden {
		t.Errorf("an expired link: HTTP %d, want 403", resp.StatusCode)
	}
	re.clock.Advance(protectedCookieTTL)
	if resp, _ := re.get(t, file, &http.Cookie{Name: c.Name, Value: c.Value}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("an expired cookie: HTTP %d, want 403", resp.StatusCode)
	}

	// An unpublished protected recording's link leads nowhere.
	fresh := re.playbackLink(t, id)
	re.both(t, bbb.CallPublishRecordings, url.Values{"recordID": {id}, "publish": {"false"}})
	if resp, _ := re.get(t, fresh); resp.StatusCode != http.StatusNotFound {
		t.Errorf("link of an unpublished recording: HTTP %d, want 404", resp.StatusCode)
	}
	re.both(t, bbb.CallPublishRecordings, url.Values{"recordID": {id}, "publish": {"true"}})

	// protect=false gives the plain link back.
	if err := re.client.Get(ctxT(t), bbb.CallUpdateRecordings, url.Values{"recordID": {id}, "protect": {"false"}}, nil); err != nil {
		t.Fatal(err)
	}
	if got := re.playbackLink(t, id); got != plain {
		t.Errorf("unprotected again: link %q, want %q", got, plain)
	}
	if resp, _ := re.get(t, file); resp.StatusCode != 200 {
		t.Errorf("unprotected again: HTTP %d", resp.StatusCode)
	}

	// --recordings-protected protects every new recording.
	re.srv.cfg.Recordings.Protected = true
	third := re.record(t, "prot-default", nil)
	if resp, _ := re.get(t, "/presentation/"+third+"/metadata.xml"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a new recording under --recordings-protected: HTTP %d, want 403", resp.StatusCode)
	}
	if link := re.playbackLink(t, third); !strings.HasPrefix(link, "/recording/") {
		t.Errorf("a new recording under --recordings-protected: link %q", link)
	}
}

func TestPlayerDir(t *testing.T) {
	re := newRecEnv(t, backends[0].dsn(t))
	dir := t.TempDir()
	files := map[string]string{"index.html": "<html>player</html>", "static/js/main.js": "console.log(1)", "static/css/main.css": "body{}"}
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	re.srv.cfg.Recordings.PlayerDir = dir
	re.srv = newRecReplica(t, re.store, re.clock, re.srv.cfg.Recordings)
	re.http.Config.Handler = re.srv.Handler()
	for _, c := range []struct{ path, body, ctype string }{
		{"/playback/presentation/2.3/static/js/main.js", files["static/js/main.js"], "text/javascript; charset=utf-8"},
		{"/playback/presentation/2.3/static/css/main.css", files["static/css/main.css"], "text/css; charset=utf-8"},
		{"/playback/presentation/2.3/index.html", files["index.html"], "text/html; charset=utf-8"},
		// The player's own routes: the SPA fallback.
		{"/playback/presentation/2.3/some-record-id", files["index.html"], "text/html; charset=utf-8"},
		{"/playback/presentation/2.3/some-record-id?t=10", files["index.html"], "text/html; charset=utf-8"},
		{"/playback/presentation/2.3/", files["index.html"], "text/html; charset=utf-8"},
		{"/playback/presentation/2.3/static", files["index.html"], "text/html; charset=utf-8"},
	} {
		resp, body := re.get(t, c.path)
		if resp.StatusCode != 200 || body != c.body || resp.Header.Get("Content-Type") != c.ctype {
			t.Errorf("%s: HTTP %d %q %q, want %q %q", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), body, c.ctype, c.body)
		}
	}
	// Without --playback-player-dir there is no player.
	re.srv.cfg.Recordings.PlayerDir = ""
	re.http.Config.Handler = newRecReplica(t, re.store, re.clock, re.srv.cfg.Recordings).Handler()
	if resp, _ := re.get(t, "/playback/presentation/2.3/index.html"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("no player dir: HTTP %d, want 404", resp.StatusCode)
	}
}
