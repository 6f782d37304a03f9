package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
	"github.com/bbb-agent/bbb-agent/turn"
)

// TestTURNRoles: `bbb-agent run --role turn` in front of a real coturn joins
// the fleet as a TURN node; a BBB node's agent with the fleet's TURN secret
// writes turn-stun-servers.xml naming it; a TURN agent whose secret is wrong
// for its coturn is never offered.
func TestTURNRoles(t *testing.T) {
	const secret = "e2e-turn-secret-0123456789"
	f := newFleet(t)
	coturn := testenv.Coturn(t, secret)
	other := testenv.Coturn(t, "another-secret-0123456789")
	s := f.startSim("turn-host")
	turnURI := "turn:" + coturn.Addr
	tn := f.startAgent(s, agentOpts{nodeName: "turn1", args: []string{"--role", "turn", "--turn-uri", turnURI, "--turn-secret", secret}})
	tn.secrets = append(tn.secrets, secret)
	bad := f.startAgent(s, agentOpts{nodeName: "turn-bad", args: []string{"--role", "turn", "--turn-uri", "turn:" + other.Addr, "--turn-secret", secret}})
	bad.secrets = append(bad.secrets, secret)
	testenv.Eventually(t, 2*interval+slack, "the TURN node online", func() bool {
		srv, ok := f.server("turn1")
		return ok && srv.Online && srv.Role == fleet.RoleTURN
	})
	if st, _, ok := bad.status(t); !ok || st.TURNError == "" {
		t.Fatalf("the TURN agent with the wrong secret does not say its probe fails: %+v", st)
	}

	xml := filepath.Join(t.TempDir(), "turn-stun-servers.xml")
	b := f.startAgent(s, agentOpts{nodeName: "bbb-turn-user", args: []string{"--turn-secret", secret, "--turn-stun-xml", xml}})
	b.secrets = append(b.secrets, secret)
	testenv.Eventually(t, 2*interval+slack, "turn-stun-servers.xml names turn1", func() bool {
		data, err := os.ReadFile(xml)
		if err != nil {
			return false
		}
		set, err := turn.Parse(data)
		return err == nil && len(set.TURN) == 1 && set.TURN[0].URL == turnURI && set.TURN[0].Secret == secret
	})
	st, _, ok := b.status(t)
	if !ok || st.TURN == nil || len(st.TURN.InUse) != 1 || st.TURN.WrittenAt.IsZero() {
		t.Fatalf("status turn: %+v", st.TURN)
	}
	if r := b.admin(t, "status"); !strings.Contains(r.Stdout, "in use: "+turnURI) {
		t.Fatalf("status text:\n%s", r)
	}
	if r := testenv.Run(t, nil, f.bin.Balancer, "--url", f.url, "--admin-token", adminToken, "status"); !strings.Contains(r.Stdout, "TURN servers:") || !strings.Contains(r.Stdout, "turn1") {
		t.Fatalf("bbb-balancer status does not list the TURN node apart:\n%s", r)
	}
}
