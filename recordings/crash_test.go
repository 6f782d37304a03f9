package recordings

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/bbb-agent/bbb-agent/internal/testenv"
	"github.com/bbb-agent/bbb-agent/recordings/storage"
)

// The crash test runs the shipper in a child process (this test binary
// again, with crashChildEnv set) and kills it with SIGKILL at random
// points of its work, many times over.
const (
	crashChildEnv = "RECORDINGS_CRASH_CHILD" // the child's settings, JSON
	crashDone     = "CRASH-CHILD-DONE"
)

type crashSettings struct {
	Root, State, Storage, Endpoint string
}

// stdoutMu keeps the child's event lines whole.
var stdoutMu sync.Mutex

func event(format string, args ...any) {
	stdoutMu.Lock()
	fmt.Fprintf(os.Stdout, format+"\n", args...)
	stdoutMu.Unlock()
}

// countingTransport prints one line per HTTP request: a kill point.
type countingTransport struct{ next http.RoundTripper }

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	event("http %s %s", r.Method, r.URL.Path)
	return c.next.RoundTrip(r)
}

// eventStorage prints a line before and after each Ship: more kill points.
type eventStorage struct{ storage.Storage }

func (e eventStorage) Ship(ctx context.Context, sh storage.Shipment) (storage.Receipt, error) {
	event("ship begin %s/%s", sh.RecordID, sh.Format)
	r, err := e.Storage.Ship(ctx, sh)
	event("ship end %s/%s written=%d err=%v", sh.RecordID, sh.Format, r.Written, err)
	return r, err
}

