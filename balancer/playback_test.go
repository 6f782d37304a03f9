package balancer

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/bbb-agent/bbb-agent/agentapi"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
	"github.com/bbb-agent/bbb-agent/recordings"
	"github.com/bbb-agent/bbb-agent/recordings/storage"
)

// fetch GETs a playback path with an optional Range.
func (re *recEnv) fetch(t *testing.T, p, rg string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, re.http.URL+p, nil)
	if rg != "" {
		req.Header.Set("Range", rg)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// checkPlayback checks what a published recording serves, and that
// unpublishing and deleting it close it.
func checkPlayback(t *testing.T, re *recEnv, id, srcDir string) {
	t.Helper()
	want, err := os.ReadFile(filepath.Join(srcDir, "presentation_text.json"))
	if err != nil {
		t.Fatal(err)
	}
	thumbs, _ := filepath.Glob(filepath.Join(srcDir, "presentation", "*", "thumbnails", "thumb-1.png"))
	if len(thumbs) != 1 {
		t.Fatalf("thumbnails %v", thumbs)
	}
	thumb, _ := filepath.Rel(srcDir, thumbs[0])
	base := "/presentation/" + id + "/"
	if code, h, b := re.fetch(t, base+"presentation_text.json", ""); code != 200 || string(b) != string(want) || h.Get("Content-Type") != "application/json" {
		t.Errorf("presentation_text.json: %d %q %q", code, h.Get("Content-Type"), b)
	}
	png, _ := os.ReadFile(thumbs[0])
	code, h, b := re.fetch(t, base+filepath.ToSlash(thumb), "bytes=1-3")
	if code != http.StatusPartialContent || string(b) != string(png[1:4]) || h.Get("Content-Type") != "image/png" {
		t.Errorf("range of a thumbnail: %d %q %q", code, h.Get("Content-Type"), b)
	}
	for _, p := range []string{base + "nope.xml", base + "../../etc/passwd", "/presentation/unknown-id/metadata.xml", "/video/" + id + "/metadata.xml"} {
		if code, _, _ := re.fetch(t, p, ""); code != http.StatusNotFound {
			t.Errorf("%s: HTTP %d, want 404", p, code)
		}
	}
	re.both(t, bbb.CallPublishRecordings, url.Values{"recordID": {id}, "publish": {"false"}})
	if code, _, _ := re.fetch(t, base+"presentation_text.json", ""); code != http.StatusNotFound {
		t.Errorf("unpublished: HTTP %d, want 404", code)
	}
	re.both(t, bbb.CallPublishRecordings, url.Values{"recordID": {id}, "publish": {"true"}})
	if code, _, _ := re.fetch(t, base+"presentation_text.json", ""); code != 200 {
		t.Errorf("published again: HTTP %d", code)
	}
	re.both(t, bbb.CallDeleteRecordings, url.Values{"recordID": {id}})
	if code, _, _ := re.fetch(t, base+"presentation_text.json", ""); code != http.StatusNotFound {
		t.Errorf("deleted: HTTP %d, want 404", code)
	}
	var resp bbb.GetRecordingsResponse
	if err := re.client.Get(ctxT(t), bbb.CallGetRecordings, url.Values{"state": {"deleted"}}, &resp); err != nil || len(resp.Recordings) != 1 || resp.Recordings[0].RecordID != id {
		t.Errorf("state=deleted lists %+v, %v", resp.Recordings, err)
	}
}

func TestPlaybackDir(t *testing.T) {
	re := newRecEnv(t, backends[0].dsn(t))
	id := re.record(t, "play", nil)
	checkPlayback(t, re, id, filepath.Join(re.simDir, "published", "presentation", id))
	for _, tree := range []string{"published", "unpublished"} {
		if _, err := os.Stat(filepath.Join(re.storeDir, tree, "presentation", id)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a %s copy is left after delete: %v", tree, err)
		}
	}
}

func TestPlaybackS3(t *testing.T) {
	srv := testenv.S3(t)
	srv.CreateBucket(t, "rec")
	re := newRecEnv(t, backends[0].dsn(t))
	files := &s3Files{client: srv.Client(), bucket: "rec", prefix: "fleet"}
	re.srv.rec.files = files
	id, dir := re.simRecording(t, "play-s3", nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	receipt, err := storage.NewS3Client(srv.Client(), "rec", "fleet").Ship(ctx, storage.Shipment{Item: storage.Item{RecordID: id, Format: "presentation", Dir: dir}})
	if err != nil {
		t.Fatal(err)
	}
	md, err := recordings.ReadMetadata(dir)
	if err != nil {
		t.Fatal(err)
	}
	md.Storage, md.Location, md.SHA256 = files.String(), receipt.Location, receipt.SHA256
	re.agentCall(agentapi.PathRecording, agentapi.RecordingRequest{Node: "bbb1", Recording: md}, nil, http.StatusNoContent)
	checkPlayback(t, re, id, dir)
	list, err := srv.Client().ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("rec"), Prefix: aws.String("fleet/")})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Contents) != 0 {
		t.Errorf("%d objects left after delete, first %s", len(list.Contents), aws.ToString(list.Contents[0].Key))
	}
}
