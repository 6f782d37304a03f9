package recordings

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bbb-agent/bbb-agent/internal/testenv"
	"github.com/bbb-agent/bbb-agent/recordings/storage"
)

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		crashChild()
		return
	}
	testenv.Main(m)
}

// recordID returns a BBB-like record ID: <sha1 of the meeting>-<ms>.
func recordID(n int) string {
	sum := sha256.Sum256([]byte(fmt.Sprint("meeting", n)))
	return hex.EncodeToString(sum[:20]) + fmt.Sprintf("-%d", 1700000000000+n)
}

const metadataTmpl = `<?xml version="1.0" encoding="UTF-8"?>
<recording>
  <id>%[1]s</id>
  <state>published</state>
  <published>true</published>
  <start_time>1700000000000</start_time>
  <end_time>1700000600000</end_time>
  <participants>3</participants>
  <meeting id="%[1]s" externalId="ext-%[1]s" name="Meeting %[1]s" breakout="false"/>
  <meta>
    <isBreakout>false</isBreakout>
    <meetingName>Meeting %[1]s</meetingName>
    <bbb-origin>Greenlight</bbb-origin>
  </meta>
  <playback>
    <format>%[2]s</format>
    <link>https://bbb1.example.com/playback/%[2]s/2.3/%[1]s</link>
    <processing_time>4567</processing_time>
    <duration>600000</duration>
    <extensions>
      <preview>
        <images>
          <image width="176" height="136" alt="Welcome">https://bbb1.example.com/presentation/%[1]s/thumbnails/thumb-1.png</image>
        </images>
      </preview>
    </extensions>
    <size>%[3]d</size>
  </playback>
  <raw_size>123456</raw_size>
</recording>
`

// publish writes a format of a recording as BBB publishes it and returns
// its directory.
func publish(t testing.TB, root, id, format string, n int) string {
	t.Helper()
	dir := filepath.Join(root, "published", format, id)
	files := map[string]string{
		"shapes.svg":                      strings.Repeat("<svg/>", 100*n+1),
		"presentation/deck/slide-1.png":   "png " + id,
		"video/webcams.webm":              strings.Repeat("w", 1000*n+7),
		"presentation/deck/thumbnails/t1": "thumb",
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
	md := fmt.Sprintf(metadataTmpl, id, format, 1234)
	if err := os.WriteFile(filepath.Join(dir, "metadata.xml"), []byte(md), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// sums returns every file's SHA-256 under dir, by slash path.
func sums(t testing.TB, dir string) map[string]string {
	t.Helper()
	files, err := storage.ListFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range files {
		fh, err := os.Open(filepath.Join(dir, f.Path))
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		io.Copy(h, fh)
		fh.Close()
		out[f.Path] = hex.EncodeToString(h.Sum(nil))
	}
	return out
}
