package main

import (
	"context"
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

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/bbb/sim"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// frontSecret is the balancer's second BBB secret, the one the front-end
// of TestRecordingsThroughBalancer signs with.
const frontSecret = "front-end-secret-e2e-71c0a9d4"

// TestRecordingsThroughBalancer (issue 12): a front-end creates a recorded
// meeting through bbb-balancer with a recording-ready URL; it runs and ends
// on bbb-sim; bbb-agent ships the recording to a real S3 server and indexes
// it; bbb-balancer, on the same bucket, lists it with BBB's XML shape,
// plays it, unpublishes and deletes it (objects gone), and delivers the
// callback once, signed with the front-end's own secret, after two answers
// of 500.
func TestRecordingsThroughBalancer(t *testing.T) {
	srv := testenv.S3(t)
	srv.CreateBucket(t, recBucket)
	_, awsEnv := s3Agent(srv, "")
	f := &fleetEnv{t: t, bin: testenv.BuildCommands(t), dataDir: t.TempDir()}
	f.lb = testenv.StartBalancer(t, testenv.BalancerOpts{Bin: f.bin.Balancer, Secret: lbSecret, AgentToken: agentToken, AdminToken: adminToken,
		DataDir: f.dataDir, Env: awsEnv,
		Args: []string{"--secret", frontSecret, "--recordings-storage", "s3://" + recBucket + "/" + recPrefix, "--recordings-s3-endpoint", srv.Endpoint,
			"--recordings-callback-interval", "100ms", "--recordings-callback-backoff", "100ms"}})
	f.url = f.lb.Ready
	recDir := t.TempDir()
	s := f.startRecordingSim("bbb1", recDir)
	args, env := s3Agent(srv, recDir)
	a := f.startAgent(s, agentOpts{nodeName: "bbb1", args: args, env: env})
	testenv.Eventually(t, 4*interval+slack, "online and enabled", func() bool { return f.onlineAndEnabled(a.node) })

	// The front-end's callback receiver: 500 twice, then 200.
	var (
		mu    sync.Mutex
		posts []url.Values
	)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			t.Errorf("callback body: %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		posts = append(posts, r.PostForm)
		if len(posts) <= 2 {
			http.Error(w, "not now", http.StatusInternalServerError)
		}
	}))
	t.Cleanup(receiver.Close)
	postCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(posts)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	front, err := bbb.NewClient(f.url, frontSecret)
	if err != nil {
		t.Fatal(err)
	}
	const meetingID = "lb-recorded"
	if err := front.Get(ctx, bbb.CallCreate, url.Values{"meetingID": {meetingID}, "name": {"Recorded through the balancer"}, "record": {"true"},
		"meta_course": {"e2e"}, "meta_bbb-recording-ready-url": {receiver.URL + "/ready"}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Control.AddAttendees(ctx, meetingID, sim.AttendeeSpec{Count: 2, Voice: true}); err != nil {
		t.Fatal(err)
	}
	if err := front.Get(ctx, bbb.CallEnd, url.Values{"meetingID": {meetingID}}, nil); err != nil {
		t.Fatal(err)
	}
	var id string
	testenv.Eventually(t, 10*time.Second, "the simulator publishes the recording", func() bool {
		for _, r := range s.State(t).Recordings {
			if r.MeetingID == meetingID && r.State == "published" {
				id = r.RecordID
			}
		}
		return id != ""
	})
	if r := a.admin(t, "recordings", "notify", "--record-id", id, "--format", "presentation"); r.Code != 0 {
		t.Fatalf("recordings notify: %s", r)
	}
	f.indexed(t, []string{id})

	// BBB's XML shape; the node never saw the recording-ready URL.
	raw := testenv.GetBody(t, front.URL(bbb.CallGetRecordings, url.Values{"meetingID": {meetingID}}))
	for _, want := range []string{"<returncode>SUCCESS</returncode>", "<recordings>", "<recordID>" + id + "</recordID>",
		"<meetingID>" + meetingID + "</meetingID>", "<published>true</published>", "<state>published</state>", "<course>e2e</course>",
		"<type>presentation</type>", f.url + "/playback/presentation/2.3/" + id + "</url>"} {
		if !strings.Contains(raw, want) {
			t.Errorf("getRecordings lacks %s:\n%s", want, raw)
		}
	}
	if strings.Contains(raw, "recording-ready") {
		t.Errorf("the recording-ready URL reached the node's metadata:\n%s", raw)
	}

	// The callback: two 500s, then one delivery, signed with frontSecret.
	testenv.Eventually(t, 20*time.Second, "the callback is delivered on the third attempt", func() bool { return postCount() >= 3 })
	mu.Lock()
	for i, p := range posts {
		claims, ok := checkJWT(t, p.Get("signed_parameters"), frontSecret)
		if !ok || claims["meeting_id"] != meetingID || claims["record_id"] != id {
			t.Errorf("callback %d: claims %v, signed with the front-end's secret: %t", i+1, claims, ok)
		}
		if _, ok := checkJWT(t, p.Get("signed_parameters"), lbSecret); ok {
			t.Errorf("callback %d is signed with the balancer's first secret, not the front-end's", i+1)
		}
	}
	mu.Unlock()

	// Playback; publish false closes it.
	play := f.url + "/presentation/" + id + "/metadata.xml"
	if code := testenv.GetStatus(t, play); code != http.StatusOK {
		t.Errorf("playback of a published recording: HTTP %d", code)
	}
	if err := front.Get(ctx, bbb.CallPublishRecordings, url.Values{"recordID": {id}, "publish": {"false"}}, nil); err != nil {
		t.Fatal(err)
	}
	if code := testenv.GetStatus(t, play); code != http.StatusNotFound {
		t.Errorf("playback of an unpublished recording: HTTP %d, want 404", code)
	}
	if raw := testenv.GetBody(t, front.URL(bbb.CallGetRecordings, url.Values{"recordID": {id}})); !strings.Contains(raw, "<state>unpublished</state>") || !strings.Contains(raw, "<published>false</published>") {
		t.Errorf("after publish=false:\n%s", raw)
	}

	// Delete: every object gone, listed with state=deleted.
	objects := func() []string {
		out, err := srv.Client().ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(recBucket), Prefix: aws.String(recPrefix + "/")})
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, o := range out.Contents {
			if strings.Contains(aws.ToString(o.Key), id) {
				keys = append(keys, aws.ToString(o.Key))
			}
		}
		return keys
	}
	if len(objects()) == 0 {
		t.Fatal("no objects of the recording in the bucket before the delete")
	}
	if err := front.Get(ctx, bbb.CallDeleteRecordings, url.Values{"recordID": {id}}, nil); err != nil {
		t.Fatal(err)
	}
	if keys := objects(); len(keys) != 0 {
		t.Errorf("objects left after delete: %v", keys)
	}
	if raw := testenv.GetBody(t, front.URL(bbb.CallGetRecordings, url.Values{"state": {"deleted"}})); !strings.Contains(raw, "<recordID>"+id+"</recordID>") || !strings.Contains(raw, "<state>deleted</state>") {
		t.Errorf("state=deleted:\n%s", raw)
	}
	// Still one delivery: the 200 was the last attempt.
	if n := postCount(); n != 3 {
		t.Errorf("the callback was posted %d times, want 3 (two 500s, one 200)", n)
	}
}

// checkJWT verifies an HS256 token with secret and returns its claims.
func checkJWT(t *testing.T, token, secret string) (map[string]string, bool) {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("%q is not a JWT", token)
	}
	header, _ := base64.RawURLEncoding.DecodeString(parts[0])
	var h map[string]string
	if err := json.Unmarshal(header, &h); err != nil || h["alg"] != "HS256" {
		t.Fatalf("JWT header %s: %v", header, err)
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(parts[0] + "." + parts[1]))
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims map[string]string
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatalf("JWT claims %s: %v", payload, err)
	}
	return claims, hmac.Equal(sig, mac.Sum(nil))
}
