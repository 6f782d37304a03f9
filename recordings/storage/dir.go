package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/bbb-agent/bbb-agent/internal/fsutil"
)

// Dir copies recordings into a tree laid out as BBB's own:
// <root>/published/<format>/<record_id>/... (what bbb-balancer serves
// playback from). A format appears whole or not at all: it is copied
// into a temporary directory beside its place, fsynced, and renamed (or
// exchanged with an earlier build's copy, which then goes).
type Dir struct {
	root string
}

// NewDir returns the dir back-end writing under root.
func NewDir(root string) *Dir { return &Dir{root: root} }

func (d *Dir) String() string { return "dir:" + d.root }

// FormatDir is where a format of a recording goes.
func (d *Dir) FormatDir(recordID, format string) string {
	return filepath.Join(d.root, "published", format, recordID)
}

// Ship copies the format's directory, unless the destination already
// holds the same files with the same SHA-256.
func (d *Dir) Ship(ctx context.Context, sh Shipment) (Receipt, error) {
	if err := validID(sh.RecordID); err != nil {
		return Receipt{}, err
	}
	if err := validID(sh.Format); err != nil {
		return Receipt{}, err
	}
	files, err := ListFiles(sh.Dir)
	if err != nil {
		return Receipt{}, err
	}
	dst := d.FormatDir(sh.RecordID, sh.Format)
	parent := filepath.Dir(dst)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return Receipt{}, fmt.Errorf("dir: %w", err)
	}
	// Leftovers of an attempt killed mid-copy.
	stale, _ := filepath.Glob(filepath.Join(parent, "."+sh.RecordID+".tmp-*"))
	for _, p := range stale {
		os.RemoveAll(p)
	}
	var size int64
	for _, f := range files {
		size += f.Size
	}
	if sum, same := sameTree(sh.Dir, dst, files); same {
		return Receipt{Location: dst, Size: size, SHA256: sum}, nil
	}
	tmp, err := os.MkdirTemp(parent, "."+sh.RecordID+".tmp-*")
	if err != nil {
		return Receipt{}, fmt.Errorf("dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	h := sha256.New()
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return Receipt{}, err
		}
		sum, err := copyFile(filepath.Join(sh.Dir, filepath.FromSlash(f.Path)), filepath.Join(tmp, filepath.FromSlash(f.Path)), f)
		if err != nil {
			return Receipt{}, fmt.Errorf("dir: %w", err)
		}
		fmt.Fprintf(h, "%s %s\n", sum, f.Path)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return Receipt{}, fmt.Errorf("dir: %w", err)
	}
	if err := swapIn(tmp, dst); err != nil {
		return Receipt{}, fmt.Errorf("dir: %w", err)
	}
	if err := fsutil.SyncDir(parent); err != nil {
		return Receipt{}, fmt.Errorf("dir: %w", err)
	}
	return Receipt{Location: dst, Size: size, SHA256: hex.EncodeToString(h.Sum(nil)), Written: len(files)}, nil
}

// swapIn puts the complete copy tmp at dst. An earlier build at dst (a
// rebuild shipped again) is exchanged with it in one step, so playback
// never finds dst missing, even across a crash; it then lies at tmp, which
// the caller removes (or the next ship, as a leftover). Where the file
// system cannot exchange, the old copy is renamed aside first: a crash
// between the two renames leaves dst missing until the next ship.
func swapIn(tmp, dst string) error {
	if _, err := os.Stat(dst); err != nil {
		return os.Rename(tmp, dst)
	}
	if exchange(tmp, dst) == nil {
		return nil
	}
	old := tmp + ".old"
	if err := os.Rename(dst, old); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return err
	}
	os.RemoveAll(old)
	return nil
}

// copyFile copies one file, fsynced, and returns its SHA-256.
func copyFile(src, dst string, f File) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.Mode|0o400)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	_, err = io.CopyN(io.MultiWriter(out, h), in, f.Size)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("copy %s: %w", src, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// sameTree reports whether dst holds exactly files, byte for byte.
func sameTree(src, dst string, files []File) (string, bool) {
	have, err := ListFiles(dst)
	if err != nil || len(have) != len(files) {
		return "", false
	}
	h := sha256.New()
	for i, f := range files {
		if have[i].Path != f.Path || have[i].Size != f.Size {
			return "", false
		}
		a, _, err := fileSHA256(filepath.Join(src, filepath.FromSlash(f.Path)))
		if err != nil {
			return "", false
		}
		b, _, err := fileSHA256(filepath.Join(dst, filepath.FromSlash(f.Path)))
		if err != nil || a != b {
			return "", false
		}
		fmt.Fprintf(h, "%s %s\n", a, f.Path)
	}
	return hex.EncodeToString(h.Sum(nil)), true
}

// Check writes and removes a probe file under the root.
func (d *Dir) Check(ctx context.Context) error {
	if err := os.MkdirAll(d.root, 0o755); err != nil {
		return fmt.Errorf("dir: %w", err)
	}
	p := filepath.Join(d.root, ".bbb-agent-check")
	if err := fsutil.WriteFile(p, []byte("probe\n"), 0o644); err != nil {
		return fmt.Errorf("dir %s is not writable: %w", d.root, err)
	}
	return os.Remove(p)
}
