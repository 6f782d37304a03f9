package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// formatDir writes a small published format directory and returns it.
func formatDir(t *testing.T, root, format, id string, big int64) string {
	t.Helper()
	dir := filepath.Join(root, "published", format, id)
	files := map[string]string{
		"metadata.xml":               "<recording><id>" + id + "</id></recording>",
		"shapes.svg":                 strings.Repeat("<svg/>", 1000),
		"presentation/a/slide-1.png": "png",
		"video/webcams.webm":         strings.Repeat("w", 300000),
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if big > 0 {
		f, err := os.Create(filepath.Join(dir, "video", "big.mp4"))
		if err != nil {
			t.Fatal(err)
		}
		chunk := []byte(strings.Repeat("0123456789abcdef", 1<<16)) // 1 MiB
		for n := int64(0); n < big; n += int64(len(chunk)) {
			if _, err := f.Write(chunk); err != nil {
				t.Fatal(err)
			}
		}
		f.Close()
	}
	return dir
}

func treeSums(t *testing.T, dir string) map[string]string {
	t.Helper()
	files, err := ListFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]string{}
	for _, f := range files {
		s, _, err := fileSHA256(filepath.Join(dir, f.Path))
		if err != nil {
			t.Fatal(err)
		}
		sums[f.Path] = s
	}
	return sums
}

func TestS3ShipsEveryFileThenTheManifest(t *testing.T) {
	srv := testenv.S3(t)
	srv.CreateBucket(t, "rec")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st := NewS3Client(srv.Client(), "rec", "fleet/a")
	if err := st.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
	root := t.TempDir()
	id := "0123456789abcdef0123456789abcdef01234567-1700000000000"
	dir := formatDir(t, root, "presentation", id, 70<<20) // above the multipart threshold
	r, err := st.Ship(ctx, Shipment{Item: Item{RecordID: id, Format: "presentation", Dir: dir}})
	if err != nil {
		t.Fatalf("Ship: %v", err)
	}
	want := treeSums(t, dir)
	if r.Written != len(want)+1 {
		t.Errorf("Written = %d, want %d files + the manifest", r.Written, len(want))
	}
	pre := "fleet/a/presentation/" + id + "/"
	for rel, sum := range want {
		out, err := srv.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("rec"), Key: aws.String(pre + rel)})
		if err != nil {
			t.Fatalf("GetObject %s: %v", rel, err)
		}
		h := sha256.New()
		io.Copy(h, out.Body)
		out.Body.Close()
		if got := hex.EncodeToString(h.Sum(nil)); got != sum {
			t.Errorf("%s: sha256 %s in the bucket, %s on the node", rel, got, sum)
		}
	}
	out, err := srv.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("rec"), Key: aws.String(pre + ManifestName)})
	if err != nil {
		t.Fatalf("manifest: %v", err)
	}
	var m Manifest
	if err := json.NewDecoder(out.Body).Decode(&m); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	out.Body.Close()
	if len(m.Files) != len(want) || m.RecordID != id || m.Format != "presentation" {
		t.Errorf("manifest = %+v, want %d files of %s", m, len(want), id)
	}
	for _, f := range m.Files {
		if want[f.Path] != f.SHA256 {
			t.Errorf("manifest %s: sha256 %s, want %s", f.Path, f.SHA256, want[f.Path])
		}
	}
	// The manifest is the last write of the format.
	var last testenv.S3Request
	testenv.Eventually(t, 10*time.Second, "the manifest in the access log", func() bool {
		for _, q := range srv.Requests(t, "") {
			if strings.HasPrefix(q.Key, pre) && (q.Op == "PutObject" || q.Op == "CompleteMultipartUpload") {
				last = q
			}
		}
		return last.Key == pre+ManifestName
	})
	puts := len(srv.Requests(t, "PutObject")) + len(srv.Requests(t, "UploadPart"))

	// Again: everything is there already, nothing is written.
	r, err = st.Ship(ctx, Shipment{Item: Item{RecordID: id, Format: "presentation", Dir: dir}})
	if err != nil || r.Written != 0 {
		t.Fatalf("second Ship = %+v, %v; want nothing written", r, err)
	}
	if again := len(srv.Requests(t, "PutObject")) + len(srv.Requests(t, "UploadPart")); again != puts {
		t.Errorf("the second Ship wrote %d objects or parts, want 0", again-puts)
	}
}

