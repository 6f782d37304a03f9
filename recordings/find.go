package recordings

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/bbb-agent/bbb-agent/recordings/storage"
)

// The trees under the recordings directory (/var/bigbluebutton) where a
// finished format lives.
var readyTrees = []string{"published", "unpublished"}

// Found is one finished format of one recording on the node.
type Found struct {
	RecordID string
	Format   string
	Dir      string // <recordings-dir>/{published,unpublished}/<format>/<record_id>
	// Fingerprint changes whenever a file of Dir is added, removed,
	// resized or rewritten (a rebuild); Size is the bytes of its files.
	Fingerprint string
	Size        int64
}

// Scan finds every finished format under dir: each
// {published,unpublished}/<format>/<record_id>/ holding a metadata.xml.
// A format in both trees (caught mid-move) counts once, published first.
func Scan(dir string) ([]Found, error) {
	var found []Found
	seen := map[[2]string]bool{}
	for _, tree := range readyTrees {
		formats, err := os.ReadDir(filepath.Join(dir, tree))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("recordings: scan: %w", err)
		}
		for _, f := range formats {
			if !f.IsDir() {
				continue
			}
			ids, err := os.ReadDir(filepath.Join(dir, tree, f.Name()))
			if err != nil {
				return nil, fmt.Errorf("recordings: scan: %w", err)
			}
			for _, id := range ids {
				d := filepath.Join(dir, tree, f.Name(), id.Name())
				if !id.IsDir() || strings.HasPrefix(id.Name(), ".") {
					continue
				}
				if seen[[2]string{id.Name(), f.Name()}] {
					continue
				}
				if _, err := os.Stat(filepath.Join(d, "metadata.xml")); err != nil {
					continue // not published yet
				}
				seen[[2]string{id.Name(), f.Name()}] = true
				fp, size, err := Fingerprint(d)
				if err != nil {
					continue // removed while scanning
				}
				found = append(found, Found{RecordID: id.Name(), Format: f.Name(), Dir: d, Fingerprint: fp, Size: size})
			}
		}
	}
	return found, nil
}

// Lookup finds the formats of one recording (all, or only format when it
// is not empty), looking only where they would be.
func Lookup(dir, recordID, format string) ([]Found, error) {
	var out []Found
	seen := map[string]bool{}
	for _, tree := range readyTrees {
		formats := []string{format}
		if format == "" {
			formats = nil
			entries, err := os.ReadDir(filepath.Join(dir, tree))
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("recordings: lookup %s: %w", recordID, err)
			}
			for _, e := range entries {
				if e.IsDir() {
					formats = append(formats, e.Name())
				}
			}
		}
		for _, f := range formats {
			d := filepath.Join(dir, tree, f, recordID)
			if seen[f] {
				continue
			}
			if _, err := os.Stat(filepath.Join(d, "metadata.xml")); err != nil {
				continue
			}
			fp, size, err := Fingerprint(d)
			if err != nil {
				continue
			}
			seen[f] = true
			out = append(out, Found{RecordID: recordID, Format: f, Dir: d, Fingerprint: fp, Size: size})
		}
	}
	return out, nil
}

// Fingerprint hashes a directory's file list (paths, sizes, mtimes,
// modes) and its metadata.xml (a few kilobytes; a rebuild writes a new
// processing time there even within one timestamp tick): cheap, and it
// changes on any rebuild.
func Fingerprint(dir string) (string, int64, error) {
	files, err := storage.ListFiles(dir)
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	var size int64
	for _, f := range files {
		fmt.Fprintf(h, "%q %d %d %o\n", f.Path, f.Size, f.Mod, f.Mode)
		size += f.Size
	}
	if md, err := os.ReadFile(filepath.Join(dir, "metadata.xml")); err == nil && len(md) <= maxMetadataBytes {
		h.Write(md)
	}
	return hex.EncodeToString(h.Sum(nil)), size, nil
}

// ProcessingBacklog counts the recordings BBB has not finished: those with
// a recorded or archived marker under recording/status/ and no published
// marker, or a processed format without its published marker.
func ProcessingBacklog(dir string) (int, error) {
	status := filepath.Join(dir, "recording", "status")
	markers := func(step string) (map[string]bool, error) {
		m := map[string]bool{}
		entries, err := os.ReadDir(filepath.Join(status, step))
		if errors.Is(err, fs.ErrNotExist) {
			return m, nil
		}
		if err != nil {
			return nil, fmt.Errorf("recordings: processing backlog: %w", err)
		}
		for _, e := range entries {
			if name, ok := strings.CutSuffix(e.Name(), ".done"); ok {
				m[name] = true
			}
		}
		return m, nil
	}
	steps := map[string]map[string]bool{}
	for _, s := range []string{"recorded", "archived", "processed", "published"} {
		m, err := markers(s)
		if err != nil {
			return 0, err
		}
		steps[s] = m
	}
	// A marker is <record_id> or <record_id>-<format>; a record ID is
	// <meeting sha1>-<ms>, so the format follows the second dash.
	idOf := func(name string) string {
		i := strings.IndexByte(name, '-')
		if i < 0 {
			return name
		}
		if j := strings.IndexByte(name[i+1:], '-'); j >= 0 {
			if _, err := strconv.ParseInt(name[i+1:i+1+j], 10, 64); err == nil {
				return name[:i+1+j]
			}
		}
		return name
	}
	publishedIDs := map[string]bool{}
	for name := range steps["published"] {
		publishedIDs[idOf(name)] = true
	}
	pending := map[string]bool{}
	for _, s := range []string{"recorded", "archived"} {
		for name := range steps[s] {
			if id := idOf(name); !publishedIDs[id] {
				pending[id] = true
			}
		}
	}
	for name := range steps["processed"] {
		if !steps["published"][name] {
			pending[idOf(name)] = true
		}
	}
	return len(pending), nil
}
