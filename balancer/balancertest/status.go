package balancertest

import (
	"encoding/json"
	"testing"

	"github.com/bbb-agent/bbb-agent/balancer/adminapi"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// Status runs `bbb-balancer --url URL --admin-token TOKEN status --json`
// with the bbb-balancer executable bin, as an operator would, and returns
// the servers it prints; it fails the test if the command fails.
func Status(t testing.TB, bin, url, adminToken string) []adminapi.Server {
	t.Helper()
	r := testenv.Run(t, nil, bin, "--url", url, "--admin-token", adminToken, "status", "--json")
	if r.Code != 0 {
		t.Fatalf("bbb-balancer status --json: %s", r)
	}
	var servers []adminapi.Server
	if err := json.Unmarshal([]byte(r.Stdout), &servers); err != nil {
		t.Fatalf("bbb-balancer status --json: %v\n%s", err, r.Stdout)
	}
	return servers
}

// Find is the first of servers that match says is the one, if any.
func Find(servers []adminapi.Server, match func(adminapi.Server) bool) (adminapi.Server, bool) {
	for _, s := range servers {
		if match(s) {
			return s, true
		}
	}
	return adminapi.Server{}, false
}
