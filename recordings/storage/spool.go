package storage

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bbb-agent/bbb-agent/internal/fsutil"
)

// Spool writes Scalelite's transfer format into a directory.
type Spool struct {
	dir string
	mu  sync.Mutex // one tar write at a time: two formats of one recording write the same file
}

// NewSpool returns the spool back-end writing into dir.
func NewSpool(dir string) *Spool { return &Spool{dir: dir} }

func (s *Spool) String() string { return "spool:" + s.dir }

// TarPath is where the tar of a recording goes.
func (s *Spool) TarPath(recordID string) string { return filepath.Join(s.dir, recordID+".tar") }

// Ship writes <record_id>.tar with every format in sh.All. When the spool
// already holds a tar with the same content (a retry after a crash), it
// writes nothing.
func (s *Spool) Ship(ctx context.Context, sh Shipment) (Receipt, error) {
	if err := validID(sh.RecordID); err != nil {
		return Receipt{}, err
	}
	items := sh.All
	if len(items) == 0 {
		items = []Item{sh.Item}
	}
	items = slices.Clone(items)
	slices.SortFunc(items, func(a, b Item) int { return strings.Compare(a.Format, b.Format) })
	s.mu.Lock()
	defer s.mu.Unlock()
	dst := s.TarPath(sh.RecordID)
	// Temporary files of an earlier attempt killed mid-write.
	stale, _ := filepath.Glob(filepath.Join(s.dir, "."+sh.RecordID+".tar.tmp-*"))
	for _, p := range stale {
		os.Remove(p)
	}
	if fi, err := os.Stat(dst); err == nil {
		// Same size: compare the content before writing it again.
		h := sha256.New()
		n, err := writeTar(ctx, h, items)
		if err != nil {
			return Receipt{}, err
		}
		if n == fi.Size() {
			have, _, err := fileSHA256(dst)
			if err != nil {
				return Receipt{}, fmt.Errorf("spool: %w", err)
			}
			if sum := hex.EncodeToString(h.Sum(nil)); sum == have {
				return Receipt{Location: dst, Size: n, SHA256: sum}, nil
			}
		}
	}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return Receipt{}, fmt.Errorf("spool: %w", err)
	}
	var r Receipt
	h := sha256.New()
	err := fsutil.Write(dst, fsutil.Options{Mode: 0o644, UID: -1, GID: -1}, func(w io.Writer) error {
		n, err := writeTar(ctx, io.MultiWriter(w, h), items)
		r.Size = n
		return err
	})
	if err != nil {
		return Receipt{}, fmt.Errorf("spool: write %s: %w", dst, err)
	}
	r.Location, r.SHA256, r.Written = dst, hex.EncodeToString(h.Sum(nil)), 1
	return r, nil
}

// Check writes and removes a probe file in the spool directory.
func (s *Spool) Check(ctx context.Context) error {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	p := filepath.Join(s.dir, ".bbb-agent-check")
	if err := fsutil.WriteFile(p, []byte("probe\n"), 0o644); err != nil {
		return fmt.Errorf("spool %s is not writable: %w", s.dir, err)
	}
	if err := os.Remove(p); err != nil {
		return fmt.Errorf("spool %s: %w", s.dir, err)
	}
	return nil
}

// writeTar writes a deterministic tar of the items (entries
// <format>/<record_id>/<path>, sorted; owner 0, the files' modes and mtimes)
// and returns its size.
func writeTar(ctx context.Context, w io.Writer, items []Item) (int64, error) {
	cw := &countWriter{w: w}
	tw := tar.NewWriter(cw)
	for _, it := range items {
		files, err := ListFiles(it.Dir)
		if err != nil {
			return 0, err
		}
		base := it.Format + "/" + it.RecordID
		for _, f := range files {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			if err := tarFile(tw, filepath.Join(it.Dir, filepath.FromSlash(f.Path)), path.Join(base, f.Path), f); err != nil {
				return 0, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return 0, err
	}
	return cw.n, nil
}

func tarFile(tw *tar.Writer, src, name string, f File) error {
	fh, err := os.Open(src)
	if err != nil {
		return err
	}
	defer fh.Close()
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: f.Size, Mode: int64(f.Mode),
		ModTime: time.Unix(0, f.Mod).UTC().Truncate(time.Second), Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	// A file that grows or shrinks while it is read (a rebuild) fails the
	// tar: the shipper tries again.
	if _, err := io.CopyN(tw, fh, f.Size); err != nil {
		return fmt.Errorf("read %s: %w (did it change while shipping?)", src, err)
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// validID refuses a record ID that could leave its directory.
func validID(id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\\\x00") {
		return fmt.Errorf("invalid record id %q", id)
	}
	return nil
}
