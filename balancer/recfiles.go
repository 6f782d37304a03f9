package balancer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/bbb-agent/bbb-agent/balancer/store"
)

// recordingFiles is where the recordings' files live. The index decides a
// recording's state; Sync makes the files follow it.
type recordingFiles interface {
	// Sync brings the files of r in line with r.State. It is idempotent:
	// after a crash or a failed call, calling it again finishes the job.
	Sync(ctx context.Context, r store.Recording) error
	// String names the storage, without secrets.
	String() string
}

// openRecordingFiles opens --recordings-storage: "" (index only),
// dir:/path or s3://bucket/prefix.
func openRecordingFiles(ctx context.Context, cfg RecordingsConfig) (recordingFiles, error) {
	raw := cfg.Storage
	switch {
	case raw == "":
		return noFiles{}, nil
	case strings.HasPrefix(raw, "dir:"):
		dir := strings.TrimPrefix(strings.TrimPrefix(raw, "dir:"), "//")
		if !filepath.IsAbs(dir) {
			return nil, fmt.Errorf("recordings storage %q: the directory must be an absolute path, as dir:/var/bigbluebutton", raw)
		}
		return dirFiles{root: filepath.Clean(dir)}, nil
	case strings.HasPrefix(raw, "s3://"):
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("recordings storage %q: want s3://BUCKET/PREFIX", raw)
		}
		return newS3Files(ctx, u.Host, strings.Trim(u.Path, "/"), cfg.S3Endpoint)
	}
	return nil, fmt.Errorf("recordings storage %q: want dir:/DIR or s3://BUCKET/PREFIX", raw)
}

// noFiles is an index without storage: states change in the index only.
type noFiles struct{}

func (noFiles) Sync(context.Context, store.Recording) error { return nil }
func (noFiles) String() string                              { return "none" }

// recordingTrees are BBB's trees under the recordings directory.
var recordingTrees = []string{store.RecordingPublished, store.RecordingUnpublished, store.RecordingDeleted}

// dirFiles keeps recordings as BBB and Scalelite do:
// <root>/{published,unpublished,deleted}/<format>/<record_id>/.
type dirFiles struct {
	root string
}

func (d dirFiles) String() string { return "dir:" + d.root }

// formatDir is the directory of one format of a recording in a tree.
func (d dirFiles) formatDir(tree, format, recordID string) string {
	return filepath.Join(d.root, tree, format, recordID)
}

// Sync moves every format directory into the tree of r.State. A copy left
// in another tree (an unpublished copy beside a published one, a stale
// copy after a crash between two moves) is removed once the wanted tree
// holds the format, so a delete leaves no copy behind.
func (d dirFiles) Sync(_ context.Context, r store.Recording) error {
	tree := r.State
	if tree != store.RecordingPublished && tree != store.RecordingUnpublished && tree != store.RecordingDeleted {
		return nil
	}
	for _, f := range r.Formats {
		if !safeName(f.Type) || !safeName(r.RecordID) {
			return fmt.Errorf("recording %q format %q: not a safe directory name", r.RecordID, f.Type)
		}
		want := d.formatDir(tree, f.Type, r.RecordID)
		for _, other := range recordingTrees {
			if other == tree {
				continue
			}
			from := d.formatDir(other, f.Type, r.RecordID)
			if _, err := os.Stat(from); errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if _, err := os.Stat(want); err == nil {
				if err := os.RemoveAll(from); err != nil {
					return fmt.Errorf("remove the %s copy of %s/%s: %w", other, f.Type, r.RecordID, err)
				}
				continue
			}
			if err := os.MkdirAll(filepath.Dir(want), 0o755); err != nil {
				return err
			}
			if err := os.Rename(from, want); err != nil {
				return fmt.Errorf("move %s/%s from %s to %s: %w", f.Type, r.RecordID, other, tree, err)
			}
		}
	}
	return nil
}

// safeName is a path element that stays inside its directory.
func safeName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, `/\`+"\x00")
}
