package testenv

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"testing"
)

// TarSums reads the tar at path and returns each regular entry's SHA-256
// (hex) by entry name: how tests compare a Scalelite spool tar with the
// published tree it was made from.
func TarSums(t testing.TB, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	sums := map[string]string{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return sums
		}
		if err != nil {
			t.Fatalf("tar %s: %v", path, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		s := sha256.New()
		if _, err := io.Copy(s, tr); err != nil {
			t.Fatalf("tar %s: %s: %v", path, h.Name, err)
		}
		sums[h.Name] = hex.EncodeToString(s.Sum(nil))
	}
}
