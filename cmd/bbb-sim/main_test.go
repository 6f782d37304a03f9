package main

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/bbb"
)

const secret = "bbb-sim-test-secret-0123456789"

// build compiles the command into a temporary directory.
func build(t *testing.T) string {
	t.Helper()
	gotool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool in PATH to build bbb-sim with")
	}
	bin := filepath.Join(t.TempDir(), "bbb-sim")
	out, err := exec.Command(gotool, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// syncBuffer collects a process's stderr.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestBinary(t *testing.T) {
	bin := build(t)

	t.Run("serves a signed create and stops on SIGTERM", func(t *testing.T) {
		dir := t.TempDir()
		cmd := exec.Command(bin, "--listen", "127.0.0.1:0", "--recordings-dir", dir, "--checksum-algorithms", "sha256,sha512", "--bbb-version", "3.0.9")
		cmd.Env = append(os.Environ(), "BBB_SIM_SECRET="+secret, "BBB_SIM_LOG_LEVEL=debug")
		stderr := &syncBuffer{}
		cmd.Stderr = stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		var printed strings.Builder
		base := make(chan string, 1)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				printed.WriteString(sc.Text() + "\n")
				if u, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
					base <- u
				}
			}
			exited <- cmd.Wait()
		}()
		t.Cleanup(func() { _ = cmd.Process.Kill() })

		var api string
		select {
		case u := <-base:
			api = u + "/bigbluebutton/api/"
		case err := <-exited:
			t.Fatalf("bbb-sim exited: %v\n%s", err, stderr)
		case <-time.After(10 * time.Second):
			t.Fatalf("bbb-sim printed no address\n%s", stderr)
		}
		if !strings.HasPrefix(api, "http://127.0.0.1:") || strings.HasSuffix(api, ":0/bigbluebutton/api/") {
			t.Fatalf("printed address %q", api)
		}

		client := &http.Client{Timeout: 5 * time.Second}
		getXML := func(rawURL string, out any) {
			t.Helper()
			resp, err := client.Get(rawURL)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if err := xml.Unmarshal(b, out); err != nil {
				t.Fatalf("%s: %v", b, err)
			}
		}
		var root bbb.RootResponse
		getXML(api, &root)
		if root.ReturnCode != bbb.ReturnSuccess || root.BBBVersion != "3.0.9" {
			t.Errorf("root: %+v", root)
		}
		query := bbb.EncodeQuery(url.Values{"meetingID": {"bin-1"}, "name": {"From the binary"}})
		var created bbb.CreateResponse
		getXML(api+"create?"+bbb.SignQuery(bbb.SHA256, "create", query, secret), &created)
		if created.ReturnCode != bbb.ReturnSuccess || created.MeetingID != "bin-1" || created.InternalMeetingID == "" {
			t.Errorf("create: %+v", created)
		}
		var refused bbb.Envelope
		getXML(api+"create?"+bbb.SignQuery(bbb.SHA1, "create", query, secret), &refused)
		if refused.MessageKey != bbb.KeyChecksumError {
			t.Errorf("sha1 with --checksum-algorithms sha256,sha512: %+v", refused)
		}

		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("exit after SIGTERM: %v\n%s", err, stderr)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("bbb-sim did not stop on SIGTERM")
		}
		logs := stderr.String()
		if strings.Contains(logs, secret) || strings.Contains(printed.String(), secret) {
			t.Errorf("the output shows the secret:\n%s%s", printed.String(), logs)
		}
		if !strings.Contains(logs, "bbb-sim stopped") || !strings.Contains(logs, "meeting created") {
			t.Errorf("logs:\n%s", logs)
		}
	})

	t.Run("refuses to start without a secret", func(t *testing.T) {
		cmd := exec.Command(bin, "--listen", "127.0.0.1:0")
		cmd.Env = append(os.Environ(), "BBB_SIM_SECRET=")
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "secret") {
			t.Errorf("want a failure naming the secret, got %v:\n%s", err, out)
		}
	})

	t.Run("rejects an unknown checksum algorithm", func(t *testing.T) {
		out, err := exec.Command(bin, "--listen", "127.0.0.1:0", "--secret", secret, "--checksum-algorithms", "md5").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "md5") || strings.Contains(string(out), secret) {
			t.Errorf("want a failure naming md5, got %v:\n%s", err, out)
		}
	})
}
