package main

import (
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// TestDNSAgainstBIND: `bbb-agent dns plan|apply|delete` by hand, then a
// running agent that publishes its name in a real BIND 9 zone before it
// registers, shows it in status, and removes it after a SIGTERM drain
// (--drain-on-sigterm).
func TestDNSAgainstBIND(t *testing.T) {
	srv := testenv.Bind(t)
	f := newFleet(t)
	s := f.startSim("dns1")
	fqdn := "dns1." + srv.Zone
	dnsArgs := []string{"--dns-provider", "rfc2136", "--dns-zone", srv.Zone, "--dns-server", srv.Addr,
		"--dns-tsig-key-name", srv.KeyName, "--dns-tsig-secret", srv.KeySecret, "--dns-owner-id", "fleet-e2e",
		"--public-ipv4", "198.51.100.31", "--dns-wait-timeout", "5s"}
	by := func(sub string, extra ...string) testenv.Result {
		args := append([]string{"dns", sub, "--node-name", "dns1", "--balancer-url", f.url, "--agent-token", agentToken,
			"--bbb-url", s.URL, "--bbb-secret", s.Secret, "--logind=false", "--state-dir", t.TempDir()}, dnsArgs...)
		return testenv.Run(t, nil, f.bin.Agent, append(args, extra...)...)
	}

	if r := by("plan"); r.Code != 0 || !strings.Contains(r.Stdout, "create "+fqdn+" 60 A 198.51.100.31") || !strings.Contains(r.Stdout, "owner=fleet-e2e") {
		t.Fatalf("dns plan: %s", r)
	}
	if r := by("apply"); r.Code != 0 || !strings.Contains(r.Stdout, "answers 198.51.100.31") {
		t.Fatalf("dns apply: %s", r)
	}
	if got := srv.Dig(t, fqdn, "A"); !slices.Equal(got, []string{"198.51.100.31"}) {
		t.Fatalf("dig after apply: %v", got)
	}
	if r := by("plan"); r.Code != 0 || !strings.Contains(r.Stdout, "up to date") {
		t.Fatalf("dns plan after apply: %s", r)
	}
	if r := by("plan", "--delete"); r.Code != 0 || !strings.Contains(r.Stdout, "delete "+fqdn+" 60 A") {
		t.Fatalf("dns plan --delete: %s", r)
	}
	if r := by("delete"); r.Code != 0 || len(srv.Dig(t, fqdn, "A")) != 0 {
		t.Fatalf("dns delete: %s, dig %v", r, srv.Dig(t, fqdn, "A"))
	}
	wrongKey := "c2VjcmV0LW5vdC10aGUta2V5LTAxMjM0NTY3ODk=" // base64, not the server's
	if r := by("apply", "--dns-tsig-secret", wrongKey); r.Code == 0 || !strings.Contains(r.Stderr, "--dns-tsig") || strings.Contains(r.Stderr, wrongKey) {
		t.Fatalf("dns apply with a wrong key: %s", r)
	}

	a := f.startAgent(s, agentOpts{nodeName: "dns1", args: append(slices.Clone(dnsArgs), "--drain-on-sigterm")})
	a.secrets = append(a.secrets, srv.KeySecret)
	testenv.Eventually(t, 5*time.Second, "online", func() bool { return f.onlineAndEnabled("dns1") })
	if got := srv.Dig(t, fqdn, "A"); !slices.Equal(got, []string{"198.51.100.31"}) {
		t.Fatalf("dig while registered: %v", got)
	}
	st, raw, ok := a.status(t)
	if !ok || st.DNS == nil || st.DNS.FQDN != strings.TrimSuffix(fqdn, ".") || st.DNS.Provider != "rfc2136" || !st.DNS.Answering {
		t.Fatalf("status dns: %+v (%v)", st.DNS, raw["dns"])
	}
	if r := a.admin(t, "status"); !strings.Contains(r.Stdout, "answered by the authoritative servers") {
		t.Fatalf("status: %s", r)
	}
	if err := a.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := a.Wait(t, 5*time.Second); code != 0 {
		t.Fatalf("exit %d:\n%s", code, a.Output())
	}
	for _, qt := range []string{"A", "TXT"} {
		if got := srv.Dig(t, fqdn, qt); len(got) != 0 {
			t.Fatalf("%s left after the drain: %v", qt, got)
		}
	}
}

// TestDNSPlanFailureSaysSo: a dns plan that cannot read the zone, or whose
// key the zone's server refuses, exits non-zero with the error and prints
// no plan, in particular no "up to date".
func TestDNSPlanFailureSaysSo(t *testing.T) {
	t.Parallel()
	srv := testenv.Bind(t)
	b := testenv.BuildCommands(t)
	dead := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	plan := func(t *testing.T, args ...string) testenv.Result {
		t.Helper()
		return testenv.Run(t, nil, b.Agent, append([]string{"dns", "plan", "--node-name", "plan1", "--balancer-url", "http://127.0.0.1:9",
			"--agent-token", agentToken, "--bbb-url", "http://127.0.0.1:9", "--bbb-secret", "x", "--logind=false", "--state-dir", t.TempDir(),
			"--dns-provider", "rfc2136", "--dns-zone", srv.Zone, "--dns-owner-id", "fleet-e2e", "--public-ipv4", "198.51.100.41"}, args...)...)
	}
	if r := plan(t, "--dns-server", srv.Addr, "--dns-tsig-key-name", srv.KeyName, "--dns-tsig-secret", srv.KeySecret); r.Code != 0 ||
		!strings.Contains(r.Stdout, "create plan1."+srv.Zone+" 60 A 198.51.100.41") {
		t.Fatalf("dns plan with the zone's key: %s", r)
	}
	for _, tt := range []struct {
		name string
		args []string
		want []string // on stderr
	}{
		{"wrong TSIG secret", []string{"--dns-server", srv.Addr, "--dns-tsig-key-name", srv.KeyName, "--dns-tsig-secret", srv.Other.Secret},
			[]string{"dns plan: server " + srv.Addr + " does not accept the TSIG key", "BADSIG", "--dns-tsig-secret"}},
		{"unreachable server", []string{"--dns-server", dead, "--dns-tsig-key-name", srv.KeyName, "--dns-tsig-secret", srv.KeySecret},
			[]string{"dns plan: ", "could be reached", dead}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := plan(t, tt.args...)
			if r.Code == 0 || r.Stdout != "" || strings.Contains(r.Stdout+r.Stderr, "up to date") {
				t.Errorf("dns plan: want a non-zero exit and nothing on stdout: %s", r)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.Stderr, w) {
					t.Errorf("dns plan: stderr does not say %q: %s", w, r)
				}
			}
			if strings.Contains(r.Stderr, srv.Other.Secret) || strings.Contains(r.Stderr, srv.KeySecret) {
				t.Errorf("dns plan shows a secret: %s", r)
			}
		})
	}
}
