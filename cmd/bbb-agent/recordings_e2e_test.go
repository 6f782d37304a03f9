package main

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/bbb-agent/bbb-agent/agent"
	"github.com/bbb-agent/bbb-agent/agent/ec2"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/bbb/sim"
	"github.com/bbb-agent/bbb-agent/bbb/sim/simtest"
	"github.com/bbb-agent/bbb-agent/internal/emulate/imds"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
	"github.com/bbb-agent/bbb-agent/recordings"
)

// The recordings end-to-end tests: bbb-sim writes recordings as BBB does
// (--recordings-dir), bbb-agent ships them to a real S3 server (versitygw)
// or a spool directory and tells bbb-balancer, whose getRecordings lists
// them.

const (
	recBucket = "recordings"
	recPrefix = "fleet"
	// recFileSize keeps the simulator's media files small.
	recFileSize = "65536"
)

// startRecordingSim is a simulator that writes recordings into dir, with
// further flags (a later --recording-file-size replaces recFileSize).
func (f *fleetEnv) startRecordingSim(name, dir string, args ...string) simNode {
	f.t.Helper()
	return simNode{simtest.Start(f.t, testenv.SimOpts{Name: "bbb-sim " + name, Bin: f.bin.Sim, Secret: "sim-secret-" + name + "-e2e-3b9f0d",
		Args: append([]string{"--recordings-dir", dir, "--recording-file-size", recFileSize}, args...)})}
}

// s3Agent are the flags and environment of an agent that ships to srv.
func s3Agent(srv testenv.S3Server, recDir string) ([]string, []string) {
	return []string{"--recordings-dir", recDir, "--recordings-storage", "s3://" + recBucket + "/" + recPrefix,
			"--recordings-s3-endpoint", srv.Endpoint},
		[]string{"AWS_ACCESS_KEY_ID=" + srv.AccessKey, "AWS_SECRET_ACCESS_KEY=" + srv.SecretKey, "AWS_REGION=" + srv.Region,
			"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null"}
}

// recordMeetings creates n meetings with record=true directly on the
// simulator, joins attendees and ends them; it returns their record IDs
// once the simulator has published them.
func recordMeetings(t *testing.T, s simNode, prefix string, n int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var ids []string
	for i := range n {
		id := fmt.Sprintf("%s-%d", prefix, i)
		if _, err := s.Client.Create(ctx, bbb.CreateRequest{MeetingID: id, Name: "Meeting " + id, Record: true}); err != nil {
			t.Fatalf("create %s: %v", id, err)
		}
		if _, err := s.Control.AddAttendees(ctx, id, sim.AttendeeSpec{Count: 2, Voice: true}); err != nil {
			t.Fatalf("attendees of %s: %v", id, err)
		}
		ids = append(ids, id)
	}
	for _, id := range ids {
		if err := s.Control.EndMeeting(ctx, id, true); err != nil {
			t.Fatalf("end %s: %v", id, err)
		}
	}
	var recs []string
	testenv.Eventually(t, 10*time.Second, fmt.Sprintf("the simulator published %d recordings", n), func() bool {
		recs = recs[:0]
		for _, r := range s.State(t).Recordings {
			if strings.HasPrefix(r.MeetingID, prefix+"-") && r.State == "published" {
				recs = append(recs, r.RecordID)
			}
		}
		return len(recs) == n
	})
	slices.Sort(recs)
	return recs
}

// recordingRows is `bbb-agent recordings list --json`.
func (a *agentProc) recordingRows(t *testing.T) []recordings.Row {
	t.Helper()
	r := a.admin(t, "recordings", "list", "--json")
	if r.Code != 0 {
		t.Fatalf("recordings list --json: %s", r)
	}
	var rows []recordings.Row
	if err := json.Unmarshal([]byte(r.Stdout), &rows); err != nil {
		t.Fatalf("recordings list --json: %v\n%s", err, r.Stdout)
	}
	return rows
}

