package imds

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// emulation starts the emulated IMDS on loopback with a clock the test moves.
func emulation(t *testing.T) (*Server, *httptest.Server, *time.Time) {
	t.Helper()
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	s := New(func() time.Time { return now })
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return s, hs, &now
}

func do(t *testing.T, method, url string, header map[string]string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(body)
}

func token(t *testing.T, base string, ttl string) string {
	t.Helper()
	code, h, body := do(t, http.MethodPut, base+TokenPath, map[string]string{TTLHeader: ttl})
	if code != http.StatusOK || body == "" || h.Get(TTLHeader) != ttl {
		t.Fatalf("token: %d %q ttl header %q", code, body, h.Get(TTLHeader))
	}
	return body
}

func TestEmulatedIMDSTokens(t *testing.T) {
	s, hs, now := emulation(t)
	s.Set("instance-id", "i-0123456789abcdef0")
	item := hs.URL + MetadataPath + "instance-id"

	if code, _, _ := do(t, http.MethodGet, item, nil); code != http.StatusUnauthorized {
		t.Errorf("GET without token: %d, want 401", code)
	}
	if code, _, _ := do(t, http.MethodGet, item, map[string]string{TokenHeader: "forged"}); code != http.StatusUnauthorized {
		t.Errorf("GET with a wrong token: %d, want 401", code)
	}
	for _, ttl := range []string{"", "0", "21601", "x"} {
		if code, _, _ := do(t, http.MethodPut, hs.URL+TokenPath, map[string]string{TTLHeader: ttl}); code != http.StatusBadRequest {
			t.Errorf("PUT token with ttl %q: %d, want 400", ttl, code)
		}
	}
	if code, _, _ := do(t, http.MethodGet, hs.URL+TokenPath, nil); code != http.StatusMethodNotAllowed {
		t.Errorf("GET token: %d, want 405", code)
	}
	if code, _, _ := do(t, http.MethodPut, hs.URL+TokenPath, map[string]string{TTLHeader: "60", "X-Forwarded-For": "10.0.0.1"}); code != http.StatusForbidden {
		t.Errorf("PUT token through a proxy: %d, want 403", code)
	}

	tok := token(t, hs.URL, "60")
	if code, _, body := do(t, http.MethodGet, item, map[string]string{TokenHeader: tok}); code != http.StatusOK || body != "i-0123456789abcdef0" {
		t.Errorf("GET with token: %d %q", code, body)
	}
	*now = now.Add(61 * time.Second)
	if code, _, _ := do(t, http.MethodGet, item, map[string]string{TokenHeader: tok}); code != http.StatusUnauthorized {
		t.Errorf("GET with an expired token: %d, want 401", code)
	}

	tok = token(t, hs.URL, "21600")
	s.RevokeTokens()
	if code, _, _ := do(t, http.MethodGet, item, map[string]string{TokenHeader: tok}); code != http.StatusUnauthorized {
		t.Errorf("GET with a revoked token: %d, want 401", code)
	}

	s.SetDisabled(true)
	if code, _, _ := do(t, http.MethodPut, hs.URL+TokenPath, map[string]string{TTLHeader: "60"}); code != http.StatusForbidden {
		t.Errorf("PUT token with IMDS turned off: %d, want 403", code)
	}

	if got := s.Requests(TokenPath); got != 9 {
		t.Errorf("token requests: %d, want 9", got)
	}
	if got := s.Requests(MetadataPath + "instance-id"); got != 5 {
		t.Errorf("instance-id requests: %d, want 5", got)
	}
}

