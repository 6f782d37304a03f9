package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"
)

// buildTimeout bounds one go build of the commands a test runs.
const buildTimeout = 3 * time.Minute

// DefaultReadyWithin is how long Start waits for a process's ready line
// unless told otherwise.
const DefaultReadyWithin = 10 * time.Second

// A build is one main package compiled for this test binary.
type build struct {
	once sync.Once
	path string
	err  error
}

var (
	buildsMu sync.Mutex
	builds   = map[string]*build{}
)

// Build compiles the main packages at the given import paths (such as
// github.com/bbb-agent/bbb-agent/cmd/bbb-sim) and returns their executables,
// in the same order. Each package is compiled once per test binary, into
// this test binary's directory, which Main removes; the packages of one call
// compile in parallel. Without a go tool the test skips (fails on CI).
func Build(t testing.TB, pkgs ...string) []string {
	t.Helper()
	requireMain(t)
	gotool, err := exec.LookPath("go")
	if err != nil {
		unavailable(t, fmt.Errorf("testenv: no go tool in PATH to build %v with: %w", pkgs, errNotInstalled))
		return nil
	}
	bs := make([]*build, len(pkgs))
	buildsMu.Lock()
	for i, pkg := range pkgs {
		if builds[pkg] == nil {
			builds[pkg] = &build{}
		}
		bs[i] = builds[pkg]
	}
	buildsMu.Unlock()

	var wg sync.WaitGroup
	for i, b := range bs {
		wg.Go(func() { b.once.Do(func() { b.path, b.err = compile(gotool, pkgs[i]) }) })
	}
	wg.Wait()
	paths := make([]string, len(bs))
	var errs []error
	for i, b := range bs {
		paths[i] = b.path
		errs = append(errs, b.err)
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return paths
}

// compile builds one main package into its own directory below this test
// binary's directory, named after the package's last path element.
func compile(gotool, pkg string) (string, error) {
	r, err := rootDir()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp(r, "bin-")
	if err != nil {
		return "", fmt.Errorf("testenv: %w", err)
	}
	out := filepath.Join(dir, path.Base(pkg))
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	if msg, err := exec.CommandContext(ctx, gotool, "build", "-o", out, pkg).CombinedOutput(); err != nil {
		return "", fmt.Errorf("testenv: go build %s: %v\n%s", pkg, err, msg)
	}
	return out, nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago, for a
// test that must know a server's address before the server starts.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// Cmd says how to Start a process.
type Cmd struct {
	// Name names the process in messages; the executable's base name if empty.
	Name string
	Path string
	Args []string
	// Env is the process's whole environment; nil means the test binary's.
	Env []string
	// Ready matches the line of output (standard output or error) that says
	// the process is ready; Start waits for it and keeps its first submatch
	// (or the whole line) in Proc.Ready. Nil: Start does not wait.
	Ready *regexp.Regexp
	// ReadyWithin bounds the wait for Ready; DefaultReadyWithin if zero.
	ReadyWithin time.Duration
}

// Proc is a process a test started with Start. It runs as the test binary's
// user, in a process group of its own; the test's cleanup kills it if it
// still runs, and the kernel kills it if the test binary dies. Its output is
// kept in memory and logged when the test fails.
type Proc struct {
	Name string
	// Ready is what Cmd.Ready matched, such as the URL the process listens on.
	Ready string

	cmd    *exec.Cmd
	out    *output
	exited chan struct{}
	err    error // cmd.Wait's, once exited is closed
}

// Start starts a process and, with Cmd.Ready, waits until it prints its
// ready line; it fails the test if the process exits first or is not ready
// in time.
func Start(t testing.TB, c Cmd) *Proc {
	t.Helper()
	name := c.Name
	if name == "" {
		name = filepath.Base(c.Path)
	}
	p := &Proc{Name: name, cmd: exec.Command(c.Path, c.Args...), exited: make(chan struct{}),
		out: &output{ready: c.Ready, found: make(chan string, 1)}}
	p.cmd.Env = c.Env
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Pdeathsig fires when the OS thread that started the process exits; a
	// fresh goroutine is never locked to its thread, so the thread lives on.
	started := make(chan error)
	go func() { started <- p.cmd.Start() }()
	if err := <-started; err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("%s output:\n%s", p.Name, p.Output())
		}
	})
	if c.Ready == nil {
		return p
	}
	within := c.ReadyWithin
	if within <= 0 {
		within = DefaultReadyWithin
	}
	select {
	case p.Ready = <-p.out.found:
	case <-p.exited:
		t.Fatalf("%s exited before it was ready: %v\n%s", name, p.err, p.Output())
	case <-time.After(within):
		t.Fatalf("%s did not print a line matching %q within %s\n%s", name, c.Ready, within, p.Output())
	}
	return p
}

// Output is everything the process has printed so far.
func (p *Proc) Output() string { return p.out.String() }

// Pid is the process ID.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Exited is closed once the process has exited.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// Signal sends sig to the process.
func (p *Proc) Signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

// Kill kills the process group with SIGKILL, if the process still runs, and
// waits for the process to exit.
func (p *Proc) Kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
}

// Wait waits at most within for the process to exit and returns its exit
// code (-1 if a signal ended it); it fails the test if the process still runs.
func (p *Proc) Wait(t testing.TB, within time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(within):
		t.Fatalf("%s still runs after %s", p.Name, within)
		return -1
	}
}

// Stop sends SIGTERM and waits at most within for the exit; it returns the
// exit code.
func (p *Proc) Stop(t testing.TB, within time.Duration) int {
	t.Helper()
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("%s: SIGTERM: %v", p.Name, err)
	}
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(within):
		t.Fatalf("%s did not exit within %s of SIGTERM", p.Name, within)
		return -1
	}
}

// output collects a process's standard output and error, and hands over the
// first match of ready.
type output struct {
	mu      sync.Mutex
	all     bytes.Buffer
	partial []byte
	ready   *regexp.Regexp
	found   chan string
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.all.Write(p)
	if o.ready == nil {
		return len(p), nil
	}
	o.partial = append(o.partial, p...)
	for {
		i := bytes.IndexByte(o.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(o.partial[:i])
		o.partial = o.partial[i+1:]
		if m := o.ready.FindStringSubmatch(line); m != nil {
			v := m[0]
			if len(m) > 1 {
				v = m[1]
			}
			o.found <- v
			o.ready, o.partial = nil, nil
			return len(p), nil
		}
	}
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.all.String()
}
