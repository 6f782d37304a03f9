package turn

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// nobody is the owner the tests give files when they run as root, to see
// that an owner other than the writer's is kept.
const nobody = 65534

func fileStat(t *testing.T, path string) *syscall.Stat_t {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t)
}

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// oldFile writes path with content, mode 0640 and, as root, owner nobody,
// and sets its times to a fixed past moment.
func oldFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(path, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := os.Chtimes(path, past, past); err != nil {
		t.Fatal(err)
	}
}

// dirEntries lists a directory's names, to catch leftover temporary files.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteIfChangedNewFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "turn-stun-servers.xml")
	changed, err := WriteIfChanged(path, []byte("<beans/>\n"))
	if err != nil || !changed {
		t.Fatalf("changed %v, err %v", changed, err)
	}
	if got := readString(t, path); got != "<beans/>\n" {
		t.Fatalf("content %q", got)
	}
	if st := fileStat(t, path); fs.FileMode(st.Mode).Perm() != 0o644 || int(st.Uid) != os.Geteuid() {
		t.Fatalf("mode %o uid %d, want 0644 and the writer's", st.Mode&0o777, st.Uid)
	}
	if names := dirEntries(t, dir); len(names) != 1 {
		t.Fatalf("directory holds %v", names)
	}
}

func TestWriteIfChangedUnchanged(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "turn-stun-servers.xml")
	oldFile(t, path, "same\n")
	before := fileStat(t, path)
	changed, err := WriteIfChanged(path, []byte("same\n"))
	if err != nil || changed {
		t.Fatalf("changed %v, err %v", changed, err)
	}
	after := fileStat(t, path)
	if after.Ino != before.Ino || after.Mtim != before.Mtim || after.Ctim != before.Ctim {
		t.Fatalf("file touched: inode %d→%d, mtime %v→%v, ctime %v→%v",
			before.Ino, after.Ino, before.Mtim, after.Mtim, before.Ctim, after.Ctim)
	}
	if names := dirEntries(t, dir); len(names) != 1 {
		t.Fatalf("directory holds %v", names)
	}
}

func TestWriteIfChangedReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "turn-stun-servers.xml")
	oldFile(t, path, "old\n")
	before := fileStat(t, path)
	// A reader that opened the old file keeps reading the old file: the new
	// one replaces it by rename, it is never rewritten in place.
	reader, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()

	changed, err := WriteIfChanged(path, []byte("new content\n"))
	if err != nil || !changed {
		t.Fatalf("changed %v, err %v", changed, err)
	}
	if got := readString(t, path); got != "new content\n" {
		t.Fatalf("content %q", got)
	}
	after := fileStat(t, path)
	if after.Ino == before.Ino {
		t.Fatal("same inode: the file was rewritten in place")
	}
	if after.Mode != before.Mode || after.Uid != before.Uid || after.Gid != before.Gid {
		t.Fatalf("mode/owner %o %d:%d, want %o %d:%d", after.Mode, after.Uid, after.Gid, before.Mode, before.Uid, before.Gid)
	}
	if os.Geteuid() == 0 && after.Uid != nobody {
		t.Fatalf("owner %d, want nobody", after.Uid)
	}
	if old, err := io.ReadAll(reader); err != nil || string(old) != "old\n" {
		t.Fatalf("the open old file reads %q, %v", old, err)
	}
	if names := dirEntries(t, dir); len(names) != 1 {
		t.Fatalf("directory holds %v", names)
	}
}

func TestWriteIfChangedSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "real.xml")
	link := filepath.Join(dir, "turn-stun-servers.xml")
	oldFile(t, target, "old\n")
	if err := os.Symlink("real.xml", link); err != nil {
		t.Fatal(err)
	}
	if changed, err := WriteIfChanged(link, []byte("new\n")); err != nil || !changed {
		t.Fatalf("changed %v, err %v", changed, err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Fatalf("the link is gone: %v %v", fi, err)
	}
	if got := readString(t, target); got != "new\n" {
		t.Fatalf("target holds %q", got)
	}
	if st := fileStat(t, target); fs.FileMode(st.Mode).Perm() != 0o640 {
		t.Fatalf("target mode %o", st.Mode&0o777)
	}
}

// TestWriteIfChangedUnwritable covers paths no one can write, root included
// (tests run as root, where permission bits stop nothing).
func TestWriteIfChangedUnwritable(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "regular")
	oldFile(t, regular, "keep\n")
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("missing.xml", filepath.Join(dir, "dangling")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, path, want string
		is               error
	}{
		{"under a regular file", filepath.Join(regular, "turn-stun-servers.xml"), "not a directory", syscall.ENOTDIR},
		{"missing directory", filepath.Join(dir, "missing", "turn-stun-servers.xml"), "directory", fs.ErrNotExist},
		{"a directory", filepath.Join(dir, "adir"), "not a regular file", nil},
		{"dangling link", filepath.Join(dir, "dangling"), "symbolic link to a missing file", fs.ErrNotExist},
	} {
		t.Run(c.name, func(t *testing.T) {
			changed, err := WriteIfChanged(c.path, []byte("new\n"))
			if err == nil || changed {
				t.Fatalf("changed %v, err %v", changed, err)
			}
			if !strings.Contains(err.Error(), c.path) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not name the path and say %q", err, c.want)
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Fatalf("error %q is not %v", err, c.is)
			}
		})
	}
	if got := readString(t, regular); got != "keep\n" {
		t.Fatalf("the file holds %q", got)
	}
	if names := dirEntries(t, dir); len(names) != 3 {
		t.Fatalf("directory holds %v", names)
	}
}

