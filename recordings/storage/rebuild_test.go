package storage

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// rebuild changes a format directory as `bbb-record --rebuild` can: one
// file removed, one added, one changed.
func rebuild(t *testing.T, dir, remove, add, change string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, filepath.FromSlash(remove))); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{add, change} {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("rebuilt "+name+" "+dir), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// bucketSums is every object under pre (which ends in "/"), by the rest of
// its key, with its SHA-256 as stored.
func bucketSums(t *testing.T, srv testenv.S3Server, bucket, pre string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := map[string]string{}
	pages := s3.NewListObjectsV2Paginator(srv.Client(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(pre)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			t.Fatalf("list %s: %v", pre, err)
		}
		for _, o := range page.Contents {
			key := aws.ToString(o.Key)
			got[strings.TrimPrefix(key, pre)] = srv.ObjectSum(t, bucket, key)
		}
	}
	return got
}

// sameSums reports how got differs from want, or "".
func sameSums(got, want map[string]string) string {
	var diff []string
	for k, v := range want {
		switch g, ok := got[k]; {
		case !ok:
			diff = append(diff, "missing "+k)
		case g != v:
			diff = append(diff, "stale "+k)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			diff = append(diff, "extra "+k)
		}
	}
	return strings.Join(diff, ", ")
}

// failLists fails S3 listings while on: a failure between the manifest
// write and the cleanup of an earlier build's objects.
type failLists struct {
	on   atomic.Bool
	next http.Client
}

func (f *failLists) Do(r *http.Request) (*http.Response, error) {
	if f.on.Load() && r.Method == http.MethodGet && r.URL.Query().Has("list-type") {
		return nil, errors.New("injected: the connection broke before the listing")
	}
	return f.next.Do(r)
}

func TestS3RebuildLeavesExactlyTheNewBuild(t *testing.T) {
	srv := testenv.S3(t)
	srv.CreateBucket(t, "rec")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	inject := &failLists{}
	client := s3.New(s3.Options{
		Region: srv.Region, BaseEndpoint: aws.String(srv.Endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(srv.AccessKey, srv.SecretKey, ""),
		HTTPClient:  inject, Retryer: aws.NopRetryer{},
	})
	st := NewS3Client(client, "rec", "fleet/a")
	root := t.TempDir()
	id := "0123456789abcdef0123456789abcdef01234567-1"
	neighbour := id + "0" // abc-1 vs abc-10: "fleet/a/presentation/abc-1" is a prefix of its keys
	src := formatDir(t, root, "presentation", id, 0)
	other := formatDir(t, root, "presentation", neighbour, 0)
	video := formatDir(t, root, "video", id, 0)
	ship := func(it Item) (Receipt, error) {
		t.Helper()
		return st.Ship(ctx, Shipment{Item: it})
	}
	it := Item{RecordID: id, Format: "presentation", Dir: src}
	for _, o := range []Item{it, {neighbour, "presentation", other}, {id, "video", video}} {
		if _, err := ship(o); err != nil {
			t.Fatalf("Ship %s/%s: %v", o.Format, o.RecordID, err)
		}
	}
	pre := "fleet/a/presentation/" + id + "/"
	want := func() map[string]string {
		w := treeSums(t, src)
		w[ManifestName] = bucketSums(t, srv, "rec", pre)[ManifestName]
		return w
	}
	if d := sameSums(bucketSums(t, srv, "rec", pre), want()); d != "" {
		t.Fatalf("after the first ship: %s", d)
	}
	neighbours := map[string]map[string]string{}
	for _, p := range []string{"fleet/a/presentation/" + neighbour + "/", "fleet/a/video/" + id + "/"} {
		neighbours[p] = bucketSums(t, srv, "rec", p)
	}
	checkNeighbours := func(when string) {
		t.Helper()
		for p, sums := range neighbours {
			if d := sameSums(bucketSums(t, srv, "rec", p), sums); d != "" {
				t.Errorf("%s, %s changed: %s", when, p, d)
			}
		}
	}

	// A rebuild: one file removed, one added, one changed.
	rebuild(t, src, "video/webcams.webm", "presentation/b/slide-2.png", "shapes.svg")
	r, err := ship(it)
	if err != nil {
		t.Fatalf("Ship after a rebuild: %v", err)
	}
	if d := sameSums(bucketSums(t, srv, "rec", pre), want()); d != "" {
		t.Errorf("after shipping the rebuild: %s", d)
	}
	if r.Removed != 1 || r.Written != 3 { // the added and the changed files, the manifest
		t.Errorf("Ship after a rebuild = %+v, want 3 written, 1 removed", r)
	}
	checkNeighbours("after shipping the rebuild")

	// Another rebuild, and the ship fails after the manifest is written,
	// before the cleanup: the new build is whole and playable, the old
	// file is only an unlisted extra.
	rebuild(t, src, "presentation/a/slide-1.png", "presentation/c/slide-3.png", "metadata.xml")
	inject.on.Store(true)
	if _, err := ship(it); err == nil {
		t.Fatal("Ship succeeded although its cleanup could not list the prefix")
	}
	inject.on.Store(false)
	got := bucketSums(t, srv, "rec", pre)
	var m Manifest
	readJSON(t, srv, "rec", pre+ManifestName, &m)
	files := treeSums(t, src)
	if len(m.Files) != len(files) {
		t.Errorf("the manifest lists %d files after the failed cleanup, want the new build's %d", len(m.Files), len(files))
	}
	for _, f := range m.Files {
		if files[f.Path] != f.SHA256 || got[f.Path] != f.SHA256 {
			t.Errorf("after the failed cleanup %s: %q in the manifest, %q in the bucket, want %q", f.Path, f.SHA256, got[f.Path], files[f.Path])
		}
	}
	if _, ok := got["presentation/a/slide-1.png"]; !ok {
		t.Error("the failed cleanup removed the old build's file anyway: the failure was not injected where the test meant")
	}
	// Shipping again converges, writing nothing.
	r, err = ship(it)
	if err != nil {
		t.Fatalf("Ship after the failed cleanup: %v", err)
	}
	if r.Written != 0 || r.Removed != 1 {
		t.Errorf("Ship after the failed cleanup = %+v, want nothing written, 1 removed", r)
	}
	if d := sameSums(bucketSums(t, srv, "rec", pre), want()); d != "" {
		t.Errorf("after shipping again: %s", d)
	}
	if r, err := ship(it); err != nil || r.Written != 0 || r.Removed != 0 {
		t.Errorf("Ship of the same build = %+v, %v; want nothing written or removed", r, err)
	}
	checkNeighbours("at the end")
}

func TestDirRebuildLeavesExactlyTheNewBuild(t *testing.T) {
	ctx := context.Background()
	root, dest := t.TempDir(), t.TempDir()
	st := NewDir(dest)
	id := "0123456789abcdef0123456789abcdef01234567-1"
	neighbour := id + "0"
	src := formatDir(t, root, "presentation", id, 0)
	other := formatDir(t, root, "presentation", neighbour, 0)
	it := Item{RecordID: id, Format: "presentation", Dir: src}
	for _, o := range []Item{it, {neighbour, "presentation", other}} {
		if _, err := st.Ship(ctx, Shipment{Item: o}); err != nil {
			t.Fatalf("Ship %s: %v", o.RecordID, err)
		}
	}
	dst, otherDst := st.FormatDir(id, "presentation"), st.FormatDir(neighbour, "presentation")
	before := treeSums(t, otherDst)
	// The neighbour's copy in progress (killed mid-copy): not this recording's.
	otherTmp := filepath.Join(filepath.Dir(dst), "."+neighbour+".tmp-123")
	if err := os.MkdirAll(otherTmp, 0o755); err != nil {
		t.Fatal(err)
	}
	rebuild(t, src, "video/webcams.webm", "presentation/b/slide-2.png", "shapes.svg")
	r, err := st.Ship(ctx, Shipment{Item: it})
	if err != nil || r.Written == 0 {
		t.Fatalf("Ship after a rebuild = %+v, %v", r, err)
	}
	if d := sameSums(treeSums(t, dst), treeSums(t, src)); d != "" {
		t.Errorf("after shipping the rebuild: %s", d)
	}
	if d := sameSums(treeSums(t, otherDst), before); d != "" {
		t.Errorf("the neighbour %s changed: %s", neighbour, d)
	}
	if _, err := os.Stat(otherTmp); err != nil {
		t.Errorf("shipping %s removed the neighbour's temporary copy: %v", id, err)
	}
}

func readJSON(t *testing.T, srv testenv.S3Server, bucket, key string, v any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := srv.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer out.Body.Close()
	if err := json.NewDecoder(out.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", key, err)
	}
}
