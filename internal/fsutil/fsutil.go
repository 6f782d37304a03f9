// Package fsutil owns the one way this project replaces a file: write a
// temporary file beside it, fsync it, rename it over the target, fsync the
// directory. A reader sees the old file or the new one, never a partial one,
// and a crash at any instant leaves one of the two on disk.
package fsutil

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Options say how the new file is made.
type Options struct {
	// Mode is the new file's permission bits, set explicitly so the umask
	// does not narrow them. Zero: the existing file's mode, or 0644.
	Mode fs.FileMode
	// KeepOwner gives the new file the owner and group of the file it
	// replaces, when there is one (a file another user's service reads).
	KeepOwner bool
	// UID and GID, when KeepOwner is false and either is >= 0, set the new
	// file's owner explicitly. Their zero values mean root: use -1 for "the
	// caller's", or leave both unset through WriteFile's defaults.
	UID, GID int
	// NoDirSync skips the directory fsync (only for callers that sync the
	// directory themselves after several renames).
	NoDirSync bool
}

// WriteFile atomically replaces path with content, keeping the existing
// file's mode and owner.
func WriteFile(path string, content []byte, mode fs.FileMode) error {
	return Write(path, Options{Mode: mode, KeepOwner: true, UID: -1, GID: -1}, func(w io.Writer) error {
		_, err := w.Write(content)
		return err
	})
}

// Write atomically replaces path with what fill writes. When fill or any
// step fails, the target is untouched and the temporary file removed.
func Write(path string, o Options, fill func(w io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	mode, uid, gid := o.Mode, o.UID, o.GID
	if fi, statErr := os.Stat(path); statErr == nil {
		if mode == 0 {
			mode = fi.Mode().Perm()
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && o.KeepOwner {
			uid, gid = int(st.Uid), int(st.Gid)
		}
	} else if !errors.Is(statErr, fs.ErrNotExist) {
		return fmt.Errorf("replacing %s: %w", path, statErr)
	} else if o.KeepOwner {
		uid, gid = -1, -1
	}
	if mode == 0 {
		mode = 0o644
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("replacing %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
			err = fmt.Errorf("replacing %s: %w", path, err)
		}
	}()
	if err := fill(f); err != nil {
		return err
	}
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if uid >= 0 || gid >= 0 {
		if err := chownIfDifferent(f, uid, gid); err != nil {
			return fmt.Errorf("keeping the owner %d:%d: %w", uid, gid, err)
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if o.NoDirSync {
		return nil
	}
	return SyncDir(dir)
}

// chownIfDifferent gives f the owner uid:gid unless it has it already, so an
// unprivileged caller rewriting its own file needs no chown rights.
func chownIfDifferent(f *os.File, uid, gid int) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && (uid < 0 || int(st.Uid) == uid) && (gid < 0 || int(st.Gid) == gid) {
		return nil
	}
	return f.Chown(uid, gid)
}

// SyncDir fsyncs a directory, so that a rename or a new entry in it survives
// a crash.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}
