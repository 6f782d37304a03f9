package testenv

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

func TestS3(t *testing.T) {
	s := S3(t)
	s.CreateBucket(t, "rec")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := s.Client()
	body := "hello recordings"
	sum := sha256.Sum256([]byte(body))
	_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("rec"), Key: aws.String("a/b.txt"),
		Body: strings.NewReader(body), ChecksumAlgorithm: types.ChecksumAlgorithmSha256})
	if err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("rec"), Key: aws.String("a/b.txt"),
		ChecksumMode: types.ChecksumModeEnabled})
	if err != nil {
		t.Fatalf("GetObject: %v", err)
	}
	got, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if string(got) != body {
		t.Errorf("GetObject = %q, want %q", got, body)
	}
	if want := base64.StdEncoding.EncodeToString(sum[:]); aws.ToString(out.ChecksumSHA256) != want {
		t.Errorf("ChecksumSHA256 = %q, want %q", aws.ToString(out.ChecksumSHA256), want)
	}
	// The posix back-end keeps the object as a file.
	if b, err := os.ReadFile(filepath.Join(s.Dir, "rec", "a", "b.txt")); err != nil || string(b) != body {
		t.Errorf("object file = %q, %v; want %q", b, err, body)
	}
	Eventually(t, 10*time.Second, "the PutObject in the access log", func() bool {
		return slices.Contains(s.Requests(t, "PutObject"), S3Request{Op: "PutObject", Key: "a/b.txt", Status: 200})
	})
}
