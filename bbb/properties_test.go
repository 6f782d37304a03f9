package bbb

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadServerConfigOverrideWins(t *testing.T) {
	cfg, err := ReadServerConfig("testdata/roots/override")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Secret != "0123456789abcdef0123456789abcdef0123456789" || cfg.ServerURL != "https://bbb1.example.com" {
		t.Fatalf("got %+v", cfg)
	}
	if !strings.HasSuffix(cfg.Sources[PropSecret], PropertiesOverridePath) {
		t.Fatalf("secret source = %q", cfg.Sources[PropSecret])
	}
}

func TestReadServerConfigPackagedOnly(t *testing.T) {
	cfg, err := ReadServerConfig("testdata/roots/packaged-only")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Secret != "330a8b08c3b4c61533e1d0c5ce1ac88f" || cfg.ServerURL != "http://bigbluebutton.example.com" {
		t.Fatalf("got %+v", cfg)
	}
}

func TestReadServerConfigErrors(t *testing.T) {
	_, err := ReadServerConfig("testdata/roots/empty")
	if err == nil || !strings.Contains(err.Error(), "no BBB properties file found") {
		t.Fatalf("missing files: err = %v", err)
	}

	root := t.TempDir()
	p := filepath.Join(root, PropertiesOverridePath)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("bigbluebutton.web.serverURL=https://x.example.com\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = ReadServerConfig(root)
	if err == nil || !strings.Contains(err.Error(), "no securitySalt") {
		t.Fatalf("missing secret: err = %v", err)
	}

	// A file that exists but cannot be read is an error, not "missing".
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(p, 0o755); err != nil { // a directory where the file should be
		t.Fatal(err)
	}
	_, err = ReadServerConfig(root)
	if err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("unreadable file: err = %v", err)
	}
}

func TestParseProperties(t *testing.T) {
	f, err := os.Open("testdata/roots/packaged-only/usr/share/bbb-web/WEB-INF/classes/bigbluebutton.properties")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	props, err := ParseProperties(f)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"supportedChecksumAlgorithms":                           "sha1,sha256,sha384,sha512",
		"defaultDialAccessNumber":                               "613-555-1234",
		"beans.presentationService.defaultUploadedPresentation": "${bigbluebutton.web.serverURL}/default.pdf",
		"escaped key": "tab\there",
	}
	for k, v := range want {
		if props[k] != v {
			t.Errorf("%s = %q, want %q", k, props[k], v)
		}
	}
	if w := props["defaultWelcomeMessage"]; !strings.Contains(w, "(short) <a href") {
		t.Errorf("continuation line not joined: %q", w)
	}
	if len(props) != 7 {
		t.Errorf("got %d keys: %v", len(props), props)
	}
}
