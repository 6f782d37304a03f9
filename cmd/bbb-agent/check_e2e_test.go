package main

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	r53emu "github.com/bbb-agent/bbb-agent/internal/emulate/route53"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// TestCheckAndRunRejectTheSame: every configuration run refuses, check
// refuses too, with the same message on a ✘ configuration line; run
// refuses it before it contacts, binds or starts anything (nothing answers
// at the balancer and BBB URLs).
func TestCheckAndRunRejectTheSame(t *testing.T) {
	t.Parallel()
	b := testenv.BuildCommands(t)
	empty := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(empty, []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := func(t *testing.T, cmd string) []string {
		args := []string{cmd, "--config", empty, "--balancer-url", "http://127.0.0.1:9",
			"--agent-token", agentToken, "--bbb-url", "http://127.0.0.1:9", "--bbb-secret", "bbb-secret-check-e2e",
			"--node-name", "bbb-same", "--state-dir", t.TempDir(), "--logind=false"}
		if cmd == "run" {
			args = append(args, "--admin-socket", filepath.Join(shortDir(t), "admin.sock"))
		}
		return args
	}
	for _, tt := range []struct {
		name string
		args []string
		want []string // one per problem, in this order
	}{
		{"rfc2136 without a server", []string{"--dns-provider", "rfc2136", "--dns-zone", "example.com"},
			[]string{"no DNS server: set --dns-server"}},
		{"route53 without a zone", []string{"--dns-provider", "route53"},
			[]string{"dns-provider route53 needs --dns-zone"}},
		{"metrics on every interface", []string{"--metrics-listen", "0.0.0.0:9688"},
			[]string{`--metrics-listen (BBB_AGENT_METRICS_LISTEN, metrics_listen in agent.yaml): "0.0.0.0:9688": use a loopback address`}},
		{"metrics address without a port", []string{"--metrics-listen", "127.0.0.1"},
			[]string{`--metrics-listen (BBB_AGENT_METRICS_LISTEN, metrics_listen in agent.yaml): "127.0.0.1": address 127.0.0.1: missing port`}},
		{"log level", []string{"--log-level", "loud"},
			[]string{`--log-level (BBB_AGENT_LOG_LEVEL, log_level in agent.yaml): "loud": want debug, info, warn or error`}},
		{"unknown DNS provider", []string{"--dns-provider", "bind"},
			[]string{`dns-provider "bind": want none, rfc2136 or route53`}},
		{"DNS TTL", []string{"--dns-provider", "rfc2136", "--dns-zone", "example.com", "--dns-server", "127.0.0.1:53", "--dns-ttl", "0"},
			[]string{"dns-ttl 0: want 1 to 86400 seconds"}},
		{"TSIG key name without its secret", []string{"--dns-provider", "rfc2136", "--dns-zone", "example.com", "--dns-server", "127.0.0.1:53",
			"--dns-tsig-key-name", "k"}, []string{"set both --dns-tsig-key-name and --dns-tsig-secret"}},
		{"TSIG secret not base64", []string{"--dns-provider", "rfc2136", "--dns-zone", "example.com", "--dns-server", "127.0.0.1:53",
			"--dns-tsig-key-name", "k", "--dns-tsig-secret", "not base64!"}, []string{"is not base64 (check --dns-tsig-secret)"}},
		{"TURN node without URIs", []string{"--role", "turn", "--turn-secret", "s"},
			[]string{"role turn: give --turn-uri ("}},
		{"TURN node without the secret", []string{"--role", "turn", "--turn-uri", "turn:127.0.0.1:3478"},
			[]string{"role turn: give --turn-secret ("}},
		{"unknown role", []string{"--role", "web"}, []string{"--role ("}},
		{"negative delete-after", []string{"--recordings-delete-after", "-1h"},
			[]string{"--recordings-delete-after (BBB_AGENT_RECORDINGS_DELETE_AFTER, recordings_delete_after in agent.yaml): -1h0m0s is negative"}},
		{"storage URL", []string{"--recordings-storage", "ftp://x"},
			[]string{`--recordings-storage (BBB_AGENT_RECORDINGS_STORAGE, recordings_storage in agent.yaml): recordings storage "ftp://x": want none, spool:/DIR, dir:/DIR or s3://BUCKET/PREFIX`}},
		{"lifecycle hook without --ec2", []string{"--asg-lifecycle-hook", "drain"},
			[]string{"--asg-lifecycle-hook (BBB_AGENT_ASG_LIFECYCLE_HOOK, asg_lifecycle_hook in agent.yaml): the lifecycle hook needs the instance metadata: give --ec2 too"}},
		{"load multiplier 0", []string{"--load-multiplier", "0"}, []string{"--load-multiplier (BBB_AGENT_LOAD_MULTIPLIER, load_multiplier in agent.yaml): 0: want more than 0 and at most 100"}},
		{"load multiplier too big", []string{"--load-multiplier", "1000"}, []string{"--load-multiplier (BBB_AGENT_LOAD_MULTIPLIER, load_multiplier in agent.yaml): 1000: want more than 0 and at most 100"}},
		{"public address", []string{"--public-ipv4", "2001:db8::1"}, []string{`public-ipv4 "2001:db8::1" is not an IPv4 address`}},
		{"two DNS problems", []string{"--dns-provider", "rfc2136", "--dns-zone", "example.com", "--dns-ttl", "0"},
			[]string{"dns-ttl 0: want 1 to 86400 seconds", "no DNS server: set --dns-server"}},
		{"three problems at once", []string{"--log-level", "loud", "--dns-provider", "route53", "--metrics-listen", "[::]:9688"},
			[]string{"--log-level (", "dns-provider route53 needs --dns-zone", "--metrics-listen ("}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			run := testenv.Run(t, nil, b.Agent, append(base(t, "run"), tt.args...)...)
			problems := strings.Split(strings.TrimSpace(strings.TrimPrefix(run.Stderr, "bbb-agent: ")), "\n")
			if run.Code == 0 || len(problems) != len(tt.want) {
				t.Fatalf("run %v: want %d problems on stderr: %s", tt.args, len(tt.want), run)
			}
			for i, w := range tt.want {
				if !strings.Contains(problems[i], w) {
					t.Errorf("run %v: problem %q does not say %q", tt.args, problems[i], w)
				}
			}
			check := testenv.Run(t, nil, b.Agent, append(base(t, "check"), tt.args...)...)
			var lines []string
			for _, l := range strings.Split(check.Stdout, "\n") {
				if rest, ok := strings.CutPrefix(l, "✘ configuration: "); ok {
					lines = append(lines, rest)
				}
			}
			if check.Code == 0 || !slices.Equal(lines, problems) {
				t.Errorf("check %v: want exit 1 and ✘ configuration lines %q: %s", tt.args, problems, check)
			}
			if !strings.Contains(check.Stderr, "bbb-agent run would not start") {
				t.Errorf("check %v: stderr does not say run would not start: %s", tt.args, check)
			}
		})
	}
}

