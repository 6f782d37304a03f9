package registrar

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/emulate/scalelite"
)

const (
	slSecret = "loadbalancer-secret-0123456789"
	bbbURL   = "https://bbb1.example.com"
)

// emulated is a Scalelite emulation served on loopback.
type emulated struct {
	*scalelite.Emulator
	url string
}

func newEmulated(t *testing.T, cfg scalelite.Config) emulated {
	t.Helper()
	if cfg.Secrets == nil {
		cfg.Secrets = []string{slSecret}
	}
	e := scalelite.New(cfg)
	ts := httptest.NewServer(e)
	t.Cleanup(ts.Close)
	return emulated{Emulator: e, url: ts.URL}
}

func (e emulated) registrar(t *testing.T, opts ...Option) *Scalelite {
	t.Helper()
	s, err := NewScalelite(e.url, slSecret, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// only returns the one server in the pool.
func (e emulated) only(t *testing.T) scalelite.Server {
	t.Helper()
	servers := e.Servers()
	if len(servers) != 1 {
		t.Fatalf("Scalelite emulation holds %d servers, want 1: %+v", len(servers), servers)
	}
	return servers[0]
}

func slRegistration() Registration {
	return Registration{Node: "bbb1", URL: bbbURL, Secret: nodeSecret, Role: fleet.RoleBBB}
}

func TestScaleliteEmulationRebootTwiceOneServer(t *testing.T) {
	e := newEmulated(t, scalelite.Config{})
	ctx := context.Background()
	// Three boots, each a fresh registrar, each naming the server its own way.
	for i, u := range []string{bbbURL, bbbURL + "/bigbluebutton/api", "https://bbb1.example.com:443/bigbluebutton/"} {
		r := slRegistration()
		r.URL = u
		st, err := e.registrar(t).Register(ctx, r)
		if err != nil {
			t.Fatalf("boot %d: %v", i+1, err)
		}
		if st != fleet.Enabled {
			t.Errorf("boot %d: state %q, want enabled", i+1, st)
		}
	}
	got := e.only(t)
	if got.URL != bbbURL+"/bigbluebutton/api/" || got.Secret != nodeSecret || got.State != fleet.Enabled || got.LoadMultiplier != 1 {
		t.Errorf("server = %+v", got)
	}
	calls := e.Calls()
	if calls["addServer"] != 1 || calls["getServers"] != 3 || calls["updateServer"] != 1 {
		t.Errorf("calls = %v, want 3 getServers, 1 addServer, 1 updateServer (the enable)", calls)
	}
}

// TestScaleliteEmulationRegisterKeepsState: Register on a server Scalelite
// already has never changes its state, whoever set it.
func TestScaleliteEmulationRegisterKeepsState(t *testing.T) {
	for _, st := range []fleet.AdminState{fleet.Enabled, fleet.Cordoned, fleet.Disabled} {
		t.Run(string(st), func(t *testing.T) {
			e := newEmulated(t, scalelite.Config{})
			ctx := context.Background()
			// An operator added the server (rake servers:add) before the agent came.
			srv, err := e.AddServer(bbbURL+"/bigbluebutton/api", nodeSecret)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.SetState(srv.ID, st); err != nil {
				t.Fatal(err)
			}
			got, err := e.registrar(t).Register(ctx, slRegistration())
			if err != nil {
				t.Fatal(err)
			}
			if got != st {
				t.Errorf("Register returned %q, want %q", got, st)
			}
			if now := e.only(t); now.ID != srv.ID || now.State != st {
				t.Errorf("server after Register = %+v, want id %s in state %q", now, srv.ID, st)
			}
			if calls := e.Calls(); calls["addServer"] != 0 || calls["updateServer"] != 0 {
				t.Errorf("calls = %v, want no addServer, no updateServer", calls)
			}
		})
	}
}

func TestScaleliteEmulationRegisterUpdatesDrift(t *testing.T) {
	e := newEmulated(t, scalelite.Config{})
	ctx := context.Background()
	s := e.registrar(t)
	if _, err := s.Register(ctx, slRegistration()); err != nil {
		t.Fatal(err)
	}
	if err := s.Cordon(ctx); err != nil {
		t.Fatal(err)
	}
	// bbb-conf --setsecret, a new multiplier and tags; Scalelite takes one tag.
	r := slRegistration()
	r.Secret = "rotated-secret-0123456789"
	r.LoadMultiplier = 2.5
	r.Tags = []string{"eu", "big"}
	st, err := e.registrar(t).Register(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	got := e.only(t)
	if st != fleet.Cordoned || got.State != fleet.Cordoned {
		t.Errorf("state %q, server %q; want the drain's cordon kept", st, got.State)
	}
	if got.Secret != r.Secret || got.LoadMultiplier != 2.5 || got.Tag != "eu" {
		t.Errorf("server = %+v, want the new secret, multiplier 2.5, tag eu", got)
	}
	// Nothing differs any more: a further boot only looks.
	before := e.Calls()["updateServer"]
	if _, err := e.registrar(t).Register(ctx, r); err != nil {
		t.Fatal(err)
	}
	if after := e.Calls()["updateServer"]; after != before {
		t.Errorf("a boot with nothing to change sent %d updateServer calls", after-before)
	}
}

func TestScaleliteEmulationDrainCycle(t *testing.T) {
	e := newEmulated(t, scalelite.Config{})
	ctx := context.Background()
	s := e.registrar(t)
	if s.Kind() != "scalelite" {
		t.Errorf("Kind() = %q", s.Kind())
	}
	if _, err := s.Register(ctx, slRegistration()); err != nil {
		t.Fatal(err)
	}
	report := func() fleet.AdminState {
		t.Helper()
		reply, err := s.Report(ctx, Report{Seq: 1, Load: fleet.Load{Meetings: 3}})
		if err != nil {
			t.Fatal(err)
		}
		if reply.TURNServers != nil {
			t.Errorf("Scalelite reply carries TURN servers: %v", reply.TURNServers)
		}
		return reply.State
	}
	steps := []struct {
		name string
		do   func() error
		want fleet.AdminState
	}{
		{"Cordon", func() error { return s.Cordon(ctx) }, fleet.Cordoned},
		{"Cordon again", func() error { return s.Cordon(ctx) }, fleet.Cordoned},
		{"Enable", func() error { return s.Enable(ctx) }, fleet.Enabled},
		{"operator cordons", func() error { return e.SetState(e.only(t).ID, fleet.Cordoned) }, fleet.Cordoned},
		{"operator disables", func() error { return e.SetState(e.only(t).ID, fleet.Disabled) }, fleet.Disabled},
		{"Enable (undrain)", func() error { return s.Enable(ctx) }, fleet.Enabled},
	}
	for _, step := range steps {
		if err := step.do(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if got := e.only(t).State; got != step.want {
			t.Errorf("%s: Scalelite has %q, want %q", step.name, got, step.want)
		}
		if got := report(); got != step.want {
			t.Errorf("%s: Report says %q, want %q", step.name, got, step.want)
		}
	}
	if err := s.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(e.Servers()); n != 0 {
		t.Fatalf("Scalelite emulation holds %d servers after Deregister, want 0", n)
	}
	if err := s.Deregister(ctx); err != nil {
		t.Errorf("Deregister of a server already gone: %v, want success", err)
	}
	if _, err := s.Report(ctx, Report{}); !errors.Is(err, ErrNotRegistered) {
		t.Errorf("Report after Deregister: %v, want ErrNotRegistered", err)
	}
	for name, call := range map[string]func(context.Context) error{"Cordon": s.Cordon, "Enable": s.Enable} {
		if err := call(ctx); !errors.Is(err, ErrNotRegistered) {
			t.Errorf("%s after Deregister: %v, want ErrNotRegistered", name, err)
		}
	}
	// Registering again adds the server afresh.
	if st, err := s.Register(ctx, slRegistration()); err != nil || st != fleet.Enabled {
		t.Fatalf("Register after Deregister = %q, %v; want enabled", st, err)
	}
	if got := report(); got != fleet.Enabled {
		t.Errorf("Report after registering again: %q", got)
	}
}

// TestScaleliteEmulationEnableRetried: when enabling the server it just
// added fails, a retried Register enables it and adds nothing.
func TestScaleliteEmulationEnableRetried(t *testing.T) {
	e := newEmulated(t, scalelite.Config{})
	ctx := context.Background()
	s := e.registrar(t)
	e.SetFault("updateServer", scalelite.InternalError)
	if _, err := s.Register(ctx, slRegistration()); err == nil || errors.Is(err, ErrRejected) {
		t.Fatalf("Register with updateServer failing: %v, want a plain error", err)
	}
	if got := e.only(t).State; got != fleet.Disabled {
		t.Fatalf("server added but not enabled is %q, want disabled", got)
	}
	e.SetFault("updateServer", scalelite.NoFault)
	st, err := s.Register(ctx, slRegistration())
	if err != nil || st != fleet.Enabled {
		t.Fatalf("retried Register = %q, %v; want enabled", st, err)
	}
	if got := e.only(t).State; got != fleet.Enabled {
		t.Errorf("server is %q after the retry, want enabled", got)
	}
	if n := e.Calls()["addServer"]; n != 1 {
		t.Errorf("%d addServer calls, want 1", n)
	}
}

// TestScaleliteEmulationConcurrentRegister: retries racing on one registrar
// still add the server once.
func TestScaleliteEmulationConcurrentRegister(t *testing.T) {
	e := newEmulated(t, scalelite.Config{})
	s := e.registrar(t)
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for range 5 {
		wg.Go(func() {
			_, err := s.Register(context.Background(), slRegistration())
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := e.only(t); got.State != fleet.Enabled {
		t.Errorf("server = %+v, want enabled", got)
	}
}

func TestScaleliteEmulationServerIDIsHostname(t *testing.T) {
	e := newEmulated(t, scalelite.Config{IDIsHostname: true})
	ctx := context.Background()
	for range 2 {
		if _, err := e.registrar(t).Register(ctx, slRegistration()); err != nil {
			t.Fatal(err)
		}
	}
	s := e.registrar(t)
	if _, err := s.Register(ctx, slRegistration()); err != nil {
		t.Fatal(err)
	}
	if err := s.Cordon(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.only(t); got.ID != "bbb1.example.com" || got.State != fleet.Cordoned {
		t.Errorf("server = %+v, want id bbb1.example.com, cordoned", got)
	}
}

func TestScaleliteEmulationRefusals(t *testing.T) {
	tests := []struct {
		name    string
		cfg     scalelite.Config
		secret  string
		opts    []Option
		reg     func(*Registration)
		want    error
		message string
	}{
		{"wrong secret", scalelite.Config{}, "wrong-secret-0123456789", nil, nil,
			ErrUnauthorized, "checksumError"},
		{"algorithm Scalelite does not accept by default", scalelite.Config{}, slSecret,
			[]Option{WithChecksumAlgorithm(bbb.SHA384)}, nil, ErrUnauthorized, "LOADBALANCER_CHECKSUM_ALGORITHM"},
		{"algorithm Scalelite was told to refuse", scalelite.Config{Algorithms: []bbb.Algorithm{bbb.SHA512}}, slSecret,
			nil, nil, ErrUnauthorized, "checksumError"},
		{"TURN node", scalelite.Config{}, slSecret, nil, func(r *Registration) { r.Role = fleet.RoleTURN },
			ErrRejected, "BBB servers only"},
		{"no BBB secret", scalelite.Config{}, slSecret, nil, func(r *Registration) { r.Secret = "" },
			ErrRejected, "BBB secret is empty"},
		{"bad URL", scalelite.Config{}, slSecret, nil, func(r *Registration) { r.URL = "bbb1.example.com" },
			ErrRejected, "want http(s)://host"},
		{"negative load multiplier", scalelite.Config{}, slSecret, nil, func(r *Registration) { r.LoadMultiplier = -1 },
			ErrRejected, "must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEmulated(t, tt.cfg)
			s, err := NewScalelite(e.url, tt.secret, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			r := slRegistration()
			if tt.reg != nil {
				tt.reg(&r)
			}
			_, err = s.Register(context.Background(), r)
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.message) {
				t.Errorf("error %q does not say %q", err, tt.message)
			}
			assertNoSecrets(t, err, tt.secret, slSecret, nodeSecret)
			if n := len(e.Servers()); n != 0 {
				t.Errorf("a refused Register left %d servers", n)
			}
		})
	}
}

func TestScaleliteEmulationNotRegistered(t *testing.T) {
	e := newEmulated(t, scalelite.Config{})
	ctx := context.Background()
	fresh := e.registrar(t)
	if _, err := fresh.Report(ctx, Report{}); !errors.Is(err, ErrNotRegistered) {
		t.Errorf("Report before Register: %v, want ErrNotRegistered", err)
	}
	if err := fresh.Deregister(ctx); !errors.Is(err, ErrNotRegistered) {
		t.Errorf("Deregister before Register: %v, want ErrNotRegistered", err)
	}
	if len(e.Calls()) != 0 {
		t.Errorf("calls before registering: %v, want none", e.Calls())
	}
	// An operator removes the server the agent registered.
	s := e.registrar(t)
	if _, err := s.Register(ctx, slRegistration()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.registrar(t).Register(ctx, slRegistration()); err != nil {
		t.Fatal(err)
	}
	other := e.registrar(t)
	if _, err := other.Register(ctx, slRegistration()); err != nil {
		t.Fatal(err)
	}
	if err := other.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := s.Report(ctx, Report{})
	if !errors.Is(err, ErrNotRegistered) || !strings.Contains(err.Error(), "Server not found") {
		t.Errorf("Report on a removed server: %v, want ErrNotRegistered quoting Scalelite", err)
	}
	if err := s.Deregister(ctx); err != nil {
		t.Errorf("Deregister of a removed server: %v, want success", err)
	}
}

// TestScaleliteEmulationFaults: Scalelite failing, switched off or hanging
// gives plain errors (the caller retries) or ErrRejected (it will not help).
func TestScaleliteEmulationFaults(t *testing.T) {
	tests := []struct {
		name    string
		action  string
		fault   scalelite.Fault
		opts    []Option
		is      error
		message string
	}{
		{"HTTP 500", "getServers", scalelite.InternalError, nil, nil, "HTTP 500 Internal Server Error (text/html"},
		{"HTTP 500 on add", "addServer", scalelite.InternalError, nil, nil, "addServer: HTTP 500"},
		{"no server API", "", scalelite.Unsupported, nil, ErrRejected, "needs Scalelite 1.5.1 or later"},
		{"hangs", "", scalelite.Hang, []Option{WithTimeout(20 * time.Millisecond)}, context.DeadlineExceeded, "no answer within 20ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEmulated(t, scalelite.Config{})
			e.SetFault(tt.action, tt.fault)
			_, err := e.registrar(t, tt.opts...).Register(context.Background(), slRegistration())
			if err == nil {
				t.Fatal("Register succeeded")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v, want it to wrap %v", err, tt.is)
			}
			if tt.is == nil && (errors.Is(err, ErrRejected) || errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrNotRegistered)) {
				t.Errorf("error %v wraps a sentinel; want a plain error to retry", err)
			}
			if !strings.Contains(err.Error(), tt.message) {
				t.Errorf("error %q does not say %q", err, tt.message)
			}
			assertNoSecrets(t, err, slSecret, nodeSecret)
		})
	}
}

// TestScaleliteBrokenServer points the registrar at servers that are not
// Scalelite.
func TestScaleliteBrokenServer(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		message string
	}{
		{"garbage with HTTP 200", func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, "secret "+nodeSecret)
		}, "getServers: the answer is not the expected JSON (text/plain"},
		{"a server without a state", func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/getServers") {
				_, _ = io.WriteString(w, `[{"id":"a","url":"https://bbb1.example.com/bigbluebutton/api","secret":"`+nodeSecret+`"}]`)
				return
			}
			http.Error(w, "no", http.StatusTeapot)
		}, "no valid state"},
		{"a server without an id", func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, `[{"url":"https://bbb1.example.com/bigbluebutton/api","secret":"`+nodeSecret+`","state":"enabled"}]`)
		}, "lists the server without an id"},
		{"not Scalelite", http.NotFound, "no Scalelite server API here"},
		{"Scalelite failing in BBB's way", func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, "<response><returncode>FAILED</returncode><messageKey>internalError</messageKey>"+
				"<message>database "+slSecret+" down</message></response>")
		}, "Scalelite failed (internalError: database [redacted] down)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := httptest.NewServer(tt.handler)
			defer ts.Close()
			s, err := NewScalelite(ts.URL, slSecret)
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Register(context.Background(), slRegistration())
			if err == nil {
				t.Fatal("Register succeeded")
			}
			if errors.Is(err, ErrRejected) || errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrNotRegistered) {
				t.Errorf("error %v wraps a sentinel; want a plain error to retry", err)
			}
			if !strings.Contains(err.Error(), tt.message) {
				t.Errorf("error %q does not say %q", err, tt.message)
			}
			assertNoSecrets(t, err, slSecret, nodeSecret)
		})
	}
}

