package balancertest

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/bbb/sim"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
	"github.com/bbb-agent/bbb-agent/registrar"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestStart: a node registered through the agent API shows in the admin
// API, and the BBB API client's create lands on it; on both stores.
func TestStart(t *testing.T) {
	for _, pg := range []bool{false, true} {
		name := map[bool]string{false: "sqlite", true: "postgres"}[pg]
		t.Run(name, func(t *testing.T) {
			lb := Start(t, Options{Postgres: pg})
			if lb.Secret != DefaultSecret || lb.AgentToken != DefaultAgentToken || lb.AdminToken != DefaultAdminToken {
				t.Errorf("credentials %q %q %q, want the defaults", lb.Secret, lb.AgentToken, lb.AdminToken)
			}
			node := httptest.NewServer(sim.New(sim.Config{Secret: "node-secret-0123456789"}))
			t.Cleanup(node.Close)
			reg, err := registrar.NewBalancer(lb.URL, lb.AgentToken)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if _, err := reg.Register(ctx, registrar.Registration{Node: "bbb1", URL: node.URL, Secret: "node-secret-0123456789",
				Role: fleet.RoleBBB, ReportInterval: 5 * time.Second}); err != nil {
				t.Fatalf("register: %v", err)
			}
			if _, err := reg.Report(ctx, registrar.Report{Load: fleet.Load{BBBHealthy: true}}); err != nil {
				t.Fatalf("report: %v", err)
			}
			servers, err := lb.Admin.Servers(ctx)
			if err != nil || len(servers) != 1 || servers[0].Name != "bbb1" {
				t.Fatalf("admin servers: %+v, %v; want bbb1", servers, err)
			}
			res, err := lb.Client.Create(ctx, bbb.CreateRequest{MeetingID: "m1", Name: "M1"})
			if err != nil || res.ReturnCode != bbb.ReturnSuccess {
				t.Fatalf("create through the balancer: %+v, %v", res, err)
			}
		})
	}
}
