package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/internal/emulate/imds"
)

// unavailable skips the test because a tool is not installed, or fails it
// when running on CI (internal/testenv's convention).
func unavailable(t *testing.T, tool, pkg string) {
	t.Helper()
	msg := tool + " is not installed: run .ci/run or apt-get install " + pkg
	if os.Getenv("CI") == "" {
		t.Skip(msg)
	}
	t.Fatalf("%s (CI is set: failing instead of skipping)", msg)
}

func need(t *testing.T, tool, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		unavailable(t, tool, pkg)
	}
}

func runCmd(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestDebianVersion(t *testing.T) {
	for _, tc := range []struct{ describe, want string }{
		{"v1.2.3", "1.2.3"},
		{"1.2.3", "1.2.3"},
		{"v1.2.3-rc1", "1.2.3~rc1"},
		{"v1.2.3-4-gabc1234", "1.2.3+git4.abc1234"},
		{"v1.2.3-rc1-4-gabc1234-dirty", "1.2.3~rc1+git4.abc1234+dirty"},
		{"abc1234", "0.0.0~git20261204.abc1234"},
		{"abc1234-dirty", "0.0.0~git20261204.abc1234+dirty"},
	} {
		got, err := DebianVersion(tc.describe, "20261204")
		if err != nil || got != tc.want {
			t.Errorf("DebianVersion(%q) = %q, %v; want %q", tc.describe, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "release_one", "v1.2.3 x"} {
		if got, err := DebianVersion(bad, "20261204"); err == nil {
			t.Errorf("DebianVersion(%q) = %q, want an error", bad, got)
		}
	}
	// The order dpkg gives the versions is the order of the builds.
	need(t, "dpkg", "dpkg")
	for _, pair := range [][2]string{
		{"0.0.0~git20261204.abc1234", "0.0.0~git20261205.0123abc"},
		{"0.0.0~git20261205.0123abc", "1.0.0~rc1"},
		{"1.0.0~rc1", "1.0.0"},
		{"1.0.0", "1.0.0+dirty"},
		{"1.0.0", "1.0.0+git1.abc1234"},
	} {
		if err := exec.Command("dpkg", "--compare-versions", pair[0], "lt", pair[1]).Run(); err != nil {
			t.Errorf("dpkg: %s is not older than %s", pair[0], pair[1])
		}
	}
}

func TestCloudInitExamples(t *testing.T) {
	need(t, "cloud-init", "cloud-init")
	files, err := filepath.Glob("../cloud-init/*.yaml")
	if err != nil || len(files) < 3 {
		t.Fatalf("cloud-init examples: %v %v", files, err)
	}
	for _, f := range files {
		out := runCmd(t, "cloud-init", "schema", "-c", f)
		if !strings.Contains(out, "Valid cloud-config") {
			t.Errorf("%s: %s", f, out)
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		given := string(data)
		if filepath.Base(f) == "ec2-asg-user-data.yaml" {
			// The launch template's instance tags give the rest.
			for _, tag := range launchTemplate(t).TagSpecifications[0].Tags {
				if key, ok := strings.CutPrefix(tag.Key, "bbb-agent:"); ok {
					given += "\n" + key + ": " + tag.Value
				}
			}
		}
		for _, want := range []string{"/etc/bbb-agent/agent.d/50-cloud-init.yaml", "balancer-url:", "agent-token:", "dns-zone:", "role:", "systemctl, enable, --now, bbb-agent"} {
			if !strings.Contains(given, want) {
				t.Errorf("%s lacks %q", f, want)
			}
		}
	}
}

// ec2LaunchTemplate is what TestEC2LaunchTemplate reads of
// cloud-init/ec2-launch-template.json (the LaunchTemplateData of
// aws ec2 create-launch-template).
type ec2LaunchTemplate struct {
	MetadataOptions struct {
		HttpTokens           string
		InstanceMetadataTags string
	}
	TagSpecifications []struct {
		ResourceType string
		Tags         []struct{ Key, Value string }
	}
	UserData string
}

func launchTemplate(t *testing.T) ec2LaunchTemplate {
	t.Helper()
	data, err := os.ReadFile("../cloud-init/ec2-launch-template.json")
	if err != nil {
		t.Fatal(err)
	}
	var lt ec2LaunchTemplate
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&lt); err != nil {
		t.Fatalf("ec2-launch-template.json: %v", err)
	}
	if len(lt.TagSpecifications) != 1 || lt.TagSpecifications[0].ResourceType != "instance" {
		t.Fatalf("ec2-launch-template.json: want one TagSpecification, of the instance: %+v", lt.TagSpecifications)
	}
	return lt
}

// TestEC2LaunchTemplate: the example launch template puts the instance's
// tags in its metadata (the agent reads bbb-agent:* tags there), requires
// IMDSv2 (the agent speaks nothing else), tags keys EC2 can expose there,
// and keeps the agent token out of the tags.
func TestEC2LaunchTemplate(t *testing.T) {
	lt := launchTemplate(t)
	if lt.MetadataOptions.InstanceMetadataTags != "enabled" || lt.MetadataOptions.HttpTokens != "required" {
		t.Errorf("MetadataOptions %+v: want InstanceMetadataTags enabled and HttpTokens required", lt.MetadataOptions)
	}
	agentTags := 0
	for _, tag := range lt.TagSpecifications[0].Tags {
		if err := imds.ValidTagKey(tag.Key); err != nil {
			t.Errorf("ec2-launch-template.json: %v", err)
		}
		if strings.HasPrefix(tag.Key, "bbb-agent:") {
			agentTags++
		}
		if strings.Contains(tag.Key, "token") || strings.Contains(tag.Key, "secret") {
			t.Errorf("ec2-launch-template.json tags the instance with %s: a secret belongs in the user data, not in a tag", tag.Key)
		}
	}
	if agentTags == 0 {
		t.Error("ec2-launch-template.json has no bbb-agent:* tag")
	}
	if !strings.Contains(lt.UserData, "ec2-asg-user-data.yaml") {
		t.Errorf("ec2-launch-template.json: UserData %q does not point at ec2-asg-user-data.yaml", lt.UserData)
	}
}

// build makes both packages for the host's architecture at version.
func build(t *testing.T, dir, version string) (agent, balancer string) {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	debs, err := Build(ctx, Options{Root: root, Out: dir, Version: version, Arches: []string{runtime.GOARCH}})
	if err != nil {
		t.Fatal(err)
	}
	if len(debs) != 2 || !strings.Contains(debs[0], "/bbb-agent_"+version+"_") || !strings.Contains(debs[1], "/bbb-balancer_"+version+"_") {
		t.Fatalf("Build wrote %q", debs)
	}
	return debs[0], debs[1]
}

func TestPackages(t *testing.T) {
	need(t, "dpkg-deb", "dpkg")
	need(t, "lintian", "lintian")
	need(t, "systemd-analyze", "systemd")
	dir := t.TempDir()
	agent, balancer := build(t, dir, "0.0.1")

	// lintian: no errors; the warnings kept are overridden with a reason
	// (packaging/debian/bbb-agent.lintian-overrides).
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "lintian", "--fail-on", "error,warning", agent, balancer).CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "E: ") || strings.HasPrefix(line, "W: ") {
			t.Errorf("lintian: %s", line)
		}
	}

	contents := map[string]map[string]string{ // package → path → "mode owner"
		agent: {
			"./usr/bin/bbb-agent":                                                    "-rwxr-xr-x root/root",
			"./lib/systemd/system/bbb-agent.service":                                 "-rw-r--r-- root/root",
			"./usr/lib/systemd/logind.conf.d/bbb-agent.conf":                         "-rw-r--r-- root/root",
			"./usr/local/bigbluebutton/core/scripts/post_publish/bbb_agent.rb":       "-rwxr-xr-x root/root",
			"./usr/share/bbb-agent/agent.yaml":                                       "-rw-r--r-- root/root",
			"./usr/share/doc/bbb-agent/examples/agent.yaml":                          "-rw-r--r-- root/root",
			"./usr/share/doc/bbb-agent/examples/cloud-init/ec2-iam-policy.json":      "-rw-r--r-- root/root",
			"./usr/share/doc/bbb-agent/examples/cloud-init/ec2-launch-template.json": "-rw-r--r-- root/root",
			"./usr/share/doc/bbb-agent/copyright":                                    "-rw-r--r-- root/root",
			"./usr/share/doc/bbb-agent/changelog.gz":                                 "-rw-r--r-- root/root",
			"./etc/bbb-agent/agent.d/":                                               "drwxr-xr-x root/root",
		},
		balancer: {
			"./usr/bin/bbb-balancer":                             "-rwxr-xr-x root/root",
			"./lib/systemd/system/bbb-balancer.service":          "-rw-r--r-- root/root",
			"./usr/share/bbb-balancer/balancer.env":              "-rw-r--r-- root/root",
			"./usr/share/doc/bbb-balancer/examples/balancer.env": "-rw-r--r-- root/root",
			"./usr/share/bbb-balancer/grafana/bbb-fleet.json":    "-rw-r--r-- root/root",
			"./etc/bbb-balancer/":                                "drwxr-xr-x root/root",
		},
	}
	for deb, want := range contents {
		got := map[string]string{}
		for _, line := range strings.Split(runCmd(t, "dpkg-deb", "-c", deb), "\n") {
			f := strings.Fields(line)
			if len(f) >= 6 {
				got[f[5]] = f[0] + " " + f[1]
			}
		}
		for path, mode := range want {
			if got[path] != mode {
				t.Errorf("%s: %s is %q, want %q", filepath.Base(deb), path, got[path], mode)
			}
		}
		for path := range got {
			if strings.HasPrefix(path, "./etc/") && !strings.HasSuffix(path, "/") {
				t.Errorf("%s ships %s: a file in /etc collides with cloud-init's or the operator's", filepath.Base(deb), path)
			}
			if strings.HasPrefix(path, "./var/bigbluebutton") {
				t.Errorf("%s ships %s, BBB's recordings directory", filepath.Base(deb), path)
			}
		}
		// No conffiles: the configuration is created by postinst.
		if out, err := exec.Command("dpkg-deb", "-I", deb, "conffiles").CombinedOutput(); err == nil {
			t.Errorf("%s has conffiles:\n%s", filepath.Base(deb), out)
		}
		if info := runCmd(t, "dpkg-deb", "-I", deb); !strings.Contains(info, "Version: 0.0.1") {
			t.Errorf("%s: control lacks Version: 0.0.1:\n%s", filepath.Base(deb), info)
		}
	}
	for _, f := range []string{"bbb-agent.postrm", "bbb-balancer.postrm"} {
		data, err := os.ReadFile(filepath.Join("../debian", f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(data), "bigbluebutton") {
			t.Errorf("%s touches a BBB path: purge must never remove a recording", f)
		}
	}

	t.Run("install-upgrade-remove-purge", func(t *testing.T) { installCycle(t, dir, agent, balancer) })
}

// installCycle installs the packages with dpkg on this machine (root, and
// neither package installed: CI's throwaway machine), upgrades them to a
// newer build, removes and purges them, and checks what each step leaves.
// It purges whatever it installed when it ends.
func installCycle(t *testing.T, dir, agent, balancer string) {
	if os.Geteuid() != 0 {
		unavailable(t, "root (dpkg -i)", "nothing; run as root")
	}
	for _, p := range []string{"bbb-agent", "bbb-balancer"} {
		if out, err := exec.Command("dpkg-query", "-W", "-f=${db:Status-Status}", p).Output(); err == nil && string(out) != "not-installed" && string(out) != "" {
			t.Fatalf("%s is already on this machine (%s): purge it (dpkg -P %s) before this test", p, out, p)
		}
	}
	t.Cleanup(func() {
		if out, err := exec.Command("dpkg", "-P", "bbb-agent", "bbb-balancer").CombinedOutput(); err != nil {
			t.Errorf("dpkg -P: %v\n%s", err, out)
		}
		os.Remove("/etc/bbb-agent/agent.d/99-test.yaml")
		os.Remove("/etc/bbb-agent/agent.d")
		os.Remove("/etc/bbb-agent")
	})
	mode := func(path string) string {
		fi, err := os.Stat(path)
		if err != nil {
			return err.Error()
		}
		return fi.Mode().String()
	}
	exists := func(path string) bool {
		_, err := os.Stat(path)
		return !errors.Is(err, os.ErrNotExist)
	}

	runCmd(t, "dpkg", "-i", agent, balancer)
	if out := runCmd(t, "/usr/bin/bbb-agent", "--version"); !strings.Contains(out, "0.0.1") {
		t.Errorf("bbb-agent --version: %q, want 0.0.1", out)
	}
	if out := runCmd(t, "/usr/bin/bbb-balancer", "--version"); !strings.Contains(out, "0.0.1") {
		t.Errorf("bbb-balancer --version: %q, want 0.0.1", out)
	}
	if m := mode("/etc/bbb-agent/agent.yaml"); m != "-rw-------" {
		t.Errorf("/etc/bbb-agent/agent.yaml: %s, want -rw------- (it will hold the agent token)", m)
	}
	if m := mode("/etc/bbb-balancer/balancer.env"); m != "-rw-------" {
		t.Errorf("/etc/bbb-balancer/balancer.env: %s, want -rw-------", m)
	}
	runCmd(t, "id", "bbb-balancer")
	if out := runCmd(t, "stat", "-c", "%U:%G %a", "/var/lib/bbb-balancer"); strings.TrimSpace(out) != "bbb-balancer:bbb-balancer 750" {
		t.Errorf("/var/lib/bbb-balancer: %s, want bbb-balancer:bbb-balancer 750", out)
	}
	// The packaged configuration reads: the commented template is valid.
	runCmd(t, "/usr/bin/bbb-agent", "config", "--config", "/etc/bbb-agent/agent.yaml")
	// The installed units, with their binaries in place.
	runCmd(t, "systemd-analyze", "verify", "--man=no", "/lib/systemd/system/bbb-agent.service", "/lib/systemd/system/bbb-balancer.service")

	// The operator's changes survive an upgrade, without a prompt.
	if err := os.WriteFile("/etc/bbb-agent/agent.yaml", []byte("log-level: debug\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("/etc/bbb-agent/agent.d/99-test.yaml", []byte("role: bbb\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	agent2, balancer2 := build(t, filepath.Join(dir, "new"), "0.0.2")
	runCmd(t, "dpkg", "-i", agent2, balancer2)
	if out := runCmd(t, "/usr/bin/bbb-agent", "--version"); !strings.Contains(out, "0.0.2") {
		t.Errorf("after the upgrade, bbb-agent --version: %q, want 0.0.2", out)
	}
	if data, _ := os.ReadFile("/etc/bbb-agent/agent.yaml"); string(data) != "log-level: debug\n" {
		t.Errorf("the upgrade changed /etc/bbb-agent/agent.yaml: %q", data)
	}

	runCmd(t, "dpkg", "-r", "bbb-agent", "bbb-balancer")
	if exists("/usr/bin/bbb-agent") || exists("/lib/systemd/system/bbb-agent.service") || exists("/usr/bin/bbb-balancer") {
		t.Error("remove left a binary or a unit behind")
	}
	if !exists("/etc/bbb-agent/agent.yaml") || !exists("/etc/bbb-balancer/balancer.env") {
		t.Error("remove took the configuration: only purge may")
	}

	runCmd(t, "dpkg", "-P", "bbb-agent", "bbb-balancer")
	for _, p := range []string{"/etc/bbb-agent/agent.yaml", "/etc/bbb-balancer", "/var/lib/bbb-agent", "/var/lib/bbb-balancer", "/usr/share/bbb-agent"} {
		if exists(p) {
			t.Errorf("purge left %s", p)
		}
	}
	if !exists("/etc/bbb-agent/agent.d/99-test.yaml") {
		t.Error("purge removed a file the package did not create")
	}
	// Debian keeps the system user: its files may remain.
	runCmd(t, "id", "bbb-balancer")
}
