package main

import (
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	imdsemu "github.com/bbb-agent/bbb-agent/internal/emulate/imds"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// TestEC2InstanceTags runs `bbb-agent config` and `run` with --ec2 against
// the IMDSv2 EMULATION (internal/emulate/imds) on loopback: the instance's
// bbb-agent:* tags give the settings nothing else gives; flags, the
// environment and the files win over them; tags not in the metadata change
// nothing and say so; a bad tag is an error naming it.
func TestEC2InstanceTags(t *testing.T) {
	t.Parallel()
	b := testenv.BuildCommands(t)
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	empty := write("agent.yaml", "{}\n")
	// instance is an emulated instance with the given tags besides two of
	// its own, and the flags that point the agent at its metadata.
	instance := func(t *testing.T, tags map[string]string) (*imdsemu.Server, []string) {
		t.Helper()
		emu := imdsemu.New(nil)
		emu.Set("instance-id", "i-0123456789abcdef0")
		tags["Name"] = "bbb node"
		tags["aws:autoscaling:groupName"] = "bbb-nodes"
		for k, v := range tags {
			if err := emu.SetTag(k, v); err != nil {
				t.Fatal(err)
			}
		}
		hs := httptest.NewServer(emu)
		t.Cleanup(hs.Close)
		return emu, []string{"--ec2", "--imds-endpoint", hs.URL}
	}
	const tagToken = "agent-token-from-a-tag-5d21"

	t.Run("tags give what nothing else gives", func(t *testing.T) {
		_, ec2 := instance(t, map[string]string{
			"bbb-agent:balancer-url": "https://lb.example.com",
			"bbb-agent:agent_token":  tagToken,
			"bbb-agent:role":         "turn",
			"bbb-agent:tag":          "eu, large",
			"bbb-agent:node-name":    "turn-{instance-id}",
			"bbb-agent:dns-zone":     "",
		})
		r := testenv.Run(t, nil, b.Agent, append([]string{"config", "--config", empty}, ec2...)...)
		if r.Code != 0 {
			t.Fatalf("config: %s", r)
		}
		got := parseConfig(t, r.Stdout)
		for key, w := range map[string]configLine{
			"balancer-url": {"https://lb.example.com", "EC2 instance tag bbb-agent:balancer-url"},
			"agent-token":  {"******", "EC2 instance tag bbb-agent:agent_token"},
			"role":         {"turn", "EC2 instance tag bbb-agent:role"},
			"tag":          {"eu,large", "EC2 instance tag bbb-agent:tag"},
			"node-name":    {"turn-{instance-id}", "EC2 instance tag bbb-agent:node-name"},
			"dns-zone":     {"", "default"}, // an empty tag gives nothing
			"registrar":    {"balancer", "default"},
		} {
			if got[key] != w {
				t.Errorf("config %s: %+v, want %+v", key, got[key], w)
			}
		}
		if !strings.Contains(r.Stderr, "EC2 instance tags read") || !strings.Contains(r.Stderr, "bbb-agent:role") {
			t.Errorf("config's log does not say which tags it read:\n%s", r.Stderr)
		}
		// Like every line of the agent's, with the node's name: here from
		// the tag, {instance-id} replaced.
		if !strings.Contains(r.Stderr, " node=turn-i-0123456789abcdef0") {
			t.Errorf("config's log does not name the node:\n%s", r.Stderr)
		}
		noSecrets(t, "config", r.Stdout+r.Stderr, []string{tagToken})
	})

	t.Run("flags, environment and files win over tags", func(t *testing.T) {
		_, ec2 := instance(t, map[string]string{
			"bbb-agent:balancer-url": "https://lb-from-tag.example.com",
			"bbb-agent:role":         "turn",
			"bbb-agent:dns-zone":     "tag.example.com",
			"bbb-agent:agent-token":  tagToken,
		})
		file := write("zone.yaml", "dns-zone: file.example.com\n")
		r := testenv.Run(t, []string{"BBB_AGENT_BALANCER_URL=https://lb-from-env.example.com"}, b.Agent,
			append([]string{"config", "--config", file, "--role", "bbb"}, ec2...)...)
		if r.Code != 0 {
			t.Fatalf("config: %s", r)
		}
		got := parseConfig(t, r.Stdout)
		for key, w := range map[string]configLine{
			"role":         {"bbb", "flag"},
			"balancer-url": {"https://lb-from-env.example.com", "environment BBB_AGENT_BALANCER_URL"},
			"dns-zone":     {"file.example.com", "file " + file},
			"agent-token":  {"******", "EC2 instance tag bbb-agent:agent-token"},
		} {
			if got[key] != w {
				t.Errorf("config %s: %+v, want %+v", key, got[key], w)
			}
		}
		if !strings.Contains(r.Stderr, `overridden_by_flag_env_or_file="[bbb-agent:balancer-url bbb-agent:dns-zone bbb-agent:role]"`) {
			t.Errorf("config's log does not name the tags that lost:\n%s", r.Stderr)
		}
	})

	t.Run("tags not in the instance metadata", func(t *testing.T) {
		emu, ec2 := instance(t, map[string]string{"bbb-agent:role": "turn"})
		emu.SetTagsExposed(false)
		r := testenv.Run(t, nil, b.Agent, append([]string{"config", "--config", empty}, ec2...)...)
		if r.Code != 0 {
			t.Fatalf("config: %s", r)
		}
		if got := parseConfig(t, r.Stdout)["role"]; got != (configLine{"bbb", "default"}) {
			t.Errorf("config role: %+v, want the default", got)
		}
		if !strings.Contains(r.Stderr, "level=INFO") || !strings.Contains(r.Stderr, "EC2 instance tags are not in the instance metadata") ||
			!strings.Contains(r.Stderr, "InstanceMetadataTags=enabled") {
			t.Errorf("config's log does not say the tags are not exposed, and how to expose them:\n%s", r.Stderr)
		}
	})

	t.Run("a bad tag is an error naming it", func(t *testing.T) {
		for _, tt := range []struct{ key, value, want string }{
			{"bbb-agent:role", "tunr", `EC2 instance tag "bbb-agent:role": value "tunr" is not valid: unknown role "tunr": want bbb or turn`},
			{"bbb-agent:balancer-url", "lb.example.com", `EC2 instance tag "bbb-agent:balancer-url": value "lb.example.com" is not valid: want an http:// or https:// URL`},
			{"bbb-agent:load-multiplier", "heavy", `EC2 instance tag "bbb-agent:load-multiplier": value "heavy" is not valid: want a number`},
			{"bbb-agent:balancer-ur1", "https://lb.example.com", `EC2 instance tag "bbb-agent:balancer-ur1": unknown key: the tags bbb-agent reads are bbb-agent:<key> for the keys balancer-url, agent-token, role`},
			{"bbb-agent:bbb-secret", "s3cr3t-from-a-tag", `EC2 instance tag "bbb-agent:bbb-secret": unknown key`},
		} {
			_, ec2 := instance(t, map[string]string{tt.key: tt.value})
			for _, cmd := range []string{"config", "run"} {
				r := testenv.Run(t, nil, b.Agent, append([]string{cmd, "--config", empty}, ec2...)...)
				if r.Code == 0 || !strings.Contains(r.Stderr, tt.want) {
					t.Errorf("%s with the tag %s=%q: %s\nwant an error with %q", cmd, tt.key, tt.value, r, tt.want)
				}
			}
		}
		// A value the command line overrides is not read, so not refused.
		_, ec2 := instance(t, map[string]string{"bbb-agent:role": "tunr"})
		if r := testenv.Run(t, nil, b.Agent, append([]string{"config", "--config", empty, "--role", "turn"}, ec2...)...); r.Code != 0 {
			t.Errorf("config --role turn with a bad role tag: %s", r)
		}
	})

	t.Run("no metadata service", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		endpoint := "http://" + l.Addr().String()
		l.Close()
		r := testenv.Run(t, nil, b.Agent, "config", "--config", empty, "--ec2", "--imds-endpoint", endpoint)
		if r.Code == 0 || !strings.Contains(r.Stderr, "--ec2: the instance's bbb-agent:* tags") || !strings.Contains(r.Stderr, "not on EC2") {
			t.Errorf("config --ec2 with nothing at the metadata endpoint: %s", r)
		}
	})
}
