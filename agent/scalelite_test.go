package agent

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/emulate/scalelite"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
	"github.com/bbb-agent/bbb-agent/registrar"
)

// TestScaleliteRebootsEmulated: an agent on a Scalelite fleet (emulated
// Scalelite API) registers its node, survives two reboots without a second
// server entry, follows an operator's cordon, and on drain cordons and then
// deletes its server.
func TestScaleliteRebootsEmulated(t *testing.T) {
	const slSecret = "scalelite-lb-secret-0123456789"
	emu := scalelite.New(scalelite.Config{Secrets: []string{slSecret}})
	ts := httptest.NewServer(emu)
	t.Cleanup(ts.Close)
	n := newNode(t, "bbb1")
	c, _ := bbb.NewClient(n.http.URL, n.secret)

	boot := func() (*Agent, context.CancelFunc, chan error) {
		reg, err := registrar.NewScalelite(ts.URL, slSecret)
		if err != nil {
			t.Fatal(err)
		}
		a, err := New(Config{Node: n.name, ServerURL: n.http.URL, Secret: n.secret, ReportInterval: interval, Logger: slog.New(slog.DiscardHandler)},
			Deps{Registrar: reg, BBB: c})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		t.Cleanup(cancel)
		testenv.Eventually(t, 2*time.Second, "registered", func() bool { return a.Status().State == Ready })
		return a, cancel, done
	}
	for i := 0; i < 3; i++ { // first boot and two reboots
		_, cancel, done := boot()
		servers := emu.Servers()
		if len(servers) != 1 || servers[0].State != fleet.Enabled {
			t.Fatalf("boot %d: %+v", i, servers)
		}
		cancel()
		<-done
	}

	a, _, done := boot()
	id := emu.Servers()[0].ID
	if _, err := c.Create(context.Background(), bbb.CreateRequest{MeetingID: "on-scalelite", Name: "x"}); err != nil {
		t.Fatal(err)
	}
	emu.SetState(id, fleet.Cordoned) // an operator's cordon in Scalelite
	testenv.Eventually(t, time.Second, "draining after the operator's cordon", func() bool { return a.State() == Draining })
	if err := c.End(context.Background(), "on-scalelite", ""); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(3 * time.Second):
		t.Fatalf("drain did not finish: %+v", a.Status())
	}
	if servers := emu.Servers(); len(servers) != 0 {
		t.Fatalf("server left in Scalelite after the drain: %+v", servers)
	}
}
