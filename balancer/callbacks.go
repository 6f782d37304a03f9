package balancer

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/bbb-agent/bbb-agent/balancer/store"
	"github.com/bbb-agent/bbb-agent/bbb"
)

// recordingReadyKeys are the create parameters that ask for a
// recording-ready callback (BBB's own and those of Scalelite's front-ends).
var recordingReadyKeys = []string{"meta_bbb-recording-ready-url", "meta_bn-recording-ready-url", "meta_canvas-recording-ready-url"}

// Callback delivery settings.
const (
	callbackLease      = 2 * time.Minute // a claimed callback is another replica's again after this
	callbackTimeout    = 10 * time.Second
	callbackBackoffMin = 30 * time.Second
	callbackBackoffMax = 6 * time.Hour
	callbackBatch      = 32
)

// takeRecordingReady removes the recording-ready parameters from a create
// before it reaches the node (which would call back itself, signed with
// its own secret), and remembers the URL with the secret the front-end
// signed with.
func (s *Server) takeRecordingReady(ctx context.Context, r *http.Request, req *apiRequest) {
	var callbackURL string
	for _, k := range recordingReadyKeys {
		for pk, vs := range req.params {
			if strings.EqualFold(pk, k) {
				if callbackURL == "" {
					callbackURL = vs[0]
				}
				delete(req.params, pk)
			}
		}
	}
	if callbackURL == "" {
		return
	}
	kept := ""
	for part := range strings.SplitSeq(req.query, "&") {
		key, _, _ := strings.Cut(part, "=")
		if k, err := url.QueryUnescape(key); err == nil && isRecordingReadyKey(k) {
			continue
		}
		if kept != "" {
			kept += "&"
		}
		kept += part
	}
	req.query = kept
	u, err := url.Parse(callbackURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		s.log.Warn("create: ignoring a recording-ready URL that is not http(s)", "meeting", req.params.Get("meetingID"))
		return
	}
	secret := s.signingSecret(req.call, r.URL.RawQuery)
	if err := s.store.RememberCallback(ctx, req.params.Get("meetingID"), callbackURL, secretID(secret), s.cfg.Clock()); err != nil {
		s.log.Error("create: remembering the recording-ready URL", "meeting", req.params.Get("meetingID"), "err", err)
	}
}

func isRecordingReadyKey(k string) bool {
	for _, rk := range recordingReadyKeys {
		if strings.EqualFold(k, rk) {
			return true
		}
	}
	return false
}

// signingSecret finds which of the balancer's secrets signed a verified
// call; the first when none does (cannot happen after Verify).
func (s *Server) signingSecret(call, rawQuery string) string {
	query, sum, err := bbb.SplitChecksum(rawQuery)
	if err == nil {
		for _, secret := range s.cfg.Secrets {
			for _, alg := range bbb.AllAlgorithms {
				want := bbb.Checksum(alg, call, query, secret)
				if len(want) == len(sum) && subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(sum))) == 1 {
					return secret
				}
			}
		}
	}
	return s.cfg.Secrets[0]
}

// secretID names a secret in the database without storing it.
func secretID(secret string) string {
	sum := sha256.Sum256([]byte("bbb-balancer callback secret\x00" + secret))
	return hex.EncodeToString(sum[:8])
}

// secretByID is the configured secret with that ID; after a rotation that
// removed it, the first secret.
func (s *Server) secretByID(id string) string {
	for _, secret := range s.cfg.Secrets {
		if secretID(secret) == id {
			return secret
		}
	}
	return s.cfg.Secrets[0]
}

// signJWT returns an HS256 JSON Web Token of claims.
func signJWT(claims any, secret string) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString(payload)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(mac.Sum(nil)), nil
}

// queueCallback queues a newly indexed recording's callback, if its
// meeting asked for one.
func (s *Server) queueCallback(ctx context.Context, meetingID, recordID string) {
	queued, err := s.store.QueueCallback(ctx, meetingID, recordID, s.cfg.Clock())
	if err != nil {
		s.log.Error("queueing a recording-ready callback", "record_id", recordID, "err", err)
		return
	}
	if queued {
		s.log.Info("recording-ready callback queued", "record_id", recordID, "meeting", meetingID)
	}
}

// DeliverCallbacks makes one attempt at every due callback and returns how
// many were delivered.
func (s *Server) DeliverCallbacks(ctx context.Context) (int, error) {
	due, err := s.store.ClaimCallbacks(ctx, s.cfg.Clock(), callbackLease, callbackBatch)
	if err != nil {
		return 0, err
	}
	delivered := 0
	for _, c := range due {
		state, status, err := s.deliver(ctx, c)
		next, lastErr := time.Time{}, ""
		switch state {
		case store.CallbackDelivered:
			delivered++
			s.rec.callbacks.WithLabelValues("delivered").Inc()
			s.log.Info("recording-ready callback delivered", "record_id", c.RecordID, "attempts", c.Attempts+1)
		case store.CallbackFailed:
			lastErr = fmt.Sprintf("HTTP %d: the receiver does not want it", status)
			s.rec.callbacks.WithLabelValues("gone").Inc()
			s.log.Warn("recording-ready callback refused for good", "record_id", c.RecordID, "status", status)
		default:
			lastErr = err.Error()
			wait := min(cmp.Or(s.cfg.Recordings.CallbackBackoff, callbackBackoffMin)<<min(c.Attempts, 12), callbackBackoffMax)
			next = s.cfg.Clock().Add(wait)
			s.rec.callbacks.WithLabelValues("retry").Inc()
			s.log.Warn("recording-ready callback failed; will retry", "record_id", c.RecordID, "attempts", c.Attempts+1, "retry_in", wait, "err", err)
		}
		if err := s.store.FinishCallback(ctx, c, state, next, lastErr); err != nil {
			return delivered, err
		}
	}
	return delivered, nil
}

// deliver POSTs one callback: delivered on 2xx, failed for good on 404 and
// 410, queued again otherwise.
func (s *Server) deliver(ctx context.Context, c store.Callback) (string, int, error) {
	token, err := signJWT(map[string]string{"meeting_id": c.MeetingID, "record_id": c.RecordID}, s.secretByID(c.SecretID))
	if err != nil {
		return store.CallbackQueued, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, callbackTimeout)
	defer cancel()
	form := url.Values{"signed_parameters": {token}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, strings.NewReader(form.Encode()))
	if err != nil {
		return store.CallbackFailed, 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := s.nodeHTTP.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL may carry a token
		}
		return store.CallbackQueued, 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return store.CallbackDelivered, resp.StatusCode, nil
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return store.CallbackFailed, resp.StatusCode, nil
	}
	return store.CallbackQueued, resp.StatusCode, fmt.Errorf("HTTP %s", resp.Status)
}

// runCallbacks delivers due callbacks every interval until ctx ends.
func (s *Server) runCallbacks(ctx context.Context) {
	t := time.NewTicker(s.cfg.Recordings.CallbackInterval)
	defer t.Stop()
	for {
		if _, err := s.DeliverCallbacks(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("recording-ready callbacks", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
