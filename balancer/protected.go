package balancer

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/bbb-agent/bbb-agent/balancer/store"
)

// Protected recordings (updateRecordings protect=true, or every new one
// with --recordings-protected): getRecordings answers one-use links
// /recording/<id>/<format>?token=...; using one sets a signed cookie scoped
// to /<format>/<id> and redirects to the playback, and every file request
// of the recording needs that cookie. Tokens live in the database, so a
// link is one-use across replicas; the cookie is signed with the first BBB
// secret, which every replica shares.
const (
	// protectedTokenTTL is how long a one-use link stays usable.
	protectedTokenTTL = time.Hour
	// protectedCookieTTL is how long a viewer may play after using a link.
	protectedCookieTTL = 12 * time.Hour
	// protectedCookie is the cookie's name; its path scopes it.
	protectedCookie = "bbb_recording"
)

// handleProtected adds the one-use link route to mux.
func (s *Server) handleProtected(mux *http.ServeMux) {
	mux.HandleFunc("GET /recording/{id}/{format}", s.useRecordingLink)
}

// protectedLink issues a one-use link to one format of a recording.
func (s *Server) protectedLink(ctx context.Context, base, recordID, format string) (string, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	token := base64.RawURLEncoding.EncodeToString(raw)
	if err := s.store.IssueRecordingToken(ctx, tokenHash(token), recordID, format, s.cfg.Clock().Add(protectedTokenTTL)); err != nil {
		return "", err
	}
	return base + "/recording/" + url.PathEscape(recordID) + "/" + url.PathEscape(format) + "?token=" + token, nil
}

func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// useRecordingLink spends a one-use link: it sets the cookie and redirects
// to the playback. A used, expired or unknown token is 403.
func (s *Server) useRecordingLink(w http.ResponseWriter, r *http.Request) {
	recordID, format, token := r.PathValue("id"), r.PathValue("format"), r.URL.Query().Get("token")
	if !safeName(recordID) || !safeName(format) || token == "" {
		http.NotFound(w, r)
		return
	}
	rec, ok := s.playbackRecording(w, r, recordID)
	if !ok {
		return
	}
	f, ok := rec.Format(format)
	if !ok || rec.State != store.RecordingPublished {
		http.NotFound(w, r)
		return
	}
	now := s.cfg.Clock()
	switch err := s.store.UseRecordingToken(r.Context(), tokenHash(token), recordID, format, now); {
	case errors.Is(err, store.ErrNotFound):
		http.Error(w, "this recording link was used already or has expired: open the recording again from where you found it", http.StatusForbidden)
		return
	case err != nil:
		s.log.Error("protected playback: spending a token", "record_id", recordID, "err", err)
		http.Error(w, "the balancer's database did not answer; try again", http.StatusServiceUnavailable)
		return
	}
	expires := now.Add(protectedCookieTTL)
	http.SetCookie(w, &http.Cookie{
		Name: protectedCookie, Value: s.signCookie(recordID, format, expires),
		Path: "/" + format + "/" + recordID, Expires: expires, MaxAge: int(protectedCookieTTL / time.Second),
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: isTLS(r),
	})
	target := rebase(f.Link, s.playbackBase(r))
	if f.Link == "" {
		target = "/" + format + "/" + recordID + "/"
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, target, http.StatusFound)
}

// isTLS tells whether the viewer reached the balancer over TLS (directly
// or through a proxy that says so).
func isTLS(r *http.Request) bool {
	return r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https"
}

// signCookie is recordID/format/expiry (Unix s) and its HMAC-SHA256 under
// the first BBB secret.
func (s *Server) signCookie(recordID, format string, expires time.Time) string {
	payload := recordID + "/" + format + "/" + strconv.FormatInt(expires.Unix(), 10)
	return base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." + s.cookieMAC(payload)
}

func (s *Server) cookieMAC(payload string) string {
	m := hmac.New(sha256.New, []byte(s.cfg.Secrets[0]))
	fmt.Fprintf(m, "bbb-balancer protected recording\x00%s", payload)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// protectedAllowed tells whether r carries a valid cookie for this format of
// this recording.
func (s *Server) protectedAllowed(r *http.Request, recordID, format string) bool {
	now := s.cfg.Clock()
	for _, c := range r.CookiesNamed(protectedCookie) {
		enc, mac, ok := strings.Cut(c.Value, ".")
		if !ok {
			continue
		}
		raw, err := base64.RawURLEncoding.DecodeString(enc)
		if err != nil {
			continue
		}
		payload := string(raw)
		if subtle.ConstantTimeCompare([]byte(mac), []byte(s.cookieMAC(payload))) != 1 {
			continue
		}
		parts := strings.Split(payload, "/")
		if len(parts) != 3 || parts[0] != recordID || parts[1] != format {
			continue
		}
		exp, err := strconv.ParseInt(parts[2], 10, 64)
		if err == nil && now.Before(time.Unix(exp, 0)) {
			return true
		}
	}
	return false
}