// crashChild ships everything under the recordings directory, deleting
// each local copy once confirmed, and exits when all are deleted.
func crashChild() {
	var cs crashSettings
	if err := json.Unmarshal([]byte(os.Getenv(crashChildEnv)), &cs); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx := context.Background()
	q, err := OpenQueue(ctx, cs.State)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	st, err := storage.Open(ctx, cs.Storage, storage.Options{S3Endpoint: cs.Endpoint,
		HTTPClient: &http.Client{Transport: countingTransport{http.DefaultTransport}}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(&lockedStdout{}, nil))
	s := NewShipper(Config{Dir: cs.Root, Queue: q, Storage: eventStorage{st}, Logger: log, Workers: 2,
		ScanInterval: -1, DeleteAfter: time.Nanosecond, MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	event("started")
	go s.Run(ctx)
	for {
		rows, err := q.List(ctx)
		if err == nil && len(rows) > 0 {
			done := 0
			for _, r := range rows {
				if (r.State == StateShipped || r.State == StateIndexed) && !r.DeletedAt.IsZero() {
					done++
				}
			}
			if done == len(rows) {
				event(crashDone)
				os.Exit(0)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type lockedStdout struct{}

func (lockedStdout) Write(p []byte) (int, error) {
	stdoutMu.Lock()
	defer stdoutMu.Unlock()
	return os.Stdout.Write(p)
}

// runChild starts the child and kills it after its killAfter-th line
// (never, when killAfter is 0). It reports whether the child finished.
func runChild(t *testing.T, cs crashSettings, killAfter int, within time.Duration) (finished bool, output string) {
	t.Helper()
	b, _ := json.Marshal(cs)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+string(b))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(within, func() { cmd.Process.Kill() })
	defer timer.Stop()
	var all strings.Builder
	sc := bufio.NewScanner(out)
	lines := 0
	for sc.Scan() {
		lines++
		all.WriteString(sc.Text() + "\n")
		if sc.Text() == crashDone {
			finished = true
		}
		if killAfter > 0 && lines == killAfter {
			cmd.Process.Kill()
		}
	}
	io.Copy(io.Discard, out)
	cmd.Wait()
	if stderr.Len() > 0 && !finished {
		all.WriteString("stderr: " + stderr.String())
	}
	return finished, all.String()
}

type crashFixture struct {
	root  string
	ids   []string
	trees map[string]map[string]string // record ID → file → sha256, as published
}

func newCrashFixture(t *testing.T, n int) crashFixture {
	f := crashFixture{root: t.TempDir(), trees: map[string]map[string]string{}}
	for i := range n {
		id := recordID(100 + i)
		dir := publish(t, f.root, id, "presentation", i)
		if i%4 == 0 { // a few larger files: kills land inside writes
			os.WriteFile(filepath.Join(dir, "video", "big.webm"), []byte(strings.Repeat("v", 3<<20)), 0o644)
		}
		f.ids = append(f.ids, id)
		f.trees[id] = sums(t, dir)
	}
	return f
}

// localGone reports whether the recording's local copy has been (or is
// being) deleted.
func (f crashFixture) localGone(id string) bool {
	_, err := os.Stat(filepath.Join(f.root, "published", "presentation", id, "metadata.xml"))
	return err != nil
}

// crashLoop kills the child up to kills times, checking after each kill
// that no local copy went before the destination had all of it, then
// lets it finish. It returns the kills done.
func crashLoop(t *testing.T, cs crashSettings, f crashFixture, kills int, atDestination func(id string) error) int {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	done := 0
	for done < kills && time.Now().Before(deadline) {
		finished, out := runChild(t, cs, 1+rand.IntN(6), time.Minute)
		if finished {
			break
		}
		done++
		for _, id := range f.ids {
			if f.localGone(id) {
				if err := atDestination(id); err != nil {
					t.Fatalf("after kill %d: %s deleted locally but not at the destination: %v\nchild output:\n%s", done, id, err, out)
				}
			}
		}
	}
	finished, out := runChild(t, cs, 0, 2*time.Minute)
	if !finished {
		t.Fatalf("the shipper did not finish after %d kills:\n%s", done, out)
	}
	for _, id := range f.ids {
		if !f.localGone(id) {
			t.Errorf("%s: local copy still there after shipping with DeleteAfter", id)
		}
		if err := atDestination(id); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
	return done
}

func TestCrashS3(t *testing.T) {
	srv := testenv.S3(t)
	srv.CreateBucket(t, "rec")
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	t.Setenv("AWS_REGION", srv.Region)
	f := newCrashFixture(t, 20)
	cs := crashSettings{Root: f.root, State: t.TempDir(), Storage: "s3://rec/fleet", Endpoint: srv.Endpoint}
	client := srv.Client()
	ctx := context.Background()
	atDestination := func(id string) error {
		pre := "fleet/presentation/" + id + "/"
		out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("rec"), Key: aws.String(pre + storage.ManifestName)})
		if err != nil {
			return fmt.Errorf("no manifest: %w", err)
		}
		var m storage.Manifest
		err = json.NewDecoder(out.Body).Decode(&m)
		out.Body.Close()
		if err != nil {
			return err
		}
		if len(m.Files) != len(f.trees[id]) {
			return fmt.Errorf("manifest lists %d files, want %d", len(m.Files), len(f.trees[id]))
		}
		for _, mf := range m.Files {
			o, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("rec"), Key: aws.String(pre + mf.Path)})
			if err != nil {
				return err
			}
			h := sha256.New()
			io.Copy(h, o.Body)
			o.Body.Close()
			if got := hex.EncodeToString(h.Sum(nil)); got != f.trees[id][mf.Path] {
				return fmt.Errorf("%s: sha256 %s in the bucket, %s published", mf.Path, got, f.trees[id][mf.Path])
			}
		}
		return nil
	}
	kills := crashLoop(t, cs, f, 50, atDestination)
	// Every object written once: count the server's successful PUTs per key.
	puts := map[string]int{}
	total := 0
	for _, r := range srv.Requests(t, "PutObject") {
		if r.Status == 200 && strings.HasPrefix(r.Key, "fleet/") {
			puts[r.Key]++
			total++
		}
	}
	want := 0
	for _, tree := range f.trees {
		want += len(tree) + 1 // the files and the manifest
	}
	maxPuts := 0
	for key, n := range puts {
		maxPuts = max(maxPuts, n)
		if n != 1 {
			t.Errorf("%s written %d times, want once", key, n)
		}
	}
	if len(puts) != want {
		t.Errorf("%d objects written, want %d", len(puts), want)
	}
	heads := len(srv.Requests(t, "HeadObject"))
	t.Logf("s3 crash test: %d recordings, %d kill -9s, %d objects in the bucket, %d successful PUTs (max %d per object), %d HEADs",
		len(f.ids), kills, len(puts), total, maxPuts, heads)
}

func TestCrashSpool(t *testing.T) {
	f := newCrashFixture(t, 20)
	spool := t.TempDir()
	cs := crashSettings{Root: f.root, State: t.TempDir(), Storage: "spool:" + spool}
	atDestination := func(id string) error {
		if _, err := os.Stat(filepath.Join(spool, id+".tar")); err != nil {
			return err
		}
		got := testenv.TarSums(t, filepath.Join(spool, id+".tar"))
		if len(got) != len(f.trees[id]) {
			return fmt.Errorf("tar has %d files, want %d", len(got), len(f.trees[id]))
		}
		for rel, sum := range f.trees[id] {
			if got["presentation/"+id+"/"+rel] != sum {
				return fmt.Errorf("tar %s: sha256 %q, want %q", rel, got["presentation/"+id+"/"+rel], sum)
			}
		}
		return nil
	}
	kills := crashLoop(t, cs, f, 50, atDestination)
	entries, _ := os.ReadDir(spool)
	tars, others := 0, []string{}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tar") && !strings.HasPrefix(e.Name(), ".") {
			tars++
		} else {
			others = append(others, e.Name())
		}
	}
	if tars != len(f.ids) {
		t.Errorf("%d tars in the spool, want one per recording (%d)", tars, len(f.ids))
	}
	t.Logf("spool crash test: %d recordings, %d kill -9s, %d tars in the spool, %d other files %v", len(f.ids), kills, tars, len(others), others)
}
