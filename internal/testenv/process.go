package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// serverUser is who servers run as: nobody when the tests run as root
// (PostgreSQL and others refuse to run as root), else the test's own user
// (a nil credential).
var serverUser = sync.OnceValues(func() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		return nil, fmt.Errorf("testenv: running as root and no unprivileged user to run servers as: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("testenv: user nobody: %w", err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("testenv: user nobody: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
})

func chownToServerUser(path string) error {
	cred, err := serverUser()
	if err != nil || cred == nil {
		return err
	}
	if err := os.Chown(path, int(cred.Uid), int(cred.Gid)); err != nil {
		return fmt.Errorf("testenv: %w", err)
	}
	return nil
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
// Another process may take it before the server binds it; the server's
// start-up then fails with the bind error in its log.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("testenv: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// A process is a program testenv started, with its output in a log file and
// its pid in a pid file in this test binary's directory.
type process struct {
	name string
	cmd  *exec.Cmd
	sig  syscall.Signal // asks it to stop
	log  string
	done chan struct{} // closed once it has exited
	err  error         // its exit, from cmd.Wait; read after done
}

// launch starts path with args in dir, as the server user, in a process group
// of its own (a Ctrl-C at the terminal reaches the test binary only). sig asks
// the process to stop; the kernel sends it too if the test binary dies.
func launch(name, dir string, sig syscall.Signal, path string, args ...string) (*process, error) {
	r, err := rootDir()
	if err != nil {
		return nil, err
	}
	cred, err := serverUser()
	if err != nil {
		return nil, err
	}
	p := &process{name: name, sig: sig, log: filepath.Join(r, name+".log"), done: make(chan struct{})}
	log, err := os.OpenFile(p.log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("testenv: %w", err)
	}
	defer log.Close()
	p.cmd = exec.Command(path, args...)
	p.cmd.Dir = dir
	p.cmd.Stdout = log
	p.cmd.Stderr = log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: sig}

	// Pdeathsig fires when the OS thread that started the process exits. Go
	// ends a thread only when a goroutine locked to it (runtime.LockOSThread)
	// returns, so start from a fresh goroutine, which is never locked.
	started := make(chan error)
	go func() { started <- p.cmd.Start() }()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("testenv: %s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	pid := strconv.Itoa(p.cmd.Process.Pid)
	if err := os.WriteFile(filepath.Join(r, name+".pid"), []byte(pid+"\n"), 0o644); err != nil {
		p.kill()
		return nil, fmt.Errorf("testenv: %w", err)
	}
	return p, nil
}

// run runs a program to completion, such as a server's setup step.
func run(ctx context.Context, name, dir, path string, args ...string) error {
	p, err := launch(name, dir, syscall.SIGKILL, path, args...)
	if err != nil {
		return err
	}
	select {
	case <-p.done:
		if p.err != nil {
			return p.failure(p.err)
		}
		return nil
	case <-ctx.Done():
		p.kill()
		return p.failure(ctx.Err())
	}
}

// start starts a server and waits until ready returns nil, polling it until
// ctx ends. Main stops the server.
func start(ctx context.Context, name, dir string, sig syscall.Signal, ready func(context.Context) error, path string, args ...string) error {
	p, err := startOwn(ctx, name, dir, sig, ready, path, args...)
	if err != nil {
		return err
	}
	mu.Lock()
	procs = append(procs, p)
	mu.Unlock()
	return nil
}

// startOwn is start for a server whose caller stops it (p.stop) itself.
func startOwn(ctx context.Context, name, dir string, sig syscall.Signal, ready func(context.Context) error, path string, args ...string) (*process, error) {
	p, err := launch(name, dir, sig, path, args...)
	if err != nil {
		return nil, err
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		probeCtx, cancel := context.WithTimeout(ctx, time.Second)
		notReady := ready(probeCtx)
		cancel()
		if notReady == nil {
			return p, nil
		}
		select {
		case <-p.done:
			return nil, p.failure(fmt.Errorf("exited before it was ready: %s", p.cmd.ProcessState))
		case <-ctx.Done():
			p.kill()
			return nil, p.failure(fmt.Errorf("not ready: %w (last attempt: %v)", ctx.Err(), notReady))
		case <-tick.C:
		}
	}
}

// stopWithTest is the Stop of a server that one test owns: it takes p off
// the servers Main stops and stops it with stop, once; it runs when the
// test ends too.
func stopWithTest(t testing.TB, p *process, stop func(*process) error) func() {
	var once sync.Once
	f := func() {
		once.Do(func() {
			mu.Lock()
			procs = slices.DeleteFunc(procs, func(q *process) bool { return q == p })
			mu.Unlock()
			if err := stop(p); err != nil {
				t.Errorf("%v", err)
			}
		})
	}
	t.Cleanup(f)
	return f
}

// stopGracefully stops p with its signal, waiting stopTimeout.
func stopGracefully(p *process) error { return p.stop(stopTimeout) }

// stop asks the process to stop and kills its process group if it has not
// stopped within timeout.
func (p *process) stop(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.failure(fmt.Errorf("exited while tests ran: %s", p.cmd.ProcessState))
	default:
	}
	if err := p.cmd.Process.Signal(p.sig); err != nil {
		return p.failure(err)
	}
	select {
	case <-p.done:
		if p.err != nil {
			return p.failure(p.err)
		}
		return nil
	case <-time.After(timeout):
		p.kill()
		return p.failure(fmt.Errorf("did not stop within %s of %s; killed", timeout, p.sig))
	}
}

// kill kills the process group and waits for the process to exit.
func (p *process) kill() {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// failure describes how the process failed, with the end of its log.
func (p *process) failure(err error) error {
	const max = 4096
	b, _ := os.ReadFile(p.log)
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return fmt.Errorf("testenv: %s: %w\n--- end of %s ---\n%s", p.name, err, p.log, b)
}