func TestEmulatedIMDSItems(t *testing.T) {
	s, hs, _ := emulation(t)
	s.Set("instance-id", "i-1")
	s.Set("placement/region", "eu-central-1")
	s.Set("mac", "0a:00:00:00:00:01")
	s.Set("network/interfaces/macs/0a:00:00:00:00:01/ipv6s", "2001:db8::1")
	s.Set("tags/instance/aws:autoscaling:groupName", "bbb-asg")
	tok := token(t, hs.URL, "300")
	auth := map[string]string{TokenHeader: tok}

	for _, tc := range []struct {
		path string
		code int
		body string
	}{
		{"placement/region", 200, "eu-central-1"},
		{"tags/instance/aws:autoscaling:groupName", 200, "bbb-asg"},
		{"network/interfaces/macs/0a:00:00:00:00:01/ipv6s", 200, "2001:db8::1"},
		{"", 200, "instance-id\nmac\nnetwork/\nplacement/\ntags/"},
		{"placement", 200, "region"},
		{"network/interfaces/macs/", 200, "0a:00:00:00:00:01/"},
		{"public-ipv4", 404, ""},
		{"tags/instance/Name", 404, ""},
	} {
		code, h, body := do(t, http.MethodGet, hs.URL+MetadataPath+tc.path, auth)
		if code != tc.code {
			t.Errorf("%q: status %d, want %d", tc.path, code, tc.code)
			continue
		}
		if code == http.StatusNotFound {
			if !strings.Contains(body, "404 - Not Found") || h.Get("Content-Type") != "text/html" {
				t.Errorf("%q: 404 page %q (%s)", tc.path, body, h.Get("Content-Type"))
			}
			continue
		}
		if body != tc.body {
			t.Errorf("%q: %q, want %q", tc.path, body, tc.body)
		}
	}

	s.Set("autoscaling/target-lifecycle-state", "InService")
	s.Set("autoscaling/target-lifecycle-state", "Terminated")
	if _, _, body := do(t, http.MethodGet, hs.URL+MetadataPath+"autoscaling/target-lifecycle-state", auth); body != "Terminated" {
		t.Errorf("target-lifecycle-state: %q", body)
	}
	s.Delete("placement/region")
	if code, _, _ := do(t, http.MethodGet, hs.URL+MetadataPath+"placement/region", auth); code != http.StatusNotFound {
		t.Errorf("deleted item: %d, want 404", code)
	}
	if code, _, _ := do(t, http.MethodPost, hs.URL+MetadataPath+"instance-id", auth); code != http.StatusMethodNotAllowed {
		t.Errorf("POST item: %d, want 405", code)
	}
	if code, _, _ := do(t, http.MethodGet, hs.URL+"/latest/user-data", auth); code != http.StatusNotFound {
		t.Errorf("outside meta-data: %d, want 404", code)
	}
}

// TestEmulatedIMDSTags: tags listed and read while exposed, 404 when the
// instance keeps them out of its metadata; keys the real service cannot
// expose are refused.
func TestEmulatedIMDSTags(t *testing.T) {
	s, hs, _ := emulation(t)
	s.Set("instance-id", "i-0123456789abcdef0")
	for k, v := range map[string]string{"bbb-agent:role": "turn", "Name": "node 1", "aws:autoscaling:groupName": "bbb"} {
		if err := s.SetTag(k, v); err != nil {
			t.Fatalf("SetTag(%q): %v", k, err)
		}
	}
	h := map[string]string{TokenHeader: token(t, hs.URL, "60")}
	base := hs.URL + MetadataPath

	if code, _, body := do(t, http.MethodGet, base+TagsPath, h); code != http.StatusOK || body != "Name\naws:autoscaling:groupName\nbbb-agent:role" {
		t.Errorf("tag listing: %d %q", code, body)
	}
	if code, _, body := do(t, http.MethodGet, base+TagsPath+"/bbb-agent:role", h); code != http.StatusOK || body != "turn" {
		t.Errorf("tag bbb-agent:role: %d %q", code, body)
	}
	if code, _, body := do(t, http.MethodGet, base, h); code != http.StatusOK || body != "instance-id\ntags/" {
		t.Errorf("root listing: %d %q", code, body)
	}

	s.SetTagsExposed(false)
	for _, p := range []string{TagsPath, TagsPath + "/", TagsPath + "/bbb-agent:role", "tags"} {
		if code, _, _ := do(t, http.MethodGet, base+p, h); code != http.StatusNotFound {
			t.Errorf("%s with tags not exposed: %d, want 404", p, code)
		}
	}
	if code, _, body := do(t, http.MethodGet, base, h); code != http.StatusOK || body != "instance-id" {
		t.Errorf("root listing with tags not exposed: %d %q", code, body)
	}
	s.SetTagsExposed(true)
	if code, _, _ := do(t, http.MethodGet, base+TagsPath+"/Name", h); code != http.StatusOK {
		t.Errorf("tag Name exposed again: %d", code)
	}

	for _, bad := range []string{"", ".", "..", "_index", "bbb-agent/role", "has space", "bbb-agent:rôle"} {
		if err := s.SetTag(bad, "x"); err == nil {
			t.Errorf("SetTag(%q): no error; EC2 cannot expose that key in instance metadata", bad)
		}
	}
	for _, good := range []string{"bbb-agent:balancer-url", "a+b=c.d,e_f:g@h", "..."} {
		if err := ValidTagKey(good); err != nil {
			t.Errorf("ValidTagKey(%q): %v", good, err)
		}
	}
}
