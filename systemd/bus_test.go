package systemd_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// busConfig is a bus that lets anyone own any name and send anything, with
// no activatable services: a name nobody owns fails at once, as on a host
// without logind.
const busConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path=%SOCKET%</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`

// startBus starts a private dbus-daemon for the test and points
// DBUS_SYSTEM_BUS_ADDRESS at it, so that Logind and Units talk to a real
// bus daemon, on which the test puts fake logind and systemd peers. It
// returns the bus address. Without dbus-daemon the test skips, or fails
// when the CI environment variable is set.
func startBus(t *testing.T) string {
	t.Helper()
	daemon, err := exec.LookPath("dbus-daemon")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("dbus-daemon not installed (CI is set: failing instead of skipping): %v", err)
		}
		t.Skipf("dbus-daemon not installed (apt-get install dbus-daemon): %v", err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(conf, []byte(strings.ReplaceAll(busConfig, "%SOCKET%", filepath.Join(dir, "bus"))), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(daemon, "--config-file="+conf, "--nofork", "--nopidfile", "--nosyslog", "--print-address")
	logPath := filepath.Join(dir, "dbus-daemon.log")
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd.Stderr = log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("dbus-daemon: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	// dbus-daemon prints its address once it listens.
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	var addr string
	select {
	case addr = <-line:
	case <-time.After(10 * time.Second):
	}
	if addr == "" {
		out, _ := os.ReadFile(logPath)
		t.Fatalf("dbus-daemon did not print its address: %s", out)
	}
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", addr)
	return addr
}
