package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// TestServeConfigFile: balancer.yaml gives what flags and environment do
// not; flags win; an unknown key or a bad value is named.
func TestServeConfigFile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs binaries")
	}
	bin := testenv.Build(t, testenv.BalancerPkg)[0]
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	// Secrets from the file only; --listen on the command line wins over the file's.
	good := write("good.yaml", "secret: "+lbSecret+"\nagent_token: "+agentToken+"\nadmin-token: "+adminToken+
		"\nlisten: 127.0.0.1:1\nadmin-listen: 127.0.0.1:0\ndata-dir: "+filepath.Join(dir, "data")+"\n")
	bal := testenv.Start(t, testenv.Cmd{Name: "bbb-balancer serve", Path: bin, Args: []string{"serve", "--config", good, "--listen", "127.0.0.1:0"}, Env: testenv.CleanEnv(),
		Ready: testenv.BalancerReady})
	if !strings.Contains(bal.Output(), "admin=http://127.0.0.1:") || strings.Contains(bal.Ready, "127.0.0.1:1/") {
		t.Errorf("the file's admin-listen or the flag's listen was not used:\n%s", bal.Output())
	}

	for _, tc := range []struct{ name, body, want string }{
		{"unknown key", "secret: " + lbSecret + "\nreport_intervall: 5s\n", `unknown key "report_intervall"`},
		{"bad value", "poll-interval: often\n", `key "poll-interval": value "often" is not valid: want a duration`},
		{"mapping", "listen:\n  a: b\n", `key "listen": a mapping is not a value`},
	} {
		res := testenv.Run(t, nil, bin, "serve", "--config", write(strings.ReplaceAll(tc.name, " ", "-")+".yaml", tc.body))
		if res.Code == 0 || !strings.Contains(res.Stderr, tc.want) {
			t.Errorf("%s: want a failure naming %q, got %s", tc.name, tc.want, res)
		}
	}
	if res := testenv.Run(t, nil, bin, "serve", "--config", filepath.Join(dir, "missing.yaml")); res.Code == 0 || !strings.Contains(res.Stderr, "missing.yaml") {
		t.Errorf("a --config file that does not exist: %s", res)
	}
}

// TestExampleConfig: the balancer.yaml shipped as an example holds only
// keys serve knows (it fails on the placeholders' ports, not on a key).
func TestExampleConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs binaries")
	}
	bin := testenv.Build(t, testenv.BalancerPkg)[0]
	res := testenv.Run(t, nil, bin, "serve", "--config", "../../packaging/examples/balancer.yaml", "--data-dir", t.TempDir(),
		"--listen", "256.0.0.1:1")
	if res.Code == 0 || strings.Contains(res.Stderr, "unknown key") || strings.Contains(res.Stderr, "is not valid") {
		t.Errorf("the example file: %s", res)
	}
}
