package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
	"github.com/bbb-agent/bbb-agent/recordings"
)

const (
	// crashRecordings is how many recordings the crash test ships.
	crashRecordings = 20
	// crashFirst of them are published when the agent first starts; BBB
	// publishes the others one by one while the agent is killed and
	// restarted, so that most kills land while it ships.
	crashFirst = 5
	// crashFileSize is the size of each recording's two largest files.
	crashFileSize = "2097152"
)

// crashDest is where the crash test's agent ships to, as the test sees it.
type crashDest struct {
	args, env []string
	// complete says whether the recording is whole at the destination,
	// every file with the SHA-256 it was published with (want, by path
	// relative to the format directory).
	complete func(id string, want map[string]string) error
}

// TestAgentCrashWhileShipping (issue 11): the real bbb-agent ships ~20
// recordings bbb-sim published and is killed with SIGKILL 50 times at
// random moments, restarted each time with the same state directory. After
// every kill, a recording whose local copy is gone must be whole at the
// destination; at the end every recording is there exactly once (S3: every
// object written once; spool: one tar each), no local copy is left and the
// balancer's getRecordings lists each recording once.
func TestAgentCrashWhileShipping(t *testing.T) {
	t.Run("s3", func(t *testing.T) {
		srv := testenv.S3(t)
		srv.CreateBucket(t, recBucket)
		args, env := s3Agent(srv, "") // crashWhileShipping gives --recordings-dir
		d := crashDest{args: args[2:], env: env, complete: func(id string, want map[string]string) error {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			got, err := bucketSums(ctx, srv, id)
			if err != nil {
				return err
			}
			if _, ok := got["manifest.json"]; !ok {
				return fmt.Errorf("no manifest.json in the bucket (objects: %v)", keys(got))
			}
			delete(got, "manifest.json")
			return sameTree(got, want)
		}}
		ids, kills := crashWhileShipping(t, d)

		// Every object written once: the server's successful PUTs per key.
		puts := map[string]int{}
		total := 0
		for _, r := range srv.Requests(t, "") {
			if r.Status/100 == 2 && strings.HasPrefix(r.Key, recPrefix+"/") &&
				(r.Op == "PutObject" || r.Op == "CompleteMultipartUpload") {
				puts[r.Key]++
				total++
			}
		}
		objects := 0
		for _, id := range ids {
			pre := recPrefix + "/presentation/" + id + "/"
			n := 0
			for key := range puts {
				if strings.HasPrefix(key, pre) {
					n++
				}
			}
			if n == 0 {
				t.Errorf("%s: no object written", id)
			}
			objects += n
		}
		for key, n := range puts {
			if n != 1 {
				t.Errorf("%s written %d times, want once", key, n)
			}
		}
		t.Logf("s3 crash test: %d recordings, %d kill -9s, %d objects in the bucket, %d successful PUTs, %d HEADs",
			len(ids), kills, objects, total, len(srv.Requests(t, "HeadObject")))
	})

	t.Run("spool", func(t *testing.T) {
		spool := t.TempDir()
		d := crashDest{args: []string{"--recordings-storage", "spool:" + spool}, complete: func(id string, want map[string]string) error {
			path := filepath.Join(spool, id+".tar")
			if _, err := os.Stat(path); err != nil {
				return err
			}
			got := map[string]string{}
			for name, sum := range untar(t, path) {
				got[strings.TrimPrefix(name, "presentation/"+id+"/")] = sum
			}
			return sameTree(got, want)
		}}
		ids, kills := crashWhileShipping(t, d)
		entries, err := os.ReadDir(spool)
		if err != nil {
			t.Fatal(err)
		}
		var tars, others []string
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".tar") && !strings.HasPrefix(e.Name(), ".") {
				tars = append(tars, strings.TrimSuffix(e.Name(), ".tar"))
			} else {
				others = append(others, e.Name())
			}
		}
		if !slices.Equal(tars, ids) {
			t.Errorf("the spool has tars of %v, want one of each of %v", tars, ids)
		}
		if len(others) > 0 {
			t.Errorf("the spool has files other than the tars: %v", others)
		}
		t.Logf("spool crash test: %d recordings, %d kill -9s, %d tars in the spool, %d other files", len(ids), kills, len(tars), len(others))
	})
}

// sameTree compares the files at the destination with the published ones.
func sameTree(got, want map[string]string) error {
	var errs []error
	for rel, sum := range want {
		if got[rel] != sum {
			errs = append(errs, fmt.Errorf("%s: SHA-256 %q at the destination, %q published", rel, got[rel], sum))
		}
	}
	for rel := range got {
		if _, ok := want[rel]; !ok {
			errs = append(errs, fmt.Errorf("%s: at the destination, never published", rel))
		}
	}
	return errors.Join(errs...)
}

