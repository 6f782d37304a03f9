package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNodeNameGeneratedOnce: without a configured name one is generated,
// kept in the state directory (made if missing) and read back after a
// restart; a configured name wins.
func TestNodeNameGeneratedOnce(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "state", "agent")
	first, err := NodeName(ctx, "", dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(first, "bbb-") || !validName.MatchString(first) {
		t.Fatalf("generated name %q", first)
	}
	data, err := os.ReadFile(filepath.Join(dir, nodeNameFile))
	if err != nil || string(data) != first+"\n" {
		t.Fatalf("state file: %q, %v", data, err)
	}
	again, err := NodeName(ctx, "", dir, nil)
	if err != nil || again != first {
		t.Fatalf("after a restart: %q, %v; want %q", again, err, first)
	}
	if got, err := NodeName(ctx, "BBB-7", dir, nil); err != nil || got != "bbb-7" {
		t.Fatalf("configured: %q, %v", got, err)
	}
	if err := os.WriteFile(filepath.Join(dir, nodeNameFile), []byte("Not A Name\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := NodeName(ctx, "", dir, nil); err == nil || !strings.Contains(err.Error(), "fix or delete the file") {
		t.Fatalf("a bad state file: %v", err)
	}
}
