package bbb_test

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"
)

func runCmd(t *testing.T, name string, args ...string) ([]byte, error) {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return exec.CommandContext(c, name, args...).CombinedOutput()
}

func runShell(t *testing.T, script, curl, serverURL, meetingID, alg string) ([]byte, error) {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(c, "sh", script, serverURL, meetingID, alg)
	cmd.Env = append(os.Environ(), "SECRET="+simSecret, "CURL="+curl)
	return cmd.Output()
}