func TestS3Unreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t.Setenv("AWS_ACCESS_KEY_ID", "x")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "y")
	st, err := Open(ctx, "s3://rec/p", Options{S3Endpoint: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Check(ctx); err == nil {
		t.Error("Check against a closed port succeeded")
	}
}

func TestSpoolTarHasTheScaleliteLayout(t *testing.T) {
	ctx := context.Background()
	root, spool := t.TempDir(), t.TempDir()
	id := "0123456789abcdef0123456789abcdef01234567-1700000000001"
	pres := formatDir(t, root, "presentation", id, 0)
	video := formatDir(t, root, "video", id, 0)
	st, err := Open(ctx, "spool:"+spool, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
	items := []Item{{id, "presentation", pres}, {id, "video", video}}
	r, err := st.Ship(ctx, Shipment{Item: items[0], All: items})
	if err != nil || r.Written != 1 {
		t.Fatalf("Ship = %+v, %v", r, err)
	}
	got := testenv.TarSums(t, filepath.Join(spool, id+".tar"))
	want := map[string]string{}
	for _, it := range items {
		for rel, sum := range treeSums(t, it.Dir) {
			want[it.Format+"/"+id+"/"+rel] = sum
		}
	}
	if len(got) != len(want) {
		t.Errorf("tar has %d files, want %d: %v", len(got), len(want), got)
	}
	for name, sum := range want {
		if got[name] != sum {
			t.Errorf("tar %s: sha256 %q, want %q", name, got[name], sum)
		}
	}
	entries, _ := os.ReadDir(spool)
	if len(entries) != 1 {
		t.Errorf("spool holds %d entries, want the tar only", len(entries))
	}
	// The same content again: nothing written.
	if r, err := st.Ship(ctx, Shipment{Item: items[1], All: items}); err != nil || r.Written != 0 {
		t.Errorf("second Ship = %+v, %v; want nothing written", r, err)
	}
	if _, err := st.Ship(ctx, Shipment{Item: Item{RecordID: "../x", Format: "video", Dir: video}}); err == nil {
		t.Error("Ship accepted the record id ../x")
	}
	if _, err := None.Ship(None{}, ctx, Shipment{}); !errors.Is(err, ErrNone) {
		t.Errorf("None.Ship = %v, want ErrNone", err)
	}
}

func TestDirHasBBBLayout(t *testing.T) {
	ctx := context.Background()
	root, dest := t.TempDir(), t.TempDir()
	id := "0123456789abcdef0123456789abcdef01234567-1700000000002"
	src := formatDir(t, root, "presentation", id, 0)
	st, err := Open(ctx, "dir:"+dest, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
	it := Item{RecordID: id, Format: "presentation", Dir: src}
	r, err := st.Ship(ctx, Shipment{Item: it})
	if err != nil || r.Written == 0 {
		t.Fatalf("Ship = %+v, %v", r, err)
	}
	dst := filepath.Join(dest, "published", "presentation", id)
	want, got := treeSums(t, src), treeSums(t, dst)
	if len(got) != len(want) {
		t.Errorf("copied %d files, want %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: sha256 %q, want %q", k, got[k], v)
		}
	}
	if r2, err := st.Ship(ctx, Shipment{Item: it}); err != nil || r2.Written != 0 || r2.SHA256 != r.SHA256 {
		t.Errorf("second Ship = %+v, %v; want nothing written, the same sum", r2, err)
	}
	// A rebuild replaces the copy whole.
	os.WriteFile(filepath.Join(src, "shapes.svg"), []byte("rebuilt"), 0o644)
	os.Remove(filepath.Join(src, "video", "webcams.webm"))
	if r3, err := st.Ship(ctx, Shipment{Item: it}); err != nil || r3.Written == 0 {
		t.Fatalf("Ship after a rebuild = %+v, %v", r3, err)
	}
	if got := treeSums(t, dst); len(got) != len(want)-1 || got["shapes.svg"] != treeSums(t, src)["shapes.svg"] {
		t.Errorf("after a rebuild the copy is %v", got)
	}
	entries, _ := os.ReadDir(filepath.Dir(dst))
	if len(entries) != 1 {
		t.Errorf("%d entries beside the copy, want none left over", len(entries)-1)
	}
}
