package balancertest

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/bbb-agent/bbb-agent/balancer"
	"github.com/bbb-agent/bbb-agent/balancer/adminapi"
	"github.com/bbb-agent/bbb-agent/balancer/store"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// The credentials Start gives a balancer whose Config leaves them empty.
const (
	DefaultSecret     = "balancertest-secret-0123456789"
	DefaultAgentToken = "balancertest-agent-token-0123"
	DefaultAdminToken = "balancertest-admin-token-0123"
)

// Options say how to Start a balancer.
type Options struct {
	// Config is the balancer's configuration. Empty Secrets, AgentToken and
	// AdminToken get the Default ones; a nil Logger discards.
	Config balancer.Config
	// Postgres puts the store on a throwaway PostgreSQL database
	// (testenv.Postgres, which skips the test where PostgreSQL is not
	// installed) instead of SQLite in t.TempDir().
	Postgres bool
	// Run starts the balancer's background work (Server.Run: report
	// flushes, polling) until the test ends; without it only requests move
	// the balancer.
	Run bool
}

// Balancer is a balancer serving on loopback for one test.
type Balancer struct {
	// URL is where the balancer serves: the BBB API below /bigbluebutton/api,
	// the agent API and the admin API.
	URL    string
	Server *balancer.Server
	Store  *store.Store
	// Admin is an admin API client with the admin token.
	Admin *adminapi.Client
	// Client is a BBB API client with the balancer's first secret, as a
	// front end such as Greenlight uses it.
	Client *bbb.Client
	// Secret, AgentToken and AdminToken are the balancer's credentials.
	Secret, AgentToken, AdminToken string
}

// Start opens a fresh store, starts a balancer on it behind an httptest
// server and stops both when the test ends.
func Start(t testing.TB, o Options) *Balancer {
	t.Helper()
	cfg := o.Config
	if len(cfg.Secrets) == 0 {
		cfg.Secrets = []string{DefaultSecret}
	}
	if cfg.AgentToken == "" {
		cfg.AgentToken = DefaultAgentToken
	}
	if cfg.AdminToken == "" {
		cfg.AdminToken = DefaultAdminToken
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	dsn := "sqlite:" + filepath.Join(t.TempDir(), "balancer.db")
	if o.Postgres {
		dsn = testenv.Postgres(t)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatalf("balancertest: open the store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	srv, err := balancer.New(ctx, cfg, st)
	if err != nil {
		t.Fatalf("balancertest: %v", err)
	}
	if o.Run {
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv.Run(ctx)
		}()
		t.Cleanup(func() { cancel(); <-done })
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	admin, err := adminapi.NewClient(ts.URL, cfg.AdminToken)
	if err != nil {
		t.Fatalf("balancertest: %v", err)
	}
	client, err := bbb.NewClient(ts.URL, cfg.Secrets[0])
	if err != nil {
		t.Fatalf("balancertest: %v", err)
	}
	return &Balancer{URL: ts.URL, Server: srv, Store: st, Admin: admin, Client: client,
		Secret: cfg.Secrets[0], AgentToken: cfg.AgentToken, AdminToken: cfg.AdminToken}
}
