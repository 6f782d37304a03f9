package balancer

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/agentapi"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/recordings"
)

// verifyJWT checks an HS256 token with secret and returns its claims.
func verifyJWT(t *testing.T, token, secret string) (map[string]string, bool) {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q is not a JWT", token)
	}
	enc := base64.RawURLEncoding
	var header map[string]string
	if h, err := enc.DecodeString(parts[0]); err != nil || json.Unmarshal(h, &header) != nil || header["alg"] != "HS256" {
		t.Fatalf("JWT header %q", parts[0])
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(parts[0] + "." + parts[1]))
	sig, err := enc.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]string
	if p, err := enc.DecodeString(parts[1]); err != nil || json.Unmarshal(p, &claims) != nil {
		t.Fatalf("JWT payload %q", parts[1])
	}
	return claims, hmac.Equal(sig, mac.Sum(nil))
}

func TestRecordingReadyCallback(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dsn string) {
		re := newRecEnv(t, dsn)
		re.report(re.nodes[0], fleet.Load{BBBHealthy: true})
		var (
			mu     sync.Mutex
			tokens []string
		)
		receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			tokens = append(tokens, r.PostFormValue("signed_parameters"))
			if len(tokens) <= 2 {
				w.WriteHeader(http.StatusInternalServerError)
			}
		}))
		t.Cleanup(receiver.Close)
		received := func() []string {
			mu.Lock()
			defer mu.Unlock()
			return append([]string(nil), tokens...)
		}

		// The front-end signs with the balancer's second secret.
		front, err := bbb.NewClient(re.http.URL, lbSecret2)
		if err != nil {
			t.Fatal(err)
		}
		ctx := ctxT(t)
		var cr bbb.CreateResponse
		err = front.Get(ctx, bbb.CallCreate, url.Values{"meetingID": {"cb"}, "name": {"Callback"}, "record": {"true"},
			"meta_bbb-recording-ready-url": {receiver.URL + "/ready?course=1"}, "meta_origin": {"Moodle"}}, &cr)
		if err != nil {
			t.Fatal(err)
		}
		if err := re.simClient.Get(ctx, bbb.CallJoin, url.Values{"meetingID": {"cb"}, "fullName": {"T"}, "role": {"moderator"}, "redirect": {"false"}}, nil); err != nil {
			t.Fatal(err)
		}
		re.simClock.Advance(10 * time.Minute)
		if err := re.simClient.Get(ctx, bbb.CallEnd, url.Values{"meetingID": {"cb"}}, nil); err != nil {
			t.Fatal(err)
		}
		md, err := recordings.ReadMetadata(re.simDir + "/published/presentation/" + cr.InternalMeetingID)
		if err != nil {
			t.Fatal(err)
		}
		if _, leaked := md.Meta["bbb-recording-ready-url"]; leaked || md.Meta["origin"] != "Moodle" {
			t.Fatalf("the node saw metadata %v", md.Meta)
		}
		if n, err := re.srv.DeliverCallbacks(ctx); n != 0 || err != nil || len(received()) != 0 {
			t.Fatalf("a callback before the recording: %d %v", n, err)
		}
		for range 2 { // a re-ship queues nothing more
			re.agentCall(agentapi.PathRecording, agentapi.RecordingRequest{Node: "bbb1", Recording: md}, nil, http.StatusNoContent)
		}

		for attempt := 1; attempt <= 3; attempt++ {
			n, err := re.srv.DeliverCallbacks(ctx)
			if err != nil || len(received()) != attempt || (n == 1) != (attempt == 3) {
				t.Fatalf("attempt %d: delivered %d, %v; receiver saw %d", attempt, n, err, len(received()))
			}
			// Not again before the backoff has passed.
			if n, _ := re.srv.DeliverCallbacks(ctx); n != 0 || len(received()) != attempt {
				t.Fatalf("attempt %d repeated at once", attempt)
			}
			re.clock.Advance(time.Duration(attempt) * time.Minute)
		}
		re.clock.Advance(24 * time.Hour)
		if _, err := re.srv.DeliverCallbacks(ctx); err != nil || len(received()) != 3 {
			t.Fatalf("delivered again: %d requests, %v", len(received()), err)
		}
		for _, tok := range received() {
			claims, ok := verifyJWT(t, tok, lbSecret2)
			if !ok || claims["meeting_id"] != "cb" || claims["record_id"] != cr.InternalMeetingID {
				t.Errorf("token claims %v, signed with the front-end's secret: %v", claims, ok)
			}
			if _, ok := verifyJWT(t, tok, lbSecret); ok {
				t.Error("token signed with the balancer's first secret, not the front-end's")
			}
		}
	})
}
