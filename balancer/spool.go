package balancer

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/bbb-agent/bbb-agent/agentapi"
	"github.com/bbb-agent/bbb-agent/internal/fsutil"
	"github.com/bbb-agent/bbb-agent/recordings"
)

// Spool layout under --recordings-spool: tars arrive at the top, each
// replica claims one by renaming it into work/<replica>/ (a rename succeeds
// for exactly one replica), and bad tars end in failed/ beside a .reason
// file.
const (
	spoolWork   = "work"
	spoolFailed = "failed"
	// spoolNode is the node name of recordings imported from the spool.
	spoolNode = "spool"
)

// errBadTar marks a tar that no retry can import.
var errBadTar = errors.New("bad recording tar")

// spoolBackoff is the wait before retrying a tar whose import failed for a
// reason that may pass (database down, storage full), doubled per attempt.
const (
	spoolBackoffMin = 5 * time.Second
	spoolBackoffMax = 5 * time.Minute
)

// spoolRetry remembers a tar's failed attempts.
type spoolRetry struct {
	attempts int
	next     time.Time
}

// ImportSpool runs one pass over the spool: claims every waiting tar (and
// finishes the ones this replica claimed before a crash), and imports each.
// It returns how many tars it imported.
func (s *Server) ImportSpool(ctx context.Context) (int, error) {
	spool := s.cfg.Recordings.Spool
	d, ok := s.rec.files.(dirFiles)
	if spool == "" || !ok {
		return 0, nil
	}
	s.rec.importMu.Lock()
	defer s.rec.importMu.Unlock()
	work := filepath.Join(spool, spoolWork, s.cfg.Recordings.Replica)
	if err := os.MkdirAll(work, 0o750); err != nil {
		return 0, fmt.Errorf("recordings spool: %w", err)
	}
	entries, err := os.ReadDir(spool)
	if err != nil {
		return 0, fmt.Errorf("recordings spool: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(name, ".tar") || strings.HasPrefix(name, ".") {
			continue
		}
		// Losing the race to another replica is ENOENT: not ours.
		if err := os.Rename(filepath.Join(spool, name), filepath.Join(work, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Error("claiming a spool tar", "tar", name, "err", err)
		}
	}
	claimed, err := os.ReadDir(work)
	if err != nil {
		return 0, fmt.Errorf("recordings spool: %w", err)
	}
	imported := 0
	now := s.cfg.Clock()
	for _, e := range claimed {
		name := e.Name()
		if !strings.HasSuffix(name, ".tar") || ctx.Err() != nil {
			continue
		}
		s.rec.spoolMu.Lock()
		retry := s.rec.spoolRetries[name]
		s.rec.spoolMu.Unlock()
		if now.Before(retry.next) {
			continue
		}
		err := s.importTar(ctx, d, work, name)
		switch {
		case err == nil:
			imported++
			s.rec.spoolMu.Lock()
			delete(s.rec.spoolRetries, name)
			s.rec.spoolMu.Unlock()
			s.log.Info("spool tar imported", "tar", name)
		case errors.Is(err, errBadTar):
			s.log.Error("spool tar is bad; moved to failed/", "tar", name, "err", err)
			if ferr := s.failTar(spool, work, name, err); ferr != nil {
				s.log.Error("moving a bad spool tar to failed/", "tar", name, "err", ferr)
			}
		default:
			retry.attempts++
			wait := min(spoolBackoffMin<<min(retry.attempts-1, 10), spoolBackoffMax)
			retry.next = now.Add(wait)
			s.rec.spoolMu.Lock()
			s.rec.spoolRetries[name] = retry
			s.rec.spoolMu.Unlock()
			s.log.Warn("spool tar import failed; will retry", "tar", name, "attempts", retry.attempts, "retry_in", wait, "err", err)
		}
	}
	return imported, nil
}

// failTar moves a bad tar to failed/ with the reason beside it. It is never
// looked at again.
func (s *Server) failTar(spool, work, name string, reason error) error {
	failed := filepath.Join(spool, spoolFailed)
	if err := os.MkdirAll(failed, 0o750); err != nil {
		return err
	}
	if err := fsutil.WriteFile(filepath.Join(failed, name+".reason"), []byte(reason.Error()+"\n"), 0o640); err != nil {
		return err
	}
	s.rec.spoolMu.Lock()
	delete(s.rec.spoolRetries, name)
	s.rec.spoolMu.Unlock()
	_ = os.RemoveAll(filepath.Join(work, strings.TrimSuffix(name, ".tar")+".staging"))
	return os.Rename(filepath.Join(work, name), filepath.Join(failed, name))
}

// importTar unpacks a claimed tar into a staging directory, moves each
// format into the storage tree and indexes it; the tar is removed only after
// both. Every step can run again after a crash.
func (s *Server) importTar(ctx context.Context, d dirFiles, work, name string) error {
	recordID := strings.TrimSuffix(name, ".tar")
	if !safeName(recordID) {
		return fmt.Errorf("%w: %q is not a record ID", errBadTar, name)
	}
	staging := filepath.Join(work, recordID+".staging")
	if err := os.RemoveAll(staging); err != nil {
		return err
	}
	formats, err := unpackTar(filepath.Join(work, name), staging, recordID)
	if err != nil {
		return err
	}
	var metas []agentapi.RecordingMetadata
	for _, format := range formats {
		md, err := recordings.ReadMetadata(filepath.Join(staging, format, recordID))
		if err != nil {
			return fmt.Errorf("%w: %v", errBadTar, err)
		}
		if md.RecordID != recordID {
			return fmt.Errorf("%w: %s/%s/metadata.xml is about recording %q", errBadTar, format, recordID, md.RecordID)
		}
		if len(md.Formats) == 0 {
			md.Formats = []agentapi.RecordingFormat{{Type: format}}
		}
		metas = append(metas, md)
	}
	// Under the storage lock, so that a publish or delete of the same
	// recording in this process does not move files in between.
	s.rec.filesMu.Lock()
	for i, format := range formats {
		// An indexed recording keeps the tree of its state (an operator's
		// decision); a new one goes where its metadata.xml says.
		tree := stateTree(metas[i])
		if rec, err := s.store.Recording(ctx, recordID); err == nil {
			tree = rec.State
		}
		if err := d.place(filepath.Join(staging, format, recordID), tree, format, recordID); err != nil {
			s.rec.filesMu.Unlock()
			return err
		}
	}
	s.rec.filesMu.Unlock()
	for i := range metas {
		metas[i].Storage, metas[i].Location, metas[i].ShippedAt = d.String(), name, s.cfg.Clock().UTC()
		if err := s.indexRecording(ctx, spoolNode, metas[i]); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(staging); err != nil {
		return err
	}
	return os.Remove(filepath.Join(work, name))
}

func stateTree(md agentapi.RecordingMetadata) string {
	switch md.State {
	case "unpublished":
		return "unpublished"
	case "deleted":
		return "deleted"
	}
	return "published"
}

// place moves a format directory into tree, replacing what was there, and
// removes copies in the other trees.
func (d dirFiles) place(src, tree, format, recordID string) error {
	dst := d.formatDir(tree, format, recordID)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	old := dst + ".replaced"
	if err := os.RemoveAll(old); err != nil {
		return err
	}
	if err := os.Rename(dst, old); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Rename(src, dst); err != nil {
		return err
	}
	for _, other := range recordingTrees {
		if other != tree {
			if err := os.RemoveAll(d.formatDir(other, format, recordID)); err != nil {
				return err
			}
		}
	}
	return os.RemoveAll(old)
}

// unpackTar extracts a Scalelite tar whose entries are
// <format>/<record_id>/... into dir and returns its formats. Anything else
// (another record ID, a path escaping the tree, links, devices, a broken
// tar) is errBadTar.
func unpackTar(tarPath, dir, recordID string) ([]string, error) {
	f, err := os.Open(tarPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var formats []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errBadTar, err)
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		parts := strings.Split(name, "/")
		if !fs.ValidPath(name) || len(parts) < 2 || parts[1] != recordID || !safeName(parts[0]) {
			return nil, fmt.Errorf("%w: entry %q is not <format>/%s/...", errBadTar, h.Name, recordID)
		}
		if !slices.Contains(formats, parts[0]) {
			formats = append(formats, parts[0])
		}
		target := filepath.Join(dir, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return nil, err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return nil, err
			}
			out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
			if err != nil {
				return nil, err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, tar.ErrHeader) {
					return nil, fmt.Errorf("%w: %s: %v", errBadTar, h.Name, err)
				}
				return nil, err
			}
		default:
			return nil, fmt.Errorf("%w: entry %q is not a file or directory", errBadTar, h.Name)
		}
	}
	if len(formats) == 0 {
		return nil, fmt.Errorf("%w: no entries", errBadTar)
	}
	return formats, nil
}

// runSpool imports the spool every interval until ctx ends.
func (s *Server) runSpool(ctx context.Context) {
	t := time.NewTicker(s.cfg.Recordings.SpoolInterval)
	defer t.Stop()
	for {
		if _, err := s.ImportSpool(ctx); err != nil {
			s.log.Error("recordings spool", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