// childWriteEnv names the file the child process of
// TestWriteIfChangedReadOnlyDir tries to replace.
const childWriteEnv = "TURN_TEST_WRITE_READ_ONLY"

// TestWriteIfChangedReadOnlyDir checks that a directory the writer may not
// write to leaves the old file as it was. As root, which permission bits do
// not stop, the write runs in a child process as nobody.
func TestWriteIfChangedReadOnlyDir(t *testing.T) {
	if path := os.Getenv(childWriteEnv); path != "" {
		changed, err := WriteIfChanged(path, []byte("new\n"))
		if err == nil || changed || !errors.Is(err, fs.ErrPermission) {
			t.Fatalf("changed %v, err %v; want a permission error", changed, err)
		}
		t.Logf("uid %d: %v", os.Geteuid(), err)
		return
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "turn-stun-servers.xml")
	oldFile(t, path, "old\n")
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	before := fileStat(t, path)
	if os.Geteuid() == 0 {
		writeAsNobody(t, path)
	} else {
		if err := os.Chmod(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(dir, 0o755) })
		changed, err := WriteIfChanged(path, []byte("new\n"))
		if err == nil || changed || !errors.Is(err, fs.ErrPermission) {
			t.Fatalf("changed %v, err %v; want a permission error", changed, err)
		}
	}
	after := fileStat(t, path)
	if got := readString(t, path); got != "old\n" || after.Ino != before.Ino || after.Mtim != before.Mtim {
		t.Fatalf("old file changed: %q, inode %d→%d", got, before.Ino, after.Ino)
	}
	if names := dirEntries(t, dir); len(names) != 1 {
		t.Fatalf("directory holds %v", names)
	}
}

// writeAsNobody runs this test binary as nobody to replace path, whose
// directory belongs to root. It skips when the machine cannot run a process
// as nobody from the test's temporary directories.
func writeAsNobody(t *testing.T, path string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// Copy the binary where nobody can run it, and open the way to path.
	binDir := t.TempDir()
	bin := filepath.Join(binDir, "turn.test")
	src, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, src, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{binDir, filepath.Dir(binDir), filepath.Dir(path), filepath.Dir(filepath.Dir(path))} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "-test.run=^TestWriteIfChangedReadOnlyDir$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), childWriteEnv+"="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil && strings.Contains(string(out), "--- PASS: TestWriteIfChangedReadOnlyDir"):
		t.Logf("as nobody:\n%s", out)
	case errors.As(err, &exit) && strings.Contains(string(out), "--- FAIL: TestWriteIfChangedReadOnlyDir"):
		t.Fatalf("as nobody:\n%s", out)
	default:
		t.Skipf("cannot run the test binary as nobody here: %v\n%s", err, out)
	}
}

func TestBackupUnparsable(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "turn-stun-servers.xml")
	oldFile(t, path, "<beans><broken\n")
	before := fileStat(t, path)
	// The name uses now's wall clock in now's location.
	now := time.Date(2026, 11, 20, 8, 5, 9, 0, time.FixedZone("CET", 3600))

	want := []string{path + ".bak-20261120080509", path + ".bak-20261120080509-1", path + ".bak-20261120080509-2"}
	contents := []string{"<beans><broken\n", "second\n", "third\n"}
	for i := range want {
		if i > 0 {
			if err := os.WriteFile(path, []byte(contents[i]), 0o640); err != nil {
				t.Fatal(err)
			}
		}
		backup, err := BackupUnparsable(path, now)
		if err != nil {
			t.Fatal(err)
		}
		if backup != want[i] {
			t.Fatalf("backup %d at %s, want %s", i, backup, want[i])
		}
		st := fileStat(t, backup)
		if st.Mode != before.Mode || st.Uid != before.Uid || st.Gid != before.Gid {
			t.Fatalf("backup mode/owner %o %d:%d, want %o %d:%d", st.Mode, st.Uid, st.Gid, before.Mode, before.Uid, before.Gid)
		}
	}
	// Every backup kept what it copied; none was overwritten.
	for i, b := range want {
		if got := readString(t, b); got != contents[i] {
			t.Fatalf("%s holds %q, want %q", b, got, contents[i])
		}
	}
	if got := readString(t, path); got != "third\n" {
		t.Fatalf("the original holds %q", got)
	}
}

func TestBackupUnparsableErrors(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 11, 20, 8, 5, 9, 0, time.UTC)
	missing := filepath.Join(dir, "missing.xml")
	if _, err := BackupUnparsable(missing, now); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := BackupUnparsable(dir, now); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("directory: %v", err)
	}
	regular := filepath.Join(dir, "regular")
	oldFile(t, regular, "x")
	if _, err := BackupUnparsable(filepath.Join(regular, "turn-stun-servers.xml"), now); !errors.Is(err, syscall.ENOTDIR) {
		t.Fatalf("under a regular file: %v", err)
	}
	if names := dirEntries(t, dir); len(names) != 1 {
		t.Fatalf("directory holds %v", names)
	}
}
