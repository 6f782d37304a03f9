// Package testenv is the one test harness of the project. It owns the real
// servers that tests start on loopback (PostgreSQL, BIND 9, coturn: one
// throwaway instance of each per test binary, started on first use and
// stopped by Main; nginx, one for each test that asks; one file each,
// built on the process helper in process.go); it builds and starts the project's own commands
// (commands.go: StartBalancer, StartSim, StartAgent, with their ready lines,
// CleanEnv and Run); and it holds the one fake clock (NewClock) and the one
// polling wait (Eventually).
//
// Harness pieces that import the project's packages live beside those
// packages, since those packages' own tests import testenv and testenv
// importing them would be an import cycle: balancer/balancertest (a
// balancer in the test's process), bbb/sim/simtest (a bbb-sim binary with
// its clients) and internal/emulate/awsemu (a real AWS SDK client pointed at
// an emulation).
//
// Every package whose tests use testenv calls Main from its TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
// A server's files (data, sockets, log, pid file) live in one directory per
// test binary, os.TempDir()/bbb-agent-testenv-<pid>-*, removed by Main. If a
// test binary dies without running Main (killed, timed out), the kernel stops
// its servers (Pdeathsig), and the next test binary that uses testenv kills
// whatever still runs from a directory whose owner is gone and deletes that
// directory.
//
// When a server is not installed, its tests skip, except when the CI
// environment variable is set: then they fail, so CI never skips silently.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	dirPrefix    = "bbb-agent-testenv-"
	startTimeout = 30 * time.Second // for each start-up step of a server
	stopTimeout  = 10 * time.Second
)

// errNotInstalled marks a server whose programs are missing from the machine.
var errNotInstalled = errors.New("not installed")

var (
	mainCalled atomic.Bool

	mu    sync.Mutex
	root  string     // this test binary's directory, made on first use
	procs []*process // running servers, in start order
)

// Main runs the tests, then stops every server they started and removes
// their files. Call it from TestMain.
func Main(m *testing.M) {
	mainCalled.Store(true)
	code := m.Run()
	if err := shutdown(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func requireMain(t testing.TB) {
	t.Helper()
	if !mainCalled.Load() {
		t.Fatal("testenv: add `func TestMain(m *testing.M) { testenv.Main(m) }` to this package's tests")
	}
}

// unavailable skips the test because a server is not installed, or fails it
// when running on CI.
func unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") == "" {
		t.Skip(err)
		return
	}
	t.Fatalf("%v (CI is set: failing instead of skipping)", err)
}

func shutdown() error {
	mu.Lock()
	defer mu.Unlock()
	var errs []error
	for i := len(procs) - 1; i >= 0; i-- {
		errs = append(errs, procs[i].stop(stopTimeout))
	}
	procs = nil
	if root != "" {
		errs = append(errs, os.RemoveAll(root))
		root = ""
	}
	return errors.Join(errs...)
}

// makeDir creates the directory name in this test binary's directory, owned
// by the user the servers run as.
func makeDir(name string) (string, error) {
	r, err := rootDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(r, name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("testenv: %w", err)
	}
	return dir, chownToServerUser(dir)
}

func rootDir() (string, error) {
	mu.Lock()
	defer mu.Unlock()
	if root != "" {
		return root, nil
	}
	sweepStale()
	dir, err := os.MkdirTemp("", dirPrefix+strconv.Itoa(os.Getpid())+"-*")
	if err != nil {
		return "", fmt.Errorf("testenv: %w", err)
	}
	if err := chownToServerUser(dir); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	root = dir
	return root, nil
}

// sweepStale cleans up after test binaries that died without running Main:
// for each of their directories it kills the process groups named in the
// *.pid files that still run inside that directory, then deletes it. It is
// best effort; what it cannot remove, a later run tries again.
func sweepStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		owner, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(dir), dirPrefix), "-")
		pid, err := strconv.Atoi(owner)
		if err != nil || alive(pid) {
			continue
		}
		pidFiles, _ := filepath.Glob(filepath.Join(dir, "*.pid"))
		for _, f := range pidFiles {
			b, _ := os.ReadFile(f)
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				continue
			}
			// The working directory proves the pid was not reused by an unrelated process.
			cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
			if err == nil && strings.HasPrefix(cwd, dir+string(filepath.Separator)) {
				syscall.Kill(-pid, syscall.SIGKILL)
			}
		}
		os.RemoveAll(dir)
	}
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
