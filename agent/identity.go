package agent

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/bbb-agent/bbb-agent/internal/fsutil"
)

// nodeNameFile keeps a generated node name across restarts.
const nodeNameFile = "node-name"

var validName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// NodeName resolves the node's name. A configured name is used as given;
// "{instance-id}" in it is replaced by the EC2 instance ID. Without one, the
// name generated on first start ("bbb-" and six random [a-z0-9]) is read back
// from stateDir, so a restart or a reboot keeps the node's identity.
func NodeName(ctx context.Context, configured, stateDir string, instanceID func(context.Context) (string, error)) (string, error) {
	if configured != "" {
		name := configured
		if strings.Contains(name, "{instance-id}") {
			if instanceID == nil {
				return "", fmt.Errorf("node name %q uses {instance-id} but EC2 metadata is not enabled", configured)
			}
			id, err := instanceID(ctx)
			if err != nil {
				return "", fmt.Errorf("node name %q: reading the EC2 instance ID: %w", configured, err)
			}
			name = strings.ReplaceAll(name, "{instance-id}", id)
		}
		name = strings.ToLower(name)
		if !validName.MatchString(name) {
			return "", fmt.Errorf("node name %q: use 1 to 63 lower-case letters, digits and inner hyphens (it becomes a DNS name)", name)
		}
		return name, nil
	}
	if stateDir == "" {
		return "", errors.New("no node name and no state directory to keep a generated one in: give --node-name or --state-dir")
	}
	path := filepath.Join(stateDir, nodeNameFile)
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		name := strings.TrimSpace(string(data))
		if !validName.MatchString(name) {
			return "", fmt.Errorf("%s holds %q, which is not a node name: fix or delete the file", path, name)
		}
		return name, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("reading the node name: %w", err)
	}
	name := "bbb-" + randomSuffix(6)
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return "", fmt.Errorf("keeping the generated node name: %w", err)
	}
	if err := fsutil.WriteFile(path, []byte(name+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("keeping the generated node name: %w", err)
	}
	return name, nil
}

func randomSuffix(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