// waitRecordingState waits for every one of ids to be in state in the
// agent's queue.
func (a *agentProc) waitRecordingState(t *testing.T, ids []string, state string, within time.Duration) []recordings.Row {
	t.Helper()
	var rows []recordings.Row
	testenv.Eventually(t, within, fmt.Sprintf("%d recordings %s", len(ids), state), func() bool {
		rows = a.recordingRows(t)
		n := 0
		for _, r := range rows {
			if slices.Contains(ids, r.RecordID) && r.State == state {
				n++
			}
		}
		return n == len(ids)
	})
	return rows
}

// publishedTree is the files of a published format with their SHA-256,
// by path relative to the format directory.
func publishedTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		sum := sha256.Sum256(data)
		out[filepath.ToSlash(rel)] = hex.EncodeToString(sum[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 || out["metadata.xml"] == "" {
		t.Fatalf("%s: no published format with a metadata.xml", dir)
	}
	return out
}

// checkBucket checks that every file of the recording's presentation
// format is in the bucket with the same SHA-256, and that the manifest was
// written after all of them.
func checkBucket(t *testing.T, srv testenv.S3Server, recDir, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	want := publishedTree(t, filepath.Join(recDir, "published", "presentation", id))
	pre := recPrefix + "/presentation/" + id + "/"
	got, err := bucketSums(ctx, srv, id)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got["manifest.json"]; !ok {
		t.Fatalf("%s: no manifest.json in the bucket (objects: %v)", id, keys(got))
	}
	delete(got, "manifest.json")
	for rel, sum := range want {
		if got[rel] != sum {
			t.Errorf("%s/%s: SHA-256 in the bucket %q, on the node %q", id, rel, got[rel], sum)
		}
	}
	for rel := range got {
		if _, ok := want[rel]; !ok {
			t.Errorf("%s/%s: in the bucket, not published on the node", id, rel)
		}
	}
	// The manifest is the commit marker: written after every file.
	reqs := srv.Requests(t, "")
	manifest, last := -1, -1
	for i, r := range reqs {
		if !strings.Contains(r.Key, pre) || r.Status/100 != 2 {
			continue
		}
		switch {
		case r.Op == "PutObject" && strings.HasSuffix(r.Key, pre+"manifest.json"):
			if manifest < 0 {
				manifest = i
			}
		case r.Op == "PutObject" || r.Op == "CompleteMultipartUpload" || r.Op == "UploadPart":
			last = i
		}
	}
	if manifest < 0 || last < 0 || manifest < last {
		t.Errorf("%s: the manifest's PutObject (request %d) is not after every file's (last %d)", id, manifest, last)
	}
}

// bucketSums is every object under the recording's presentation prefix,
// with its SHA-256, by key relative to that prefix.
func bucketSums(ctx context.Context, srv testenv.S3Server, id string) (map[string]string, error) {
	pre := recPrefix + "/presentation/" + id + "/"
	cl := srv.Client()
	got := map[string]string{}
	var token *string
	for {
		out, err := cl.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: new(recBucket), Prefix: new(pre), ContinuationToken: token})
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", pre, err)
		}
		for _, o := range out.Contents {
			obj, err := cl.GetObject(ctx, &s3.GetObjectInput{Bucket: new(recBucket), Key: o.Key})
			if err != nil {
				return nil, fmt.Errorf("get %s: %w", *o.Key, err)
			}
			h := sha256.New()
			_, err = io.Copy(h, obj.Body)
			obj.Body.Close()
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", *o.Key, err)
			}
			got[strings.TrimPrefix(*o.Key, pre)] = hex.EncodeToString(h.Sum(nil))
		}
		if out.NextContinuationToken == nil {
			return got, nil
		}
		token = out.NextContinuationToken
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// indexed waits for the balancer's getRecordings to list ids.
func (f *fleetEnv) indexed(t *testing.T, ids []string) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, "the balancer's getRecordings lists the recordings", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		recs, err := f.front().GetRecordings(ctx, bbb.GetRecordingsRequest{RecordIDs: ids})
		if err != nil && !errors.Is(err, bbb.ErrNotFound) {
			t.Logf("getRecordings: %v", err)
			return false
		}
		return len(recs) == len(ids)
	})
}

