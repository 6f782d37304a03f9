package main

import (
	"encoding/xml"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

const secret = "bbb-sim-test-secret-0123456789"

func TestMain(m *testing.M) { testenv.Main(m) }

func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := testenv.Build(t, testenv.SimPkg)[0]

	t.Run("serves a signed create and stops on SIGTERM", func(t *testing.T) {
		dir := t.TempDir()
		p := testenv.StartSim(t, testenv.SimOpts{Bin: bin, Args: []string{"--recordings-dir", dir, "--checksum-algorithms", "sha256,sha512", "--bbb-version", "3.0.9"},
			Env: []string{"BBB_SIM_SECRET=" + secret, "BBB_SIM_LOG_LEVEL=debug"}})
		api := p.Ready + "/bigbluebutton/api/"
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

		if code := p.Stop(t, 10*time.Second); code != 0 {
			t.Errorf("exit %d after SIGTERM\n%s", code, p.Output())
		}
		logs := p.Output()
		if strings.Contains(logs, secret) {
			t.Errorf("the output shows the secret:\n%s", logs)
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