// crashWhileShipping runs the crash test against d and returns the
// recordings and how many times the agent was killed.
func crashWhileShipping(t *testing.T, d crashDest) ([]string, int) {
	kills := 50
	if testing.Short() {
		kills = 10
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 0))

	f := newFleet(t)
	recDir := t.TempDir()
	// Larger media files than the other tests': kills land inside writes.
	s := f.startRecordingSim("bbb1", recDir, "--recording-file-size", crashFileSize)
	ids := recordMeetings(t, s, "crash", crashRecordings)
	// The published trees, before the agent deletes them.
	trees := map[string]map[string]string{}
	formatDir := func(id string) string { return filepath.Join(recDir, "published", "presentation", id) }
	for _, id := range ids {
		trees[id] = publishedTree(t, formatDir(id))
	}
	// Hold them back, as BBB still processing them: no format directory,
	// no published marker.
	held := map[string]string{} // record ID → where its format directory waits
	marker := func(id string) string {
		return filepath.Join(recDir, "recording", "status", "published", id+"-presentation.done")
	}
	for _, id := range ids {
		held[id] = filepath.Join(t.TempDir(), id)
		if err := os.Rename(formatDir(id), held[id]); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(marker(id)); err != nil {
			t.Fatal(err)
		}
	}
	publish := func(id string) {
		if err := os.Rename(held[id], formatDir(id)); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(marker(id), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		delete(held, id)
	}
	localGone := func(id string) bool {
		if _, ok := held[id]; ok {
			return false
		}
		_, err := os.Stat(filepath.Join(formatDir(id), "metadata.xml"))
		return err != nil
	}

	o := agentOpts{nodeName: "bbb1", stateDir: t.TempDir(), socket: filepath.Join(shortDir(t), "admin.sock"),
		args: append([]string{"--recordings-dir", recDir, "--recordings-delete-after", "1ns"}, d.args...), env: d.env}
	// The node registers first (a node the balancer does not know yet
	// cannot have recordings indexed: they would wait for the retry
	// backoff); then the first few recordings are published.
	first := f.startAgent(s, o)
	testenv.Eventually(t, 4*interval+slack, "online and enabled", func() bool { return f.onlineAndEnabled(first.node) })
	first.Kill()
	for len(held) > len(ids)-crashFirst {
		publish(ids[len(ids)-len(held)])
	}
	every := max(kills*9/10/len(held), 1) // kills between two publications
	verified := map[string]bool{}         // whole at the destination already
	deadline := time.Now().Add(35 * time.Second)
	done, busy := 0, 0          // kills, and kills with published recordings still on the node
	var shipped, indexFails int // log lines of the killed agents
	for ; done < kills && time.Now().Before(deadline); done++ {
		if done > 0 && done%every == 0 && len(held) > 0 {
			publish(ids[len(ids)-len(held)])
		}
		a := f.startAgent(s, o)
		wait := time.Duration(50+rnd.IntN(351)) * time.Millisecond
		select {
		case <-a.Exited():
			t.Fatalf("the agent exited on its own after kill %d:\n%s", done, a.Output())
		case <-time.After(wait):
		}
		a.Kill()
		shipped += strings.Count(a.Output(), `msg="recordings: shipped"`)
		for _, line := range strings.Split(a.Output(), "\n") {
			if strings.Contains(line, `msg="recordings: telling the fleet failed`) {
				indexFails++
				t.Logf("kill %d: %s", done+1, line[strings.Index(line, "err="):])
			}
		}
		left := 0
		for _, id := range ids {
			if _, ok := held[id]; !ok && !localGone(id) {
				left++
			}
		}
		if left > 0 {
			busy++
		}
		for _, id := range ids {
			if verified[id] || !localGone(id) {
				continue
			}
			if err := d.complete(id, trees[id]); err != nil {
				t.Fatalf("after kill %d (%s after the start): %s deleted locally but not whole at the destination: %v\nagent output:\n%s",
					done+1, wait, id, err, a.Output())
			}
			verified[id] = true
		}
	}
	for len(held) > 0 {
		publish(ids[len(ids)-len(held)])
	}
	if done < kills {
		t.Errorf("only %d of %d kills before the test's time ran out", done, kills)
	}
	t.Logf("%d kills, %d of them with published recordings still on the node; %d of %d recordings shipped and deleted locally during them "+
		"(the killed agents logged %d shipped, %d failed index attempts)", done, busy, len(verified), len(ids), shipped, indexFails)

	// The last run finishes: every row indexed and its local copy deleted.
	a := f.startAgent(s, o)
	// A row whose index failed (the restarted agent not registered again
	// yet) waits for its backoff, 10 s or more: once the node is back,
	// the operator's retry makes it due now.
	testenv.Eventually(t, 4*interval+slack, "online and enabled", func() bool { return f.onlineAndEnabled(a.node) })
	retried := 0
	for _, r := range a.recordingRows(t) {
		if r.State == recordings.StateShipped && r.LastError != "" {
			if res := a.admin(t, "recordings", "retry", r.RecordID); res.Code != 0 {
				t.Fatalf("recordings retry %s: %s", r.RecordID, res)
			}
			retried++
		}
	}
	t.Logf("%d recordings shipped but not indexed at the end: retried", retried)
	testenv.Eventually(t, 20*time.Second, "every recording indexed and deleted locally", func() bool {
		rows := a.recordingRows(t)
		n := 0
		for _, r := range rows {
			if r.State == recordings.StateIndexed && !r.DeletedAt.IsZero() {
				n++
			}
		}
		return len(rows) == len(ids) && n == len(ids)
	})
	for _, id := range ids {
		if !localGone(id) {
			t.Errorf("%s: local copy still there after shipping with --recordings-delete-after", id)
		}
		if err := d.complete(id, trees[id]); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(recDir, "published", "presentation", ".*")); len(left) > 0 {
		t.Errorf("half-deleted local copies left: %v", left)
	}

	// The balancer lists every recording once.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	recs, err := f.front().GetRecordings(ctx, bbb.GetRecordingsRequest{RecordIDs: ids})
	if err != nil {
		t.Fatalf("getRecordings through the balancer: %v", err)
	}
	listed := map[string]int{}
	for _, r := range recs {
		listed[r.RecordID]++
		if !strings.HasPrefix(r.MeetingID, "crash-") {
			t.Errorf("getRecordings lists %s with meeting ID %q: the metadata did not reach the balancer", r.RecordID, r.MeetingID)
		}
	}
	for _, id := range ids {
		if listed[id] != 1 {
			t.Errorf("getRecordings lists %s %d times, want once", id, listed[id])
		}
	}
	return ids, done
}