// TestRecordingsShipToS3 (issue 11): meetings with record=true end on
// bbb-sim; the post_publish hook's `bbb-agent recordings notify` queues
// them and the agent ships every file to the real S3 server with the
// SHA-256 the node has, the manifest last, and tells bbb-balancer, whose
// getRecordings lists them. A recording the hook missed is found by
// `recordings backfill`.
func TestRecordingsShipToS3(t *testing.T) {
	f := newFleet(t)
	srv := testenv.S3(t)
	srv.CreateBucket(t, recBucket)
	recDir := t.TempDir()
	s := f.startRecordingSim("bbb1", recDir)
	args, env := s3Agent(srv, recDir)
	a := f.startAgent(s, agentOpts{nodeName: "bbb1", args: args, env: env})
	testenv.Eventually(t, 4*interval+slack, "online and enabled", func() bool { return f.onlineAndEnabled(a.node) })

	ids := recordMeetings(t, s, "s3", 3)
	for _, id := range ids[:2] {
		if r := a.admin(t, "recordings", "notify", "--record-id", id, "--format", "presentation"); r.Code != 0 || r.Stderr != "" {
			t.Fatalf("recordings notify %s: %s", id, r)
		}
	}
	a.waitRecordingState(t, ids[:2], recordings.StateIndexed, 20*time.Second)
	if r := a.admin(t, "recordings", "backfill"); r.Code != 0 || !strings.Contains(r.Stdout, "1 format queued") {
		t.Fatalf("recordings backfill: %s", r)
	}
	rows := a.waitRecordingState(t, ids, recordings.StateIndexed, 20*time.Second)
	for _, r := range rows {
		if r.Size <= 0 || r.SHA256 == "" || r.ShippedAt.IsZero() {
			t.Errorf("row %+v: no size, checksum or time shipped", r)
		}
	}
	for _, id := range ids {
		checkBucket(t, srv, recDir, id)
	}
	f.indexed(t, ids)

	// The operator's views: status, list, the report's backlog.
	testenv.Eventually(t, 4*interval+slack, "status shows the recordings shipped", func() bool {
		st, _, ok := a.status(t)
		return ok && st.Recordings != nil && st.Recordings.Shipped == 3 && st.Recordings.Backlog.Pending() == 0
	})
	if r := a.admin(t, "status"); !strings.Contains(r.Stdout, "to s3://"+recBucket+"/"+recPrefix+": 0 processing, 0 queued") {
		t.Errorf("status does not show the recordings backlog:\n%s", r)
	}
	if r := a.admin(t, "recordings", "list"); r.Code != 0 || strings.Count(r.Stdout, "indexed") != 3 {
		t.Errorf("recordings list:\n%s", r)
	}
	// The hook never fails BBB's publish: an unknown recording is a warning.
	if r := a.admin(t, "recordings", "notify", "--record-id", "no-such-recording"); r.Code != 0 || !strings.Contains(r.Stderr, "periodic scan") {
		t.Errorf("notify of an unknown recording: %s", r)
	}
	if r := a.admin(t, "recordings", "retry", "no-such-recording"); r.Code == 0 {
		t.Errorf("retry of an unknown recording succeeded: %s", r)
	}
}

