package registrar

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bbb-agent/bbb-agent/fleet"
)

// The node credential: issued at the first registration, kept 0600 in the
// state directory, sent instead of the agent token from then on, rotated on
// demand, and a conflict surfaces as a ConflictError with the balancer's words.
func TestNodeCredential(t *testing.T) {
	l := newLB(t)
	ctx := t.Context()
	file := filepath.Join(t.TempDir(), "state", "node-credential")
	b := l.registrar(t, WithCredentialFile(file))
	if _, err := b.Register(ctx, l.registration("bbb1")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatalf("no credential file: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("credential file mode %v, want 0600", fi.Mode().Perm())
	}
	raw, _ := os.ReadFile(file)
	cred := strings.TrimSpace(string(raw))
	if len(cred) < 40 || cred == agentToken {
		t.Fatalf("credential %q", cred)
	}
	if b.bearer() != cred {
		t.Error("later calls would not carry the node credential")
	}
	if _, err := b.Report(ctx, Report{Seq: 1, Load: fleet.Load{BBBHealthy: true}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Cordon(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Enable(ctx); err != nil {
		t.Fatal(err)
	}

	// A restarted agent reads the file and is still the node.
	again := l.registrar(t, WithCredentialFile(file))
	if _, err := again.Register(ctx, l.registration("bbb1")); err != nil {
		t.Fatalf("the restarted agent: %v", err)
	}
	if err := again.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	raw, _ = os.ReadFile(file)
	if rotated := strings.TrimSpace(string(raw)); rotated == cred || again.bearer() != rotated {
		t.Error("rotation did not replace the kept credential")
	}
	if _, err := again.Report(ctx, Report{Seq: 2, Load: fleet.Load{BBBHealthy: true}}); err != nil {
		t.Fatalf("report with the rotated credential: %v", err)
	}

	// Another agent with the same name (a copied agent.yaml) is refused.
	clone := l.registrar(t, WithCredentialFile(filepath.Join(t.TempDir(), "node-credential")))
	_, err = clone.Register(ctx, l.registration("bbb1"))
	var conflict *ConflictError
	if !errors.As(err, &conflict) || !errors.Is(err, ErrRejected) {
		t.Fatalf("clone: %v, want a ConflictError", err)
	}
	for _, want := range []string{"bbb1", "servers remove bbb1", "allow-takeover bbb1", "--takeover"} {
		if !strings.Contains(conflict.Message, want) {
			t.Errorf("the conflict does not say %q: %s", want, conflict.Message)
		}
	}
	// With the operator's leave and --takeover it gets the node.
	if _, err := l.admin.AllowTakeover(ctx, "bbb1"); err != nil {
		t.Fatal(err)
	}
	taker := l.registrar(t, WithCredentialFile(filepath.Join(t.TempDir(), "node-credential")), WithTakeover(true))
	if _, err := taker.Register(ctx, l.registration("bbb1")); err != nil {
		t.Fatalf("takeover allowed by the operator: %v", err)
	}
	if _, err := again.Report(ctx, Report{Seq: 3}); !errors.Is(err, ErrNotRegistered) {
		t.Errorf("the old agent after the takeover: %v, want ErrNotRegistered (so that it registers again and hears why)", err)
	}
	if _, err := again.Register(ctx, l.registration("bbb1")); !errors.As(err, &conflict) {
		t.Errorf("the old agent registering again after the takeover: %v, want a ConflictError", err)
	}

	// An operator removes the node: its agent registers it anew.
	servers, _ := l.admin.Servers(ctx)
	for _, s := range servers {
		if _, err := l.admin.RemoveServer(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := taker.Register(ctx, l.registration("bbb1")); err != nil {
		t.Fatalf("registering after a removal: %v", err)
	}
}
