// Package imds is an EMULATION of the EC2 instance metadata service (IMDSv2)
// for tests: an http.Handler that issues session tokens on PUT /latest/api/token
// and serves the items a test sets under /latest/meta-data/ to requests that
// carry a valid token. It is not the real service and runs only on loopback.
package imds

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The paths and headers of the IMDSv2 wire protocol.
const (
	TokenPath    = "/latest/api/token"
	MetadataPath = "/latest/meta-data/"
	TokenHeader  = "X-aws-ec2-metadata-token"
	TTLHeader    = "X-aws-ec2-metadata-token-ttl-seconds"
)

// TagsPath is where the instance's tags are, relative to MetadataPath: its
// listing names the tag keys, TagsPath+"/"+key answers a tag's value.
const TagsPath = "tags/instance"

const (
	maxTokenTTL  = 21600 // seconds, the real service's limit
	notFoundPage = `<?xml version="1.0" encoding="iso-8859-1"?>` + "\n" +
		`<html><head><title>404 - Not Found</title></head><body><h1>404 - Not Found</h1></body></html>` + "\n"
)

// Server is the emulated metadata service of one instance. The zero value is
// not usable; call New.
type Server struct {
	mu       sync.Mutex
	now      func() time.Time
	items    map[string]string    // meta-data path (no leading slash) → value
	tokens   map[string]time.Time // token → expiry
	requests map[string]int       // URL path → number of requests
	disabled bool
	// tagsHidden: the instance's tags are not in its metadata
	// (InstanceMetadataTags=disabled): everything below TagsPath is 404.
	tagsHidden bool
}

// New returns an emulated metadata service with no items. now is its clock
// for token expiry; nil means time.Now.
func New(now func() time.Time) *Server {
	if now == nil {
		now = time.Now
	}
	return &Server{
		now:      now,
		items:    map[string]string{},
		tokens:   map[string]time.Time{},
		requests: map[string]int{},
	}
}

// Set makes the item at path (relative to /latest/meta-data/, e.g.
// "placement/region") answer value.
func (s *Server) Set(path, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.items[strings.Trim(path, "/")] = value
}

// Delete removes the item at path: it answers 404 from now on.
func (s *Server) Delete(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.items, strings.Trim(path, "/"))
}

// SetTag gives the instance the tag key=value, served at TagsPath/key while
// tags are exposed (SetTagsExposed). It refuses a key the real service
// cannot expose, as EC2 refuses to launch an instance with such a tag and
// tags in its metadata: only letters, digits and + - = . , _ : @, not "."
// or ".." or "_index".
func (s *Server) SetTag(key, value string) error {
	if err := ValidTagKey(key); err != nil {
		return err
	}
	s.Set(TagsPath+"/"+key, value)
	return nil
}

// ValidTagKey says whether key can be an instance tag key in instance
// metadata (EC2 User Guide, "View tags for your EC2 instances using
// instance metadata").
func ValidTagKey(key string) error {
	if key == "" || key == "." || key == ".." || key == "_index" {
		return fmt.Errorf("tag key %q cannot be in instance metadata", key)
	}
	for _, r := range key {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune("+-=.,_:@", r):
		default:
			return fmt.Errorf("tag key %q cannot be in instance metadata: %q is not a letter, digit or one of + - = . , _ : @", key, r)
		}
	}
	return nil
}

// SetTagsExposed says whether the instance's tags are in its metadata
// (InstanceMetadataTags=enabled, which New assumes) or not (disabled, EC2's
// default): then TagsPath and everything below it answer 404, as the real
// service does, whatever tags the instance has.
func (s *Server) SetTagsExposed(exposed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tagsHidden = !exposed
}

// SetDisabled turns the whole service off (true) or on, as the instance's
// HttpEndpoint=disabled option does: every request then answers 403.
func (s *Server) SetDisabled(disabled bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.disabled = disabled
}

// RevokeTokens makes every token issued so far invalid, as if each had
// expired: the next GET with one of them answers 401.
func (s *Server) RevokeTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.tokens)
}

// Requests returns how many requests arrived for the URL path, e.g.
// "/latest/api/token" or "/latest/meta-data/instance-id", whatever they were
// answered.
func (s *Server) Requests(urlPath string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[urlPath]
}

// ServeHTTP answers one IMDSv2 request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests[r.URL.Path]++
	if s.disabled {
		http.Error(w, "Forbidden", http.StatusForbidden)
		return
	}
	switch {
	case r.URL.Path == TokenPath:
		s.issueToken(w, r)
	case r.URL.Path == strings.TrimSuffix(MetadataPath, "/") || strings.HasPrefix(r.URL.Path, MetadataPath):
		s.serveItem(w, r)
	default:
		notFound(w)
	}
}

// issueToken answers PUT /latest/api/token: a fresh token valid for the TTL
// the client asked for (1 to 21600 seconds), echoed in the TTL header.
func (s *Server) issueToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut {
		w.Header().Set("Allow", http.MethodPut)
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	// The real service refuses token requests that went through a proxy.
	if r.Header.Get("X-Forwarded-For") != "" {
		http.Error(w, "Forbidden", http.StatusForbidden)
		return
	}
	ttl, err := strconv.Atoi(r.Header.Get(TTLHeader))
	if err != nil || ttl < 1 || ttl > maxTokenTTL {
		http.Error(w, "Bad Request", http.StatusBadRequest)
		return
	}
	token := rand.Text()
	s.tokens[token] = s.now().Add(time.Duration(ttl) * time.Second)
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set(TTLHeader, strconv.Itoa(ttl))
	_, _ = w.Write([]byte(token))
}

// serveItem answers GET /latest/meta-data/<path>: the item's value, or the
// listing of a directory (children one per line, sub-directories with a
// trailing slash), or 404. Without a valid token it answers 401, as an
// instance with HttpTokens=required does.
func (s *Server) serveItem(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	expiry, ok := s.tokens[r.Header.Get(TokenHeader)]
	if !ok || !s.now().Before(expiry) {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	path := strings.Trim(strings.TrimPrefix(r.URL.Path, strings.TrimSuffix(MetadataPath, "/")), "/")
	body, ok := s.items[path]
	if !ok {
		body, ok = s.listing(path)
	}
	if s.tagsHidden && (path == TagsPath || strings.HasPrefix(path, TagsPath+"/")) {
		ok = false
	}
	if !ok {
		notFound(w)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte(body))
}

// listing returns the immediate children of the directory dir ("" is the
// root), or false when no item lies below it.
func (s *Server) listing(dir string) (string, bool) {
	prefix := dir + "/"
	if dir == "" {
		prefix = ""
	}
	seen := map[string]bool{}
	for p := range s.items {
		if s.tagsHidden && strings.HasPrefix(p, TagsPath+"/") {
			continue
		}
		rest, ok := strings.CutPrefix(p, prefix)
		if !ok || rest == "" {
			continue
		}
		if child, _, sub := strings.Cut(rest, "/"); sub {
			seen[child+"/"] = true
		} else {
			seen[child] = true
		}
	}
	if len(seen) == 0 {
		return "", false
	}
	children := make([]string, 0, len(seen))
	for c := range seen {
		children = append(children, c)
	}
	slices.Sort(children)
	return strings.Join(children, "\n"), true
}

func notFound(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(http.StatusNotFound)
	_, _ = w.Write([]byte(notFoundPage))
}