// TestRecordingsSpool (issue 11): with spool: every recording is one
// <record_id>.tar with Scalelite's layout; unpacked, it is the published
// tree byte for byte.
func TestRecordingsSpool(t *testing.T) {
	f := newFleet(t)
	recDir, spool := t.TempDir(), t.TempDir()
	s := f.startRecordingSim("bbb1", recDir)
	a := f.startAgent(s, agentOpts{nodeName: "bbb1", args: []string{"--recordings-dir", recDir, "--recordings-storage", "spool:" + spool}})
	testenv.Eventually(t, 4*interval+slack, "online and enabled", func() bool { return f.onlineAndEnabled(a.node) })
	ids := recordMeetings(t, s, "spool", 2)
	for _, id := range ids {
		if r := a.admin(t, "recordings", "ship", id); r.Code != 0 {
			t.Fatalf("recordings ship %s: %s", id, r)
		}
	}
	a.waitRecordingState(t, ids, recordings.StateIndexed, 20*time.Second)
	entries, err := os.ReadDir(spool)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := []string{ids[0] + ".tar", ids[1] + ".tar"}
	if !slices.Equal(names, want) {
		t.Fatalf("spool holds %v, want %v", names, want)
	}
	for _, id := range ids {
		tree := publishedTree(t, filepath.Join(recDir, "published", "presentation", id))
		got := untar(t, filepath.Join(spool, id+".tar"))
		wantTar := map[string]string{}
		for rel, sum := range tree {
			wantTar["presentation/"+id+"/"+rel] = sum
		}
		for name, sum := range wantTar {
			if got[name] != sum {
				t.Errorf("%s.tar: %s has SHA-256 %q, the published file %q", id, name, got[name], sum)
			}
		}
		for name := range got {
			if _, ok := wantTar[name]; !ok {
				t.Errorf("%s.tar: %s is not a published file", id, name)
			}
		}
	}
	f.indexed(t, ids)
}

// untar reads a tar's regular files with their SHA-256.
func untar(t *testing.T, path string) map[string]string {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	out := map[string]string{}
	tr := tar.NewReader(fh)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		sum := sha256.New()
		if _, err := io.Copy(sum, tr); err != nil {
			t.Fatal(err)
		}
		out[h.Name] = hex.EncodeToString(sum.Sum(nil))
	}
}

// TestScaleInWaitsForRecordings (issue 11): an Auto Scaling scale-in
// (emulated instance metadata) while BBB is still processing a recording:
// the drain waits for it, and once BBB publishes it the agent ships it,
// has it indexed and only then deregisters and exits.
func TestScaleInWaitsForRecordings(t *testing.T) {
	f := newFleet(t)
	srv := testenv.S3(t)
	srv.CreateBucket(t, recBucket)
	recDir := t.TempDir()
	s := f.startRecordingSim("bbb1", recDir)
	ids := recordMeetings(t, s, "drain", 1)
	id := ids[0]

	// Make it a recording BBB is still processing: its published format
	// is not there yet, nor its published marker (the recorded and
	// archived markers are).
	held := filepath.Join(t.TempDir(), id)
	formatDir := filepath.Join(recDir, "published", "presentation", id)
	marker := filepath.Join(recDir, "recording", "status", "published", id+"-presentation.done")
	if err := os.Rename(formatDir, held); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(marker); err != nil {
		t.Fatal(err)
	}

	md := imds.New(time.Now)
	md.Set("instance-id", "i-0123456789abcdef0")
	md.Set("placement/region", "eu-central-1")
	md.Set("autoscaling/target-lifecycle-state", ec2.StateInService)
	mdSrv := httptest.NewServer(md)
	t.Cleanup(mdSrv.Close)
	args, env := s3Agent(srv, recDir)
	args = append(args, "--ec2", "--imds-endpoint", mdSrv.URL)
	a := f.startAgent(s, agentOpts{nodeName: "bbb1", args: args, env: env})
	testenv.Eventually(t, 4*interval+slack, "online and enabled", func() bool { return f.onlineAndEnabled(a.node) })

	md.Set("autoscaling/target-lifecycle-state", ec2.StateTerminated)
	a.waitState(t, agent.Draining, 4*interval+slack)
	// No meetings, one recording processing: the drain holds for many
	// report intervals.
	var st agent.Status
	testenv.Eventually(t, 10*interval+slack, "status shows 1 recording processing during the drain", func() bool {
		var ok bool
		st, _, ok = a.status(t)
		return ok && st.Recordings != nil && st.Recordings.Backlog.Processing == 1 && st.Load.Meetings == 0 &&
			st.Drain != nil && st.Drain.Phase == "wait"
	})
	for range 3 {
		prev := s.requests(t, "getMeetings")
		testenv.Eventually(t, 4*interval+slack, "two more report cycles", func() bool { return s.requests(t, "getMeetings") >= prev+2 })
		if !a.running() {
			t.Fatalf("the agent left while a recording was processing:\n%s", a.Output())
		}
		if _, ok := f.server(a.node); !ok {
			t.Fatal("deregistered while a recording was processing")
		}
	}
	if st.Load.RecordingBacklog != 1 {
		t.Errorf("the load report's recording backlog is %d, want 1", st.Load.RecordingBacklog)
	}

	// BBB publishes it: the format directory, then the marker.
	if err := os.Rename(held, formatDir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.Exited():
	case <-time.After(20*time.Second + slack):
		t.Fatalf("the agent did not finish the drain after the recording was published:\n%s", a.Output())
	}
	checkBucket(t, srv, recDir, id)
	// Indexed before the deregistration: the balancer takes a recording
	// only from a registered node's credential.
	f.indexed(t, ids)
	if _, ok := f.server(a.node); ok {
		t.Error("still registered after the scale-in drain")
	}
	out := a.Output()
	shipped, dereg := strings.Index(out, `msg="recordings: shipped"`), strings.Index(out, "msg=deregistered")
	if shipped < 0 || dereg < 0 || shipped > dereg {
		t.Errorf("the agent's log does not show the recording shipped before the deregistration:\n%s", out)
	}
}

