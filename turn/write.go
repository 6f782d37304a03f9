package turn

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/bbb-agent/bbb-agent/internal/fsutil"
)

// newFileMode is the mode of a file WriteIfChanged creates: what BBB's
// packages give turn-stun-servers.xml.
const newFileMode fs.FileMode = 0o644

// WriteIfChanged makes the file at path hold content. When it already does,
// it returns false and leaves the file alone, modification time included.
// Otherwise it writes a temporary file in the same directory with the old
// file's mode and owner (0644 and the caller's owner for a new file), syncs
// it and renames it over path, so a reader sees the old file or the new one
// and never a part. A symbolic link at path is followed: the file it points
// to is replaced and the link kept. On error the old file is untouched.
func WriteIfChanged(path string, content []byte) (changed bool, err error) {
	target, old, err := current(path)
	if err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if old != nil && bytes.Equal(old.content, content) {
		return false, nil
	}
	o := fsutil.Options{Mode: newFileMode, UID: -1, GID: -1, NoDirSync: true}
	if old != nil {
		o.Mode, o.UID, o.GID = old.mode, old.uid, old.gid
	}
	if err := fsutil.Write(target, o, func(w io.Writer) error {
		_, err := w.Write(content)
		return err
	}); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	// The rename is done; this makes it survive a crash.
	if err := fsutil.SyncDir(filepath.Dir(target)); err != nil {
		return true, fmt.Errorf("wrote %s, but syncing its directory: %w", path, err)
	}
	return true, nil
}

type existing struct {
	content  []byte
	mode     fs.FileMode
	uid, gid int
}

// current resolves path through symbolic links and reads the regular file
// there; it returns a nil *existing when there is none yet.
func current(path string) (string, *existing, error) {
	target, err := filepath.EvalSymlinks(path)
	if errors.Is(err, fs.ErrNotExist) {
		// A new file, or a link to one not yet there: Lstat tells which.
		if fi, lerr := os.Lstat(path); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return "", nil, fmt.Errorf("%w: it is a symbolic link to a missing file", fs.ErrNotExist)
		}
		if _, derr := os.Stat(filepath.Dir(path)); derr != nil {
			return "", nil, fmt.Errorf("directory: %w", derr)
		}
		return path, nil, nil
	}
	if err != nil {
		return "", nil, err
	}
	f, err := os.Open(target)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", nil, err
	}
	if !fi.Mode().IsRegular() {
		return "", nil, fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	content, err := io.ReadAll(f)
	if err != nil {
		return "", nil, err
	}
	e := &existing{content: content, mode: fi.Mode().Perm(), uid: -1, gid: -1}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		e.uid, e.gid = int(st.Uid), int(st.Gid)
	}
	return target, e, nil
}

// backupAttempts bounds the search for a free backup name.
const backupAttempts = 1000

// BackupUnparsable copies the file at path aside, before it is replaced, to
// <path>.bak-<YYYYmmddHHMMSS> (now, in now's location), or to that name with
// -1, -2, ... appended when a backup of that second exists already: a backup
// is never overwritten. The copy has the original's mode and owner, since it
// holds the same secrets. It returns the backup's path.
func BackupUnparsable(path string, now time.Time) (backup string, err error) {
	src, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("back up %s: %w", path, err)
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return "", fmt.Errorf("back up %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("back up %s: not a regular file (%s)", path, fi.Mode().Type())
	}
	base := path + ".bak-" + now.Format("20060102150405")
	var dst *os.File
	for i := 0; dst == nil; i++ {
		if i == backupAttempts {
			return "", fmt.Errorf("back up %s: %s and %d numbered variants exist already", path, base, backupAttempts-1)
		}
		backup = base
		if i > 0 {
			backup += "-" + strconv.Itoa(i)
		}
		dst, err = os.OpenFile(backup, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
		if err != nil && !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("back up %s: %w", path, err)
		}
	}
	if err := copyInto(dst, src, fi); err != nil {
		os.Remove(backup)
		return "", fmt.Errorf("back up %s to %s: %w", path, backup, err)
	}
	return backup, nil
}

// copyInto fills dst from src, gives it src's mode and owner, syncs and
// closes it.
func copyInto(dst *os.File, src *os.File, fi fs.FileInfo) error {
	defer dst.Close()
	if _, err := io.Copy(dst, src); err != nil {
		return err
	}
	if err := dst.Chmod(fi.Mode().Perm()); err != nil {
		return err
	}
	if err := keepOwner(dst, fi); err != nil {
		return err
	}
	if err := dst.Sync(); err != nil {
		return err
	}
	return dst.Close()
}

// keepOwner gives dst the owner of the file fi describes, unless it has it
// already, so an unprivileged caller backing up its own file needs no chown
// rights.
func keepOwner(dst *os.File, fi fs.FileInfo) error {
	want, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	dfi, err := dst.Stat()
	if err != nil {
		return err
	}
	if have, ok := dfi.Sys().(*syscall.Stat_t); ok && have.Uid == want.Uid && have.Gid == want.Gid {
		return nil
	}
	return dst.Chown(int(want.Uid), int(want.Gid))
}
