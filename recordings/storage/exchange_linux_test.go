package storage

import (
	"os"
	"path/filepath"
	"testing"
)

// On Linux a rebuild's copy replaces the earlier one in one exchange: the
// earlier build is swapped to the temporary name, never renamed aside
// first (which would leave the format missing for a moment, or until the
// next ship after a crash there).
func TestDirSwapExchangesInOneStep(t *testing.T) {
	parent := t.TempDir()
	dst, tmp := filepath.Join(parent, "rec-1"), filepath.Join(parent, ".rec-1.tmp-1")
	for dir, body := range map[string]string{dst: "old build", tmp: "new build"} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "metadata.xml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := swapIn(tmp, dst); err != nil {
		t.Fatalf("swapIn: %v", err)
	}
	for dir, want := range map[string]string{dst: "new build", tmp: "old build"} {
		got, err := os.ReadFile(filepath.Join(dir, "metadata.xml"))
		if err != nil || string(got) != want {
			t.Errorf("%s holds %q (%v), want %q: the copies were not exchanged", filepath.Base(dir), got, err, want)
		}
	}
	entries, _ := os.ReadDir(parent)
	if len(entries) != 2 {
		t.Errorf("%d entries in the parent, want the two exchanged copies", len(entries))
	}
}
