package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPostPublishHook runs the BBB post_publish hook the package installs
// with a real ruby, as BBB's record-and-playback does (`ruby bbb_agent.rb -m
// ID -f FORMAT`), against a fake bbb-agent: it passes the recording on, and
// whatever the agent does (fails, hangs, is missing), BBB's publish step
// never fails.
func TestPostPublishHook(t *testing.T) {
	need(t, "ruby", "ruby")
	hook, err := filepath.Abs("../bbb/post_publish/bbb_agent.rb")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	argsFile := filepath.Join(dir, "args")
	fake := func(name, body string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return path
	}
	recorder := fake("agent-ok", `echo "$@" > `+argsFile)
	failing := fake("agent-fails", `echo "admin socket: connection refused" >&2; exit 3`)
	hanging := fake("agent-hangs", `exec sleep 30`)
	id := "0123456789abcdef0123456789abcdef01234567-1700000000000"

	tests := []struct {
		name    string
		agent   string
		args    []string
		want    string // the fake agent's arguments ("" : not called)
		stderr  string // a part of the hook's complaint
		maxTime time.Duration
	}{
		{"format", recorder, []string{"-m", id, "-f", "presentation"}, "recordings notify --record-id " + id + " --format presentation", "", 10 * time.Second},
		{"no format", recorder, []string{"-m", id}, "recordings notify --record-id " + id, "", 10 * time.Second},
		{"no record id", recorder, []string{"-f", "video"}, "", "no -m RECORD_ID", 10 * time.Second},
		{"unknown option", recorder, []string{"-x", "-m", id}, "", "invalid option", 10 * time.Second},
		{"agent fails", failing, []string{"-m", id}, "", "exit 3", 10 * time.Second},
		{"agent hangs", hanging, []string{"-m", id}, "", "no answer within 1.0s, killed", 10 * time.Second},
		{"agent missing", filepath.Join(dir, "nope"), []string{"-m", id}, "", "No such file", 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(argsFile)
			cmd := exec.Command("ruby", append([]string{hook}, tt.args...)...)
			cmd.Env = append(os.Environ(), "BBB_AGENT_BIN="+tt.agent, "BBB_AGENT_HOOK_TIMEOUT=1")
			var stderr strings.Builder
			cmd.Stderr = &stderr
			start := time.Now()
			if err := cmd.Run(); err != nil {
				t.Fatalf("the hook failed BBB's publish step: %v (stderr %q)", err, stderr.String())
			}
			if took := time.Since(start); took > tt.maxTime {
				t.Errorf("the hook took %v", took)
			}
			got, _ := os.ReadFile(argsFile)
			if strings.TrimSpace(string(got)) != tt.want {
				t.Errorf("the agent got %q, want %q", strings.TrimSpace(string(got)), tt.want)
			}
			if !strings.Contains(stderr.String(), tt.stderr) {
				t.Errorf("stderr %q does not say %q", stderr.String(), tt.stderr)
			}
		})
	}
}
