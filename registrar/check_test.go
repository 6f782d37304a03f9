package registrar

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/bbb-agent/bbb-agent/internal/emulate/scalelite"
)

// TestCheck: both registrars tell a working balancer from a wrong
// credential and from something that is not a balancer, changing nothing.
func TestCheck(t *testing.T) {
	ctx := context.Background()
	l := newLB(t)
	if err := l.registrar(t).Check(ctx); err != nil {
		t.Fatalf("balancer, right token: %v", err)
	}
	wrong, _ := NewBalancer(l.url, "not-the-token")
	if err := wrong.Check(ctx); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("balancer, wrong token: %v", err)
	}
	if servers, _ := l.admin.Servers(ctx); len(servers) != 0 {
		t.Fatalf("check changed the fleet: %+v", servers)
	}
	notLB := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(notLB.Close)
	other, _ := NewBalancer(notLB.URL, agentToken)
	if err := other.Check(ctx); err == nil || errors.Is(err, ErrUnauthorized) {
		t.Fatalf("not a balancer: %v", err)
	}

	e := newEmulated(t, scalelite.Config{})
	if err := e.registrar(t).Check(ctx); err != nil {
		t.Fatalf("scalelite, right secret: %v", err)
	}
	bad, _ := NewScalelite(e.url, "wrong-secret-0123456789")
	if err := bad.Check(ctx); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("scalelite, wrong secret: %v", err)
	}
}