// TestCheckDNSAgainstBIND: check asks the zone's servers whether they take
// the node's updates with its key, and reads the node's records, against a
// real BIND 9: the right key passes, a wrong secret, a key the zone does
// not allow and a dead server fail on the DNS line, naming what to fix.
func TestCheckDNSAgainstBIND(t *testing.T) {
	t.Parallel()
	srv := testenv.Bind(t)
	f := newFleet(t)
	s := f.startSim("checkdns")
	dead := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	check := func(t *testing.T, args ...string) testenv.Result {
		t.Helper()
		r := testenv.Run(t, nil, f.bin.Agent, append([]string{"check", "--balancer-url", f.url, "--agent-token", agentToken,
			"--bbb-url", s.URL, "--bbb-secret", s.Secret, "--node-name", "bbb-checkdns", "--state-dir", t.TempDir(), "--logind=false",
			"--dns-provider", "rfc2136", "--dns-zone", srv.Zone, "--dns-owner-id", "fleet-e2e"}, args...)...)
		noSecrets(t, "check", r.Stdout+r.Stderr, secrets(s.Secret, srv.KeySecret, srv.Other.Secret))
		return r
	}
	key := func(name, secret string) []string {
		return []string{"--dns-tsig-key-name", name, "--dns-tsig-secret", secret}
	}
	for _, tt := range []struct {
		name string
		args []string
		code int
		want []string // on the DNS line
	}{
		{"the zone's key", append([]string{"--dns-server", srv.Addr}, key(srv.KeyName, srv.KeySecret)...), 0,
			[]string{"✔ DNS rfc2136: zone " + strings.TrimSuffix(srv.Zone, ".") + " answers and takes updates signed with key " + strings.TrimSuffix(srv.KeyName, "."),
				"bbb-checkdns." + strings.TrimSuffix(srv.Zone, ".") + " has 0 record sets now"}},
		{"wrong secret", append([]string{"--dns-server", srv.Addr}, key(srv.KeyName, srv.Other.Secret)...), 1,
			[]string{"✘ DNS rfc2136: server " + srv.Addr + " does not accept the TSIG key", "BADSIG", "--dns-tsig-secret"}},
		{"key the zone does not allow", append([]string{"--dns-server", srv.Addr}, key(srv.Other.Name, srv.Other.Secret)...), 1,
			[]string{"✘ DNS rfc2136: ", "REFUSED: the key may not update zone " + srv.Zone}},
		{"server not there", append([]string{"--dns-server", dead}, key(srv.KeyName, srv.KeySecret)...), 1,
			[]string{"✘ DNS rfc2136: no DNS server of zone " + srv.Zone + " could be reached", dead}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := check(t, tt.args...)
			line := lineWith(r.Stdout, "DNS rfc2136: ")
			if r.Code != tt.code {
				t.Errorf("check: exit %d, want %d: %s", r.Code, tt.code, r)
			}
			for _, w := range tt.want {
				if !strings.Contains(line, w) {
					t.Errorf("check: the DNS line %q does not say %q:\n%s", line, w, r.Stdout)
				}
			}
			if tt.code == 0 && strings.Contains(r.Stdout, "✘") {
				t.Errorf("check passed with a failed line:\n%s", r.Stdout)
			}
		})
	}
}

