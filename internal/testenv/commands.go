package testenv

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// The project's three commands, by import path, for Build.
const (
	cmdPrefix   = "github.com/bbb-agent/bbb-agent/cmd/"
	AgentPkg    = cmdPrefix + "bbb-agent"
	BalancerPkg = cmdPrefix + "bbb-balancer"
	SimPkg      = cmdPrefix + "bbb-sim"
)

// The ready lines of the commands: the one place a test learns that a
// command it started listens, and where.
var (
	// BalancerReady matches bbb-balancer serve's "listening" log line; its
	// submatch is the URL it serves.
	BalancerReady = regexp.MustCompile(`msg="bbb-balancer listening" url=(https?://\S+)`)
	// SimReady matches the line bbb-sim prints on standard output once it
	// listens; its submatch is the server URL.
	SimReady = regexp.MustCompile(`^listening on (http://\S+)$`)
	// AgentReady matches bbb-agent run's first log line; its submatch is the
	// node name.
	AgentReady = regexp.MustCompile(`msg="bbb-agent starting" node=(\S+)`)
)

// Commands are the three executables, built once per test binary.
type Commands struct{ Agent, Balancer, Sim string }

// BuildCommands builds bbb-agent, bbb-balancer and bbb-sim (once per test
// binary). With -short the test skips: it builds and runs binaries.
func BuildCommands(t testing.TB) Commands {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs binaries")
	}
	p := Build(t, AgentPkg, BalancerPkg, SimPkg)
	return Commands{Agent: p[0], Balancer: p[1], Sim: p[2]}
}

// CleanEnv is the test binary's environment without the commands' own
// variables (BBB_AGENT_*, BBB_BALANCER_*, BBB_SIM_*), so a developer's shell
// does not leak into them, plus extra.
func CleanEnv(extra ...string) []string {
	return append(slices.DeleteFunc(os.Environ(), commandVar), extra...)
}

// commandVar says whether kv (NAME=value or NAME) is one of the commands' own
// variables.
func commandVar(kv string) bool {
	return strings.HasPrefix(kv, "BBB_AGENT_") || strings.HasPrefix(kv, "BBB_BALANCER_") || strings.HasPrefix(kv, "BBB_SIM_")
}

// RunTimeout bounds every Run.
const RunTimeout = 10 * time.Second

// Result is one run of a command that exits by itself.
type Result struct {
	Stdout, Stderr string
	Code           int
}

func (r Result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
}

// Run runs bin to completion, for at most RunTimeout, in CleanEnv(env...);
// it fails the test if bin cannot start or still runs at the timeout. A
// non-zero exit is the Result's Code, not a failure.
func Run(t testing.TB, env []string, bin string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), RunTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = CleanEnv(env...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := Result{Stdout: stdout.String(), Stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("%s %s: still running after %s\n%s", filepath.Base(bin), strings.Join(args, " "), RunTimeout, r)
	case errors.As(err, &exit):
		r.Code = exit.ExitCode()
	case err != nil:
		t.Fatalf("%s %s: %v", filepath.Base(bin), strings.Join(args, " "), err)
	}
	return r
}

// BalancerOpts are the flags of one `bbb-balancer serve`.
type BalancerOpts struct {
	Name string // in messages; "bbb-balancer serve" if empty
	Bin  string // the executable; built with Build if empty
	// Listen is --listen; 127.0.0.1:0 (a free loopback port) if empty.
	Listen                         string
	Secret, AgentToken, AdminToken string
	DataDir                        string        // --data-dir; t.TempDir() if empty
	Args                           []string      // further flags
	Env                            []string      // further environment, on CleanEnv
	ReadyWithin                    time.Duration // DefaultReadyWithin if zero
}

// StartBalancer starts `bbb-balancer serve` and waits for its ready line;
// the Proc's Ready is the URL it serves.
func StartBalancer(t testing.TB, o BalancerOpts) *Proc {
	t.Helper()
	if o.DataDir == "" {
		o.DataDir = t.TempDir()
	}
	args := append([]string{"serve", "--listen", cmp.Or(o.Listen, loopback), "--secret", o.Secret,
		"--agent-token", o.AgentToken, "--admin-token", o.AdminToken, "--data-dir", o.DataDir}, o.Args...)
	return startCommand(t, cmp.Or(o.Name, "bbb-balancer serve"), o.Bin, BalancerPkg, BalancerReady, args, o.Env, o.ReadyWithin)
}

// SimOpts are the flags of one bbb-sim.
type SimOpts struct {
	Name        string        // in messages; "bbb-sim" if empty
	Bin         string        // the executable; built with Build if empty
	Listen      string        // --listen; 127.0.0.1:0 if empty
	Secret      string        // --secret; left out if empty (the environment may give it)
	Args        []string      // further flags
	Env         []string      // further environment, on CleanEnv
	ReadyWithin time.Duration // DefaultReadyWithin if zero
}

// StartSim starts bbb-sim and waits for its ready line; the Proc's Ready is
// its server URL.
func StartSim(t testing.TB, o SimOpts) *Proc {
	t.Helper()
	args := []string{"--listen", cmp.Or(o.Listen, loopback)}
	if o.Secret != "" {
		args = append(args, "--secret", o.Secret)
	}
	return startCommand(t, cmp.Or(o.Name, "bbb-sim"), o.Bin, SimPkg, SimReady, append(args, o.Args...), o.Env, o.ReadyWithin)
}

// AgentOpts are the command line of one bbb-agent process that runs the
// agent (`bbb-agent run ...`, its flags in Args as the test wants them).
type AgentOpts struct {
	Name        string // in messages; "bbb-agent" if empty
	Bin         string // the executable; built with Build if empty
	Args        []string
	Env         []string      // further environment, on CleanEnv
	ReadyWithin time.Duration // DefaultReadyWithin if zero
}

// StartAgent starts bbb-agent with Args and waits for its first log line;
// the Proc's Ready is the node name it runs as.
func StartAgent(t testing.TB, o AgentOpts) *Proc {
	t.Helper()
	return startCommand(t, cmp.Or(o.Name, "bbb-agent"), o.Bin, AgentPkg, AgentReady, o.Args, o.Env, o.ReadyWithin)
}

// loopback is the --listen address of a free port on 127.0.0.1.
const loopback = "127.0.0.1:0"

// startCommand starts one of the commands, bin or else pkg built, in
// CleanEnv(env...), and waits for its ready line.
func startCommand(t testing.TB, name, bin, pkg string, ready *regexp.Regexp, args, env []string, within time.Duration) *Proc {
	t.Helper()
	if bin == "" {
		bin = Build(t, pkg)[0]
	}
	return Start(t, Cmd{Name: name, Path: bin, Args: args, Env: CleanEnv(env...), Ready: ready, ReadyWithin: within})
}

// ClearCommandEnv empties the commands' own variables (as CleanEnv strips
// them) for the rest of the test, for a test that runs a command's code in
// its own process.
func ClearCommandEnv(t testing.TB) {
	t.Helper()
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); commandVar(name) {
			t.Setenv(name, "")
		}
	}
}
