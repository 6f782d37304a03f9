package boottest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// Bounds of the container's steps.
const (
	bootWithin = 90 * time.Second // systemd up and its start-up jobs done
	execWithin = 30 * time.Second // one command in the container
	haltWithin = 30 * time.Second // a halt asked with SIGTERM to systemd-nspawn
)

// unavailable skips the test because something it needs is missing, or
// fails it when running on CI (internal/testenv's convention).
func unavailable(t *testing.T, msg string) {
	t.Helper()
	msg += " (run .ci/run, which installs what this test needs)"
	if os.Getenv("CI") == "" {
		t.Skip(msg)
	}
	t.Fatalf("%s; CI is set: failing instead of skipping", msg)
}

// requireBoot checks what booting a container takes: root (mounts, and
// systemd-nspawn), systemd-nspawn (Debian package systemd-container),
// systemd, nsenter, chroot and dpkg.
func requireBoot(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the package and boots a container")
	}
	if os.Geteuid() != 0 {
		unavailable(t, "the boot test mounts an overlay and runs systemd-nspawn: it runs as root only")
	}
	for tool, pkg := range map[string]string{
		"systemd-nspawn": "systemd-container",
		"nsenter":        "util-linux",
		"chroot":         "coreutils",
		"dpkg":           "dpkg",
		"journalctl":     "systemd",
		"go":             "golang (the go tool builds the package)",
	} {
		if _, err := exec.LookPath(tool); err != nil {
			unavailable(t, tool+" is not installed: apt-get install "+pkg)
		}
	}
	if _, err := os.Stat("/lib/systemd/systemd"); err != nil {
		unavailable(t, "systemd is not installed (no /lib/systemd/systemd): apt-get install systemd")
	}
}

// container is a systemd-nspawn container that boots the host's own root
// through an overlay: its changes (the package, its configuration, the
// journal) go to a tmpfs and vanish with it, the host's root stays as it
// is. It shares the host's network, so its units reach servers on the
// host's loopback.
type container struct {
	t    *testing.T
	name string // the machine name
	root string // the merged root the container boots

	machineID string // its own, so its journal is apart from the host's

	cmd    *exec.Cmd
	out    testenv.Buffer // systemd-nspawn's output: the container's console
	exited chan struct{}
	err    error // cmd.Wait's, once exited is closed
	leader int   // the container's PID 1, as the host numbers it
}

// newContainer mounts a tmpfs and on it an overlay whose lower layer is the
// host's root. The upper layer must not be on the root's file system
// (overlayfs refuses overlapping layers), hence the tmpfs.
func newContainer(t *testing.T) *container {
	t.Helper()
	sweepStale(t)
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", dirPrefix, os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs last: only the empty mount point is
	// removed, never what an overlay still mounted shows.
	t.Cleanup(func() { _ = os.Remove(dir) })
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "mode=0755"); err != nil {
		t.Fatalf("mount a tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() { unmount(t, dir) })
	c := &container{t: t, name: fmt.Sprintf("bbb-boottest-%d", os.Getpid()), root: filepath.Join(dir, "root"), exited: make(chan struct{})}
	upper, work := filepath.Join(dir, "upper"), filepath.Join(dir, "work")
	for _, d := range []string{upper, work, c.root} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts := "lowerdir=/,upperdir=" + upper + ",workdir=" + work
	if err := syscall.Mount("overlay", c.root, "overlay", 0, opts); err != nil {
		unavailable(t, fmt.Sprintf("mount an overlay of / on %s (%s): %v: the kernel needs overlayfs", c.root, opts, err))
	}
	t.Cleanup(func() { unmount(t, c.root) })
	return c
}

// dirPrefix starts the name of a container's directory in os.TempDir(),
// followed by the PID of the test binary that owns it.
const dirPrefix = "bbb-agent-boottest-"

// sweepStale unmounts and removes what a test binary that died without its
// cleanups (killed, timed out) left: its container got SIGTERM from the
// kernel and halted, but its mounts stay.
func sweepStale(t *testing.T) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		pid, err := strconv.Atoi(strings.Split(strings.TrimPrefix(filepath.Base(dir), dirPrefix), "-")[0])
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		t.Logf("removing %s, left by test binary %d", dir, pid)
		_ = syscall.Unmount(filepath.Join(dir, "root"), syscall.MNT_DETACH)
		_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		_ = os.Remove(filepath.Join(dir, "root"))
		_ = os.Remove(dir)
	}
}