// TestScaleliteLenientAnswers reads answers in the shapes the documentation
// and real servers use: every field a string, the older "enabled" flag,
// numbers, nulls.
func TestScaleliteLenientAnswers(t *testing.T) {
	tests := []struct {
		name, server string
		want         fleet.AdminState
	}{
		{"documented strings", `{"id":"7","url":"U","secret":"S","tag":"","state":"cordoned","load":"1.5","load_multiplier":"1.0","online":"online"}`, fleet.Cordoned},
		{"numbers and null", `{"id":7,"url":"U","secret":"S","tag":null,"state":"enabled","load":0.0,"load_multiplier":2,"online":true}`, fleet.Enabled},
		{"enabled flag true", `{"id":"7","url":"U","secret":"S","enabled":true}`, fleet.Enabled},
		{"enabled flag false", `{"id":"7","url":"U","secret":"S","enabled":"false"}`, fleet.Disabled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server := strings.NewReplacer(`"U"`, `"`+bbbURL+`/bigbluebutton/api"`, `"S"`, `"`+nodeSecret+`"`).Replace(tt.server)
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, "/getServers") {
					_, _ = io.WriteString(w, "["+server+"]")
					return
				}
				_, _ = io.WriteString(w, server)
			}))
			defer ts.Close()
			s, err := NewScalelite(ts.URL, slSecret)
			if err != nil {
				t.Fatal(err)
			}
			st, err := s.Register(context.Background(), slRegistration())
			if err != nil {
				t.Fatal(err)
			}
			reply, err := s.Report(context.Background(), Report{})
			if err != nil {
				t.Fatal(err)
			}
			if st != tt.want || reply.State != tt.want {
				t.Errorf("Register %q, Report %q; want %q", st, reply.State, tt.want)
			}
		})
	}
}