// TestCheckDNSRoute53: check reads the hosted zone and the node's records
// from Route53 (the emulation in internal/emulate/route53).
func TestCheckDNSRoute53(t *testing.T) {
	t.Parallel()
	emu := r53emu.New()
	hs := httptest.NewServer(emu)
	t.Cleanup(hs.Close)
	emu.AddZone("example.com", false)
	f := newFleet(t)
	s := f.startSim("check53")
	env := []string{"AWS_ACCESS_KEY_ID=AKIDEMULATION", "AWS_SECRET_ACCESS_KEY=emulation-secret", "AWS_CONFIG_FILE=/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true"}
	check := func(t *testing.T, zone string) testenv.Result {
		t.Helper()
		return testenv.Run(t, env, f.bin.Agent, "check", "--balancer-url", f.url, "--agent-token", agentToken,
			"--bbb-url", s.URL, "--bbb-secret", s.Secret, "--node-name", "bbb-check53", "--state-dir", t.TempDir(), "--logind=false",
			"--dns-provider", "route53", "--dns-zone", zone, "--route53-endpoint", hs.URL, "--aws-region", "eu-central-1")
	}
	r := check(t, "example.com")
	if line := lineWith(r.Stdout, "DNS route53: "); r.Code != 0 || !strings.HasPrefix(line, "✔ DNS route53: zone example.com answers; bbb-check53.example.com has 0 record sets now") {
		t.Errorf("check with the hosted zone there: %s", r)
	}
	r = check(t, "example.org")
	if line := lineWith(r.Stdout, "DNS route53: "); r.Code == 0 || !strings.HasPrefix(line, "✘ DNS route53: ") ||
		!strings.Contains(line, "no such Route53 hosted zone named example.org") || !strings.Contains(line, "--dns-hosted-zone-id") {
		t.Errorf("check without the hosted zone: %s", r)
	}
}

// lineWith is the first line of out that contains s ("" if none).
func lineWith(out, s string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}