// unmount unmounts path; a mount still busy is detached.
func unmount(t *testing.T, path string) {
	if err := syscall.Unmount(path, 0); err != nil {
		t.Logf("unmount %s: %v; detaching it", path, err)
		if err := syscall.Unmount(path, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", path, err)
		}
	}
}

// install prepares the root as an image build would: the package installed
// with dpkg in a chroot (no systemd runs there, so its maintainer scripts
// start nothing), the node's configuration in a drop-in, the service
// enabled. The host's own services are left out of the boot (a container
// sharing the host's network must not start its BIND or PostgreSQL), the
// machine gets an ID of its own and a persistent journal that the test reads
// after the container is gone.
func (c *container) install(deb, config string) {
	t := c.t
	t.Helper()
	data, err := os.ReadFile(deb)
	if err != nil {
		t.Fatal(err)
	}
	c.writeFile("bbb-agent.deb", data, 0o644)
	c.chroot("dpkg", "-i", "/bbb-agent.deb")
	if err := os.Remove(filepath.Join(c.root, "bbb-agent.deb")); err != nil {
		t.Fatal(err)
	}
	// The configuration is the package's template and the test's drop-in
	// alone, whatever the host has in /etc/bbb-agent.
	template, err := os.ReadFile(filepath.Join(c.root, "usr/share/bbb-agent/agent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c.writeFile("etc/bbb-agent/agent.yaml", template, 0o600)
	if err := os.RemoveAll(filepath.Join(c.root, "etc/bbb-agent/agent.d")); err != nil {
		t.Fatal(err)
	}
	c.writeFile("etc/bbb-agent/agent.d/50-boottest.yaml", []byte(config), 0o600)

	wants, err := filepath.Glob(filepath.Join(c.root, "etc/systemd/system/*.wants/*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range wants {
		if err := os.Remove(w); err != nil {
			t.Fatal(err)
		}
	}
	c.writeFile("etc/cloud/cloud-init.disabled", nil, 0o644)
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	c.machineID = hex.EncodeToString(id)
	c.writeFile("etc/machine-id", []byte(c.machineID+"\n"), 0o444)
	if err := os.MkdirAll(filepath.Join(c.root, "var/log/journal"), 0o755); err != nil {
		t.Fatal(err)
	}
	c.chroot("systemctl", "enable", "bbb-agent.service")
}

func (c *container) writeFile(name string, data []byte, mode os.FileMode) {
	c.t.Helper()
	path := filepath.Join(c.root, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		c.t.Fatal(err)
	}
}

// chroot runs a command in the root before the boot.
func (c *container) chroot(args ...string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), execWithin)
	defer cancel()
	cmd := exec.CommandContext(ctx, "chroot", append([]string{c.root}, args...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C", "DEBIAN_FRONTEND=noninteractive"}
	if out, err := cmd.CombinedOutput(); err != nil {
		c.t.Fatalf("chroot %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// boot starts systemd-nspawn --boot and waits until the container's systemd
// has finished starting up.
func (c *container) boot() {
	t := c.t
	t.Helper()
	c.cmd = exec.Command("systemd-nspawn", "--boot", "--directory", c.root, "--machine", c.name,
		// No machined and no systemd on the host to register with or to
		// ask for a scope: the container stays in the test's cgroup.
		"--register=no", "--keep-unit",
		"--link-journal=no", "--console=read-only")
	c.cmd.Stdout, c.cmd.Stderr = &c.out, &c.out
	// A SIGTERM halts the container; the kernel sends it if the test
	// binary dies, so no container outlives it.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	// Pdeathsig fires when the OS thread that started the process exits;
	// a fresh goroutine is never locked to its thread.
	started := make(chan error)
	go func() { started <- c.cmd.Start() }()
	if err := <-started; err != nil {
		t.Fatalf("systemd-nspawn: %v", err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(c.stop)

	// systemd as PID 1, listening on its private bus, which systemctl
	// talks to.
	testenv.Eventually(t, bootWithin, "systemd as the container's PID 1, with its private bus", func() bool {
		select {
		case <-c.exited:
			t.Fatalf("systemd-nspawn exited before systemd ran: %v\n%s", c.err, c.out.String())
		default:
		}
		for _, pid := range children(c.cmd.Process.Pid) {
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			if strings.TrimSpace(string(comm)) != "systemd" {
				continue
			}
			if _, err := os.Stat(fmt.Sprintf("/proc/%d/root/run/systemd/private", pid)); err == nil {
				c.leader = pid
				return true
			}
		}
		return false
	})
	out, _ := c.exec(bootWithin, "systemctl", "is-system-running", "--wait")
	switch state := strings.TrimSpace(out); state {
	case "running":
	case "degraded":
		failed, _ := c.exec(execWithin, "systemctl", "--failed", "--no-legend")
		t.Logf("the container booted degraded; failed units:\n%s", failed)
	default:
		t.Fatalf("the container's systemd: %q after booting\nconsole:\n%s", state, c.out.String())
	}
}

// children are the host PIDs of pid's children.
func children(pid int) []int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		if n, err := strconv.Atoi(f); err == nil {
			pids = append(pids, n)
		}
	}
	return pids
}

// exec runs a command inside the running container, in all its namespaces,
// and returns its output (standard output and error).
func (c *container) exec(within time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--target", strconv.Itoa(c.leader), "--all", "--"}, args...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s in the container: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// run is exec that fails the test on an error.
func (c *container) run(args ...string) string {
	c.t.Helper()
	out, err := c.exec(execWithin, args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// show is `systemctl show` of a unit's properties.
func (c *container) show(unit string, props ...string) map[string]string {
	c.t.Helper()
	args := []string{"systemctl", "show", unit}
	for _, p := range props {
		args = append(args, "--property", p)
	}
	got := map[string]string{}
	for _, line := range strings.Split(c.run(args...), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			got[k] = v
		}
	}
	return got
}

// wait waits for the container to stop by itself and returns
// systemd-nspawn's exit code.
func (c *container) wait(within time.Duration) int {
	c.t.Helper()
	select {
	case <-c.exited:
		return c.cmd.ProcessState.ExitCode()
	case <-time.After(within):
		c.t.Fatalf("the container still runs after %s\nconsole:\n%s", within, c.out.String())
		return -1
	}
}

// stop halts a container still running (SIGTERM to systemd-nspawn), and
// kills it if the halt takes too long: SIGKILL to its PID 1 ends every
// process of its PID namespace.
func (c *container) stop() {
	select {
	case <-c.exited:
	default:
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(haltWithin):
			c.t.Errorf("the container did not halt within %s of SIGTERM: killing it", haltWithin)
			if c.leader > 0 {
				_ = syscall.Kill(c.leader, syscall.SIGKILL)
			}
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
	}
	if c.t.Failed() {
		c.t.Logf("the container's console:\n%s", c.out.String())
	}
}

// journal is the container's persistent journal of one unit (its own lines
// and systemd's about it), read from the
// overlay after the container is gone.
func (c *container) journal(unit string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), execWithin)
	defer cancel()
	out, err := exec.CommandContext(ctx, "journalctl", "--directory", filepath.Join(c.root, "var/log/journal", c.machineID),
		"--no-pager", "--output", "cat", "--unit", unit).CombinedOutput()
	if err != nil {
		c.t.Fatalf("journalctl of the container's %s: %v\n%s", unit, err, out)
	}
	return string(out)
}