func TestNewScaleliteURLs(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://sl.example.com", "https://sl.example.com/scalelite/api"},
		{"https://sl.example.com/", "https://sl.example.com/scalelite/api"},
		{"https://sl.example.com/scalelite/api/", "https://sl.example.com/scalelite/api"},
		{"https://sl.example.com/bigbluebutton/api", "https://sl.example.com/scalelite/api"},
		{"https://sl.example.com/bigbluebutton/", "https://sl.example.com/scalelite/api"},
		{"http://10.0.0.5:3000/prefix", "http://10.0.0.5:3000/prefix/scalelite/api"},
	}
	for _, tt := range tests {
		s, err := NewScalelite(tt.in, slSecret)
		if err != nil {
			t.Errorf("NewScalelite(%q): %v", tt.in, err)
			continue
		}
		if s.base != tt.want {
			t.Errorf("NewScalelite(%q) calls %q, want %q", tt.in, s.base, tt.want)
		}
	}
	for _, bad := range []struct{ url, secret, message string }{
		{"sl.example.com", slSecret, "want http(s)://host"},
		{"https://sl.example.com", "", "no Scalelite secret"},
	} {
		if _, err := NewScalelite(bad.url, bad.secret); err == nil || !strings.Contains(err.Error(), bad.message) {
			t.Errorf("NewScalelite(%q, %q): %v, want an error saying %q", bad.url, bad.secret, err, bad.message)
		}
	}
}
