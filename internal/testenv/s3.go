package testenv

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// S3Server is a versitygw S3 server (posix back-end) of the calling test's own.
type S3Server struct {
	// Endpoint is "http://127.0.0.1:PORT"; use path-style addressing.
	Endpoint string
	// AccessKey, SecretKey and Region are the root user's credentials.
	AccessKey, SecretKey, Region string
	// Dir is the posix root: every bucket is a directory in it, every
	// object a file below.
	Dir string
	// AccessLog is the server's access log file: one line per request.
	AccessLog string
}

// S3 starts a versitygw S3 server for the calling test, on 127.0.0.1, and
// stops it when the test ends. It returns once the server answers HTTP.
// Without versitygw in PATH (or in $(go env GOPATH)/bin) the test skips
// (fails on CI).
func S3(t testing.TB) S3Server {
	t.Helper()
	requireMain(t)
	bin := findVersitygw()
	if bin == "" {
		unavailable(t, fmt.Errorf("testenv: versitygw %w: run .ci/run or go install github.com/versity/versitygw/cmd/versitygw@v1.8.0", errNotInstalled))
		return S3Server{}
	}
	s, p, err := startS3(bin)
	if err != nil {
		t.Fatal(err)
	}
	stopWithTest(t, p, stopGracefully)
	return s
}

// Client is an S3 client for the server, with path-style addressing.
func (s S3Server) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       s.Region,
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
	})
}

// CreateBucket creates a bucket on the server.
func (s S3Server) CreateBucket(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if _, err := s.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("testenv: create bucket %s: %v", name, err)
	}
}

// S3Request is one line of the server's access log.
type S3Request struct {
	Op     string // the S3 operation, such as PutObject or UploadPart
	Key    string // the object key, "-" for none
	Status int    // the HTTP status answered
}

// Requests returns the requests the server has logged so far whose
// operation is op (such as "PutObject"), or every request when op is "".
func (s S3Server) Requests(t testing.TB, op string) []S3Request {
	t.Helper()
	f, err := os.Open(s.AccessLog)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	defer f.Close()
	var reqs []S3Request
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		i := slices.IndexFunc(fields, func(f string) bool { return strings.HasPrefix(f, "s3_") })
		if i < 0 || i+3 >= len(fields) {
			continue
		}
		r := S3Request{Op: strings.TrimPrefix(fields[i], "s3_"), Key: fields[i+1]}
		r.Status, _ = strconv.Atoi(fields[i+3])
		if op == "" || r.Op == op {
			reqs = append(reqs, r)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("testenv: read %s: %v", s.AccessLog, err)
	}
	return reqs
}

var s3Seq atomic.Int64

func findVersitygw() string {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		home, _ := os.UserHomeDir()
		gopath = filepath.Join(home, "go")
	}
	p := filepath.Join(gopath, "bin", "versitygw")
	if isExecutable(p) {
		return p
	}
	return ""
}

// serverCopy copies the program at path into this test binary's directory,
// once, so that the server user can run it when the tests run as root and
// the program lives in root's home (such as ~/go/bin).
func serverCopy(path string) (string, error) {
	r, err := rootDir()
	if err != nil {
		return "", err
	}
	dst := filepath.Join(r, filepath.Base(path))
	if isExecutable(dst) {
		return dst, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("testenv: %w", err)
	}
	if err := os.WriteFile(dst+".tmp", b, 0o755); err != nil {
		return "", fmt.Errorf("testenv: %w", err)
	}
	if err := os.Rename(dst+".tmp", dst); err != nil {
		return "", fmt.Errorf("testenv: %w", err)
	}
	return dst, nil
}

var s3StartMu sync.Mutex // one free-port pick and bind at a time

func startS3(bin string) (S3Server, *process, error) {
	name := "versitygw-" + strconv.FormatInt(s3Seq.Add(1), 10)
	dir, err := makeDir(name)
	if err != nil {
		return S3Server{}, nil, err
	}
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		return S3Server{}, nil, fmt.Errorf("testenv: %w", err)
	}
	if err := chownToServerUser(data); err != nil {
		return S3Server{}, nil, err
	}
	s3StartMu.Lock()
	defer s3StartMu.Unlock()
	if bin, err = serverCopy(bin); err != nil {
		return S3Server{}, nil, err
	}
	port, err := freePort()
	if err != nil {
		return S3Server{}, nil, err
	}
	s := S3Server{
		Endpoint:  "http://127.0.0.1:" + strconv.Itoa(port),
		AccessKey: "testenv-access",
		SecretKey: "testenv-secret-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		Region:    "us-east-1",
		Dir:       data,
		AccessLog: filepath.Join(dir, "access.log"),
	}
	p, err := launch(name, dir, syscall.SIGTERM, bin,
		"--access", s.AccessKey, "--secret", s.SecretKey, "--region", s.Region,
		"--port", "127.0.0.1:"+strconv.Itoa(port), "--quiet", "--access-log", s.AccessLog,
		"posix", data)
	if err != nil {
		return S3Server{}, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err == nil {
			conn.Close()
			resp, err := client.Get(s.Endpoint + "/")
			if err == nil {
				resp.Body.Close()
				mu.Lock()
				procs = append(procs, p)
				mu.Unlock()
				return s, p, nil
			}
		}
		select {
		case <-p.done:
			return S3Server{}, nil, p.failure(fmt.Errorf("exited before it was ready: %s", p.cmd.ProcessState))
		case <-ctx.Done():
			p.kill()
			return S3Server{}, nil, p.failure(fmt.Errorf("not ready: %w", ctx.Err()))
		case <-tick.C:
		}
	}
}

// ObjectSum reads the object at bucket/key and returns its SHA-256 (hex); the
// test fails when the object cannot be read.
func (s S3Server) ObjectSum(t testing.TB, bucket, key string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := s.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		t.Fatalf("s3 %s/%s: %v", bucket, key, err)
	}
	defer out.Body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, out.Body); err != nil {
		t.Fatalf("s3 %s/%s: %v", bucket, key, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
