package systemd_test

import (
	"bufio"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/systemd"
)

// defaultDrainDeadline is bbb-agent run's default --drain-deadline.
const defaultDrainDeadline = 90 * time.Minute

// unitFile is a systemd unit or drop-in: section → key → values in order.
type unitFile map[string]map[string][]string

// readUnitFile reads the INI dialect of systemd unit files: [Section]
// headers, Key=Value lines, # and ; comments. Line continuations are not
// used in this package's files.
func readUnitFile(t *testing.T, path string) unitFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			key, value, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.HasSuffix(line, `\`) {
				t.Fatalf("%s:%d: not a key=value line in a section: %q", path, n, line)
			}
			key = strings.TrimSpace(key)
			u[section][key] = append(u[section][key], strings.TrimSpace(value))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// get returns the one value of section's key.
func (u unitFile) get(t *testing.T, section, key string) string {
	t.Helper()
	v := u[section][key]
	if len(v) != 1 {
		t.Fatalf("[%s] %s= is set %d times, want once", section, key, len(v))
	}
	return v[0]
}

// timeSpan parses the systemd time spans used here: bare seconds ("30") or
// units that time.ParseDuration knows once "min" is spelled "m" ("2h",
// "5min", "1h30min").
func timeSpan(t *testing.T, s string) time.Duration {
	t.Helper()
	if strings.Trim(s, "0123456789") == "" {
		s += "s"
	}
	d, err := time.ParseDuration(strings.ReplaceAll(s, "min", "m"))
	if err != nil {
		t.Fatalf("time span %q: %v", s, err)
	}
	return d
}

func TestServiceUnit(t *testing.T) {
	u := readUnitFile(t, "../packaging/systemd/bbb-agent.service")
	for _, tc := range []struct{ key, want string }{
		{"Type", "notify"},
		{"NotifyAccess", "main"},
		{"ExecStart", "/usr/bin/bbb-agent run --config /etc/bbb-agent/agent.yaml"},
		{"Restart", "on-failure"},
		{"KillMode", "mixed"},
		{"StateDirectory", "bbb-agent"},   // --state-dir /var/lib/bbb-agent
		{"RuntimeDirectory", "bbb-agent"}, // --admin-socket /run/bbb-agent/admin.sock
	} {
		if got := u.get(t, "Service", tc.key); got != tc.want {
			t.Errorf("%s=%s, want %s", tc.key, got, tc.want)
		}
	}
	if got := u["Unit"]["Wants"]; !strings.Contains(strings.Join(got, " "), "network-online.target") {
		t.Errorf("Wants=%q lacks network-online.target", got)
	}
	if got := u["Unit"]["After"]; !strings.Contains(strings.Join(got, " "), "network-online.target") {
		t.Errorf("After=%q lacks network-online.target", got)
	}
	if got := u.get(t, "Install", "WantedBy"); got != "multi-user.target" {
		t.Errorf("WantedBy=%s", got)
	}

	// The agent pings at half the watchdog timeout.
	if wd := timeSpan(t, u.get(t, "Service", "WatchdogSec")); wd < 10*time.Second {
		t.Errorf("WatchdogSec=%v: too short for pings every %v", wd, wd/2)
	}
	// A stop or restart does not drain (an upgrade must not wait for the
	// meetings): the stop timeout only covers a clean exit. A host
	// shutdown drains under logind's delay lock, which the drop-in makes
	// long enough for the default drain.
	stop := timeSpan(t, u.get(t, "Service", "TimeoutStopSec"))
	if stop > 2*time.Minute {
		t.Errorf("TimeoutStopSec=%v: a stop does not drain, a long timeout only holds up an upgrade", stop)
	}
	d := readUnitFile(t, "../packaging/systemd/logind-bbb-agent.conf")
	inhibit := timeSpan(t, d.get(t, "Login", "InhibitDelayMaxSec"))
	if warn := systemd.CheckInhibitDelay(inhibit, defaultDrainDeadline); warn != "" {
		t.Errorf("the packaged drop-in is too short for the default drain deadline: %s", warn)
	}

	// The hardening must leave the paths the agent writes writable.
	if got := u.get(t, "Service", "ProtectSystem"); got == "strict" {
		t.Errorf("ProtectSystem=strict makes /var read-only: the recording store and BBB files need it")
	}
	if got := u.get(t, "Service", "ReadWritePaths"); got != "-/etc/bigbluebutton" {
		t.Errorf("ReadWritePaths=%s, want -/etc/bigbluebutton (turn-stun-servers.xml)", got)
	}
}
