package testenv

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes the test binary act as a child process for the Start tests.
const helperEnv = "TESTENV_HELPER_PROCESS"

func init() {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		return
	}
	switch mode {
	case "serve":
		// A ready line written in pieces, after other output, then wait for
		// SIGTERM and exit 7.
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM)
		fmt.Fprintln(os.Stderr, "starting")
		fmt.Print("ready at ")
		time.Sleep(20 * time.Millisecond)
		fmt.Println("port 4242")
		fmt.Println("ready at port 9999") // only the first match counts
		<-sigs
		os.Exit(7)
	case "exit":
		fmt.Println("giving up")
		os.Exit(3)
	case "hang":
		time.Sleep(time.Minute)
	}
	os.Exit(1)
}

func helper(mode string) Cmd {
	return Cmd{Path: os.Args[0], Env: append(os.Environ(), helperEnv+"="+mode)}
}

func TestStartWaitsForTheReadyLine(t *testing.T) {
	c := helper("serve")
	c.Name, c.Ready = "helper", regexp.MustCompile(`^ready at port (\d+)$`)
	p := Start(t, c)
	if p.Ready != "4242" {
		t.Errorf("Ready = %q, want the first submatch of the first ready line, 4242", p.Ready)
	}
	select {
	case <-p.Exited():
		t.Fatal("exited while waiting for SIGTERM")
	default:
	}
	if code := p.Stop(t, 5*time.Second); code != 7 {
		t.Errorf("exit code %d after SIGTERM, want 7", code)
	}
	if out := p.Output(); !strings.Contains(out, "starting\n") || !strings.Contains(out, "ready at port 9999\n") {
		t.Errorf("output lacks standard error or later lines:\n%s", out)
	}
}

func TestStartWithoutReadyLine(t *testing.T) {
	p := Start(t, helper("exit"))
	if p.Name != filepath.Base(os.Args[0]) {
		t.Errorf("Name = %q, want the executable's base name", p.Name)
	}
	if code := p.Wait(t, 5*time.Second); code != 3 {
		t.Errorf("exit code %d, want 3", code)
	}
	if p.Output() != "giving up\n" {
		t.Errorf("output %q", p.Output())
	}
}

func TestKill(t *testing.T) {
	p := Start(t, helper("hang"))
	p.Kill()
	select {
	case <-p.Exited():
	default:
		t.Fatal("Kill returned before the process exited")
	}
	if code := p.Wait(t, time.Second); code != -1 {
		t.Errorf("exit code %d after SIGKILL, want -1", code)
	}
	if err := syscall.Kill(p.Pid(), 0); err == nil {
		t.Errorf("process %d still exists", p.Pid())
	}
	p.Kill() // a second Kill is a no-op
}

func TestCleanupKills(t *testing.T) {
	var p *Proc
	t.Run("inner", func(t *testing.T) { p = Start(t, helper("hang")) })
	select {
	case <-p.Exited():
	default:
		t.Fatal("the process outlived its test")
	}
}

func TestBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles a command")
	}
	const pkg = "github.com/bbb-agent/bbb-agent/cmd/bbb-sim"
	first := Build(t, pkg)
	again := Build(t, pkg)
	if len(first) != 1 || again[0] != first[0] || filepath.Base(first[0]) != "bbb-sim" {
		t.Fatalf("Build returned %v, then %v: want one path named bbb-sim, the same both times", first, again)
	}
	port := FreePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	p := Start(t, Cmd{Path: first[0], Args: []string{"--listen", addr, "--secret", "s"},
		Ready: regexp.MustCompile(`^listening on (http://\S+)$`)})
	if p.Ready != "http://"+addr {
		t.Fatalf("bbb-sim says it listens on %q, want http://%s", p.Ready, addr)
	}
	resp, err := http.Get(p.Ready + "/bigbluebutton/api/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("API root: HTTP %s", resp.Status)
	}
	if code := p.Stop(t, 5*time.Second); code != 0 {
		t.Errorf("bbb-sim exited %d after SIGTERM\n%s", code, p.Output())
	}
}

func TestCleanEnvStripsTheCommandsVariables(t *testing.T) {
	t.Setenv("BBB_AGENT_TOKEN_TEST", "a")
	t.Setenv("BBB_BALANCER_TOKEN_TEST", "b")
	t.Setenv("BBB_SIM_SECRET_TEST", "c")
	t.Setenv("TESTENV_KEPT", "d")
	env := CleanEnv("BBB_SIM_SECRET=given")
	for _, kv := range env {
		if strings.HasPrefix(kv, "BBB_") && kv != "BBB_SIM_SECRET=given" {
			t.Errorf("CleanEnv kept %s", kv)
		}
	}
	if !slices.Contains(env, "TESTENV_KEPT=d") || !slices.Contains(env, "BBB_SIM_SECRET=given") {
		t.Errorf("CleanEnv lost the other variables or the extra ones: %v", env)
	}
}

func TestClearCommandEnv(t *testing.T) {
	t.Setenv("BBB_BALANCER_TOKEN_TEST", "b")
	t.Setenv("TESTENV_KEPT", "d")
	ClearCommandEnv(t)
	if v := os.Getenv("BBB_BALANCER_TOKEN_TEST"); v != "" {
		t.Errorf("BBB_BALANCER_TOKEN_TEST=%q after ClearCommandEnv", v)
	}
	if v := os.Getenv("TESTENV_KEPT"); v != "d" {
		t.Errorf("TESTENV_KEPT=%q after ClearCommandEnv, want d", v)
	}
}