// TestCheckRecordingsStorage: `bbb-agent check` writes and deletes a probe
// in the recordings storage and says when it cannot.
func TestCheckRecordingsStorage(t *testing.T) {
	f := newFleet(t)
	s := f.startSim("check")
	srv := testenv.S3(t)
	srv.CreateBucket(t, recBucket)
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, env []string, args ...string) testenv.Result {
		t.Helper()
		return testenv.Run(t, env, f.bin.Agent, append([]string{"check", "--balancer-url", f.url, "--agent-token", agentToken,
			"--bbb-url", s.URL, "--bbb-secret", s.Secret, "--node-name", "bbb-check", "--state-dir", t.TempDir(), "--logind=false"}, args...)...)
	}
	_, env := s3Agent(srv, "")
	for _, tt := range []struct {
		name string
		args []string
		want string
		code int
	}{
		{"none", nil, "! recordings storage: none", 0},
		{"spool", []string{"--recordings-storage", "spool:" + t.TempDir()}, "✔ recordings storage: spool:", 0},
		{"s3", []string{"--recordings-storage", "s3://" + recBucket + "/" + recPrefix, "--recordings-s3-endpoint", srv.Endpoint}, "✔ recordings storage: s3://", 0},
		{"s3 without the bucket", []string{"--recordings-storage", "s3://no-such-bucket/x", "--recordings-s3-endpoint", srv.Endpoint}, "✘ recordings storage: s3://no-such-bucket", 1},
		{"spool not a directory", []string{"--recordings-storage", "spool:" + notADir}, "✘ recordings storage: spool:", 1},
		{"storage URL wrong", []string{"--recordings-storage", "ftp://x"}, "✘ configuration: --recordings-storage", 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := check(t, env, tt.args...)
			if r.Code != tt.code || !strings.Contains("\n"+r.Stdout, "\n"+tt.want) {
				t.Errorf("check %v: want exit %d and a line %q: %s", tt.args, tt.code, tt.want, r)
			}
		})
	}
}
