package agent

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/bbb/sim"
	"github.com/bbb-agent/bbb-agent/dnsupdate"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
	"github.com/bbb-agent/bbb-agent/registrar"
)

var errUnreachable = errors.New("connection refused (the balancer is down)")

// fakeRegistrar records the calls the drain makes; fail makes a method fail
// (always), onDeregister runs inside Deregister.
type fakeRegistrar struct {
	mu           sync.Mutex
	calls        []string
	fail         map[string]bool
	onDeregister func()
}

func (f *fakeRegistrar) do(name string) error {
	f.mu.Lock()
	f.calls = append(f.calls, name)
	fail := f.fail[name]
	f.mu.Unlock()
	if fail {
		return errUnreachable
	}
	return nil
}

func (f *fakeRegistrar) Kind() string { return "fake" }
func (f *fakeRegistrar) Register(context.Context, registrar.Registration) (fleet.AdminState, error) {
	return fleet.Enabled, f.do("register")
}
func (f *fakeRegistrar) Report(context.Context, registrar.Report) (registrar.Reply, error) {
	return registrar.Reply{State: fleet.Enabled}, f.do("report")
}
func (f *fakeRegistrar) Cordon(context.Context) error { return f.do("cordon") }
func (f *fakeRegistrar) Enable(context.Context) error { return f.do("enable") }
func (f *fakeRegistrar) Deregister(context.Context) error {
	if f.onDeregister != nil {
		f.onDeregister()
	}
	return f.do("deregister")
}
func (f *fakeRegistrar) Check(context.Context) error { return f.do("check") }

// fakeDNS counts removals.
type fakeDNS struct{ removed int }

func (f *fakeDNS) Apply(context.Context, netip.Addr, netip.Addr) (dnsupdate.Plan, error) {
	return dnsupdate.Plan{}, nil
}
func (f *fakeDNS) Remove(context.Context) (dnsupdate.Plan, error) {
	f.removed++
	return dnsupdate.Plan{}, nil
}
func (f *fakeDNS) Visible(context.Context, netip.Addr, netip.Addr) error { return nil }

// fakeScaleIn counts heartbeats and completions.
type fakeScaleIn struct{ beats, completed int }

func (f *fakeScaleIn) Terminating(context.Context) (bool, error) { return false, nil }
func (f *fakeScaleIn) Heartbeat(context.Context) error           { f.beats++; return nil }
func (f *fakeScaleIn) Complete(context.Context) error            { f.completed++; return nil }

// fakeShutdown counts releases and reacquisitions of logind's lock.
type fakeShutdown struct{ released, reacquired int }

func (f *fakeShutdown) Events() <-chan bool                 { return nil }
func (f *fakeShutdown) Release() error                      { f.released++; return nil }
func (f *fakeShutdown) Reacquire(ctx context.Context) error { f.reacquired++; return nil }

// drainAct is one thing that happens to a drain, in a test's script; after
// it the drain is in phase want ("" when no drain runs any more).
type drainAct struct {
	advance  time.Duration // the clock moves first
	tick     bool          // a measurement: meetings, BBB answering or not
	meetings int
	bbbDown  bool
	undrain  bool   // `bbb-agent undrain`
	refused  string // the undrain's error must say this ("" : accepted)
	logind   bool   // logind cancels the shutdown
	register bool   // the node registers again (the balancer lost it)
	gone     bool   // a report finds the node removed at the balancer
	enabled  bool   // a report finds the node enabled at the balancer
	stop     bool   // the agent is stopped (SIGTERM: the host goes away)
	msg      string // the drain's status message must say this
	want     drainPhase
}

func tick(meetings int) drainAct { return drainAct{tick: true, meetings: meetings} }

// bbbDown is a measurement after d on the clock, BBB not answering.
func bbbDown(d time.Duration) drainAct { return drainAct{advance: d, tick: true, bbbDown: true} }
func (x drainAct) then(p drainPhase) drainAct {
	x.want = p
	return x
}

const noDrain drainPhase = ""

// TestDrainPhases drives the drain's steps with a fake clock and fakes for
// everything it talks to: nothing sleeps, the deregistration's retry waits
// pass when the test moves the clock.
func TestDrainPhases(t *testing.T) {
	const deadline = time.Hour
	tests := []struct {
		name      string
		source    DrainSource
		unreg     bool            // never registered
		fail      map[string]bool // registrar methods that fail
		undrainIn bool            // an undrain arrives while deregistering
		script    []drainAct
		calls     []string // the registrar's calls, in order
		why       string   // how the drain finished ("" : it did not)
		err       string   // Run's result must say this
		state     State
		dnsGone   bool
		released  int // logind's lock
		completed int // the scale-in lifecycle action
		beats     int
	}{{
		name: "meetings end, then deregister", source: SourceAdmin,
		script: []drainAct{tick(2).then(drainWait), tick(1).then(drainWait), tick(0).then(drainWait), tick(0).then(drainDone)},
		calls:  []string{"cordon", "deregister"}, why: "no meetings left", state: Drained, dnsGone: true, released: 1,
	}, {
		name: "one empty measurement is not enough", source: SourceAdmin,
		script: []drainAct{tick(0).then(drainWait), tick(1).then(drainWait), tick(0).then(drainWait), tick(0).then(drainDone)},
		calls:  []string{"cordon", "deregister"}, why: "no meetings left", state: Drained, dnsGone: true, released: 1,
	}, {
		name: "BBB not answering is not empty", source: SourceAdmin,
		script: []drainAct{tick(0).then(drainWait), {tick: true, bbbDown: true, want: drainWait}, tick(0).then(drainWait), tick(0).then(drainDone)},
		calls:  []string{"cordon", "deregister"}, why: "no meetings left", state: Drained, dnsGone: true, released: 1,
	}, {
		name: "BBB not answering within the grace: the wait goes on; an answer resets the timer", source: SourceAdmin,
		script: []drainAct{tick(1).then(drainWait),
			{advance: time.Minute, tick: true, bbbDown: true, msg: "BBB not answering for 0s: meetings unknown", want: drainWait},
			{advance: 5 * time.Minute, tick: true, bbbDown: true, msg: "BBB not answering for 5m0s: meetings unknown", want: drainWait},
			bbbDown(4*time.Minute + 59*time.Second).then(drainWait),
			{tick: true, meetings: 1, msg: "draining: 1 meeting left", want: drainWait}, // BBB answers: the timer starts again
			bbbDown(time.Minute).then(drainWait), bbbDown(9*time.Minute + 59*time.Second).then(drainWait),
			bbbDown(time.Second).then(drainDone)},
		calls: []string{"cordon", "deregister"}, why: "BBB not answering for 10m0s (longer than the grace 10m0s): meetings treated as none left",
		state: Drained, dnsGone: true, released: 1,
	}, {
		name: "deadline with meetings running: leaving, released once, deregistered once they end", source: SourceAdmin,
		script: []drainAct{tick(3).then(drainWait), {advance: deadline - time.Second, tick: true, meetings: 3, want: drainWait},
			{advance: time.Second, tick: true, meetings: 3, msg: "leaving: past the deadline with 3 meetings running, joinable", want: drainLeaving},
			{tick: true, meetings: 1, msg: "leaving: past the deadline with 1 meeting running, joinable", want: drainLeaving},
			{undrain: true, refused: "past its deadline", want: drainLeaving},
			tick(0).then(drainLeaving), tick(0).then(drainDone)},
		calls: []string{"cordon", "deregister"}, why: "deadline reached; the meetings then ended", state: Drained, dnsGone: true, released: 1,
	}, {
		name: "scale-in deadline: the lifecycle action completes at the deadline, once", source: SourceScaleIn,
		script: []drainAct{tick(1).then(drainWait), {advance: deadline, tick: true, meetings: 1, want: drainLeaving},
			{advance: 2 * time.Minute, tick: true, meetings: 1, want: drainLeaving}, tick(0).then(drainLeaving), tick(0).then(drainDone)},
		calls: []string{"cordon", "deregister"}, why: "deadline reached; the meetings then ended", state: Drained, dnsGone: true, released: 1,
		completed: 1, beats: 2, // the first measurement's and the deadline's; none once completed
	}, {
		name: "leaving: a new registration cordons again, no second release", source: SourceAdmin,
		script: []drainAct{tick(1).then(drainWait), {advance: deadline, tick: true, meetings: 1, want: drainLeaving},
			{register: true, want: drainCordon}, tick(1).then(drainLeaving), tick(0).then(drainLeaving), tick(0).then(drainDone)},
		calls: []string{"cordon", "register", "cordon", "deregister"}, why: "deadline reached; the meetings then ended", state: Drained, dnsGone: true, released: 1,
	}, {
		name: "leaving: enabled again at the balancer, cordoned again", source: SourceAdmin,
		script: []drainAct{tick(1).then(drainWait), {advance: deadline, tick: true, meetings: 1, want: drainLeaving},
			{enabled: true, want: drainLeaving}, tick(1).then(drainLeaving), tick(0).then(drainLeaving), tick(0).then(drainDone)},
		calls: []string{"cordon", "cordon", "deregister"}, why: "deadline reached; the meetings then ended", state: Drained, dnsGone: true, released: 1,
	}, {
		name: "leaving: the balancer removed the node", source: SourceAdmin,
		script: []drainAct{tick(1).then(drainWait), {advance: deadline, tick: true, meetings: 1, want: drainLeaving},
			{gone: true, want: drainLeaving}, tick(1).then(drainDone)},
		calls: []string{"cordon"}, why: "deadline reached; the balancer removed the node", state: Drained, dnsGone: true, released: 1,
	}, {
		name: "leaving: the agent stops as the host goes away", source: SourceShutdown,
		script: []drainAct{tick(2).then(drainWait), {advance: deadline, tick: true, meetings: 2, want: drainLeaving},
			{stop: true, want: drainLeaving}},
		calls: []string{"cordon", "deregister"}, state: Draining, dnsGone: true, released: 1,
	}, {
		name: "BBB not answering at the deadline: leaving until the grace runs out", source: SourceAdmin,
		script: []drainAct{tick(1).then(drainWait), bbbDown(deadline - time.Minute).then(drainWait),
			{advance: time.Minute, tick: true, bbbDown: true, msg: "leaving: past the deadline; BBB not answering for 1m0s: meetings unknown", want: drainLeaving},
			{advance: 8 * time.Minute, tick: true, bbbDown: true, msg: "leaving: past the deadline; BBB not answering for 9m0s: meetings unknown", want: drainLeaving},
			bbbDown(time.Minute).then(drainDone)},
		calls: []string{"cordon", "deregister"}, state: Drained, dnsGone: true, released: 1,
		why: "deadline reached; BBB then not answering for 10m0s (longer than the grace 10m0s): meetings treated as none left",
	}, {
		name: "a drain by signal deregisters at its deadline: the host waits for the agent", source: SourceSignal,
		script: []drainAct{tick(3).then(drainWait), {advance: deadline, tick: true, meetings: 3, want: drainDone}},
		calls:  []string{"cordon", "deregister"}, why: "deadline reached", state: Drained, dnsGone: true, released: 1,
	}, {
		name: "undrain during the cordon", source: SourceAdmin, fail: map[string]bool{"cordon": true},
		script: []drainAct{tick(2).then(drainCordon), {undrain: true, want: noDrain}},
		calls:  []string{"cordon", "cordon", "enable"}, state: Ready,
	}, {
		name: "undrain during the wait", source: SourceBalancer,
		script: []drainAct{tick(2).then(drainWait), {undrain: true, want: noDrain}, tick(0).then(noDrain)},
		calls:  []string{"cordon", "enable"}, state: Ready,
	}, {
		name: "undrain refused once deregistering", source: SourceAdmin, undrainIn: true,
		script: []drainAct{tick(0).then(drainWait), tick(0).then(drainDone)},
		calls:  []string{"cordon", "deregister"}, why: "no meetings left", state: Drained, dnsGone: true, released: 1,
	}, {
		name: "undrain refused for a drain the host asked for", source: SourceSignal,
		script: []drainAct{tick(1).then(drainWait), {undrain: true, refused: "cannot be undone", want: drainWait}},
		calls:  []string{"cordon"}, state: Draining,
	}, {
		name: "balancer unreachable during the cordon: the wait goes on", source: SourceAdmin, fail: map[string]bool{"cordon": true},
		script: []drainAct{tick(1).then(drainCordon), tick(0).then(drainCordon), tick(0).then(drainDone)},
		calls:  []string{"cordon", "cordon", "cordon", "cordon", "deregister"}, why: "no meetings left", state: Drained, dnsGone: true, released: 1,
	}, {
		name: "balancer unreachable during deregister", source: SourceAdmin, fail: map[string]bool{"deregister": true},
		script: []drainAct{tick(0).then(drainWait), tick(0).then(drainDone)},
		calls:  []string{"cordon", "deregister", "deregister", "deregister", "deregister", "deregister"},
		why:    "no meetings left", err: "deregistration failed", state: Drained, dnsGone: true, released: 1,
	}, {
		name: "logind cancels the shutdown", source: SourceShutdown,
		script: []drainAct{tick(1).then(drainWait), {undrain: true, refused: "shutdown -c", want: drainWait}, {logind: true, want: noDrain}},
		calls:  []string{"cordon", "enable"}, state: Ready,
	}, {
		name: "a new registration cordons again", source: SourceAdmin,
		script: []drainAct{tick(1).then(drainWait), {register: true, want: drainCordon}, tick(0).then(drainWait), tick(0).then(drainWait), tick(0).then(drainDone)},
		calls:  []string{"cordon", "register", "cordon", "deregister"}, why: "no meetings left", state: Drained, dnsGone: true, released: 1,
	}, {
		name: "scale-in: heartbeats while meetings run, completes once", source: SourceScaleIn,
		script: []drainAct{tick(1).then(drainWait), {advance: 30 * time.Second, tick: true, meetings: 1, want: drainWait},
			{advance: 30 * time.Second, tick: true, meetings: 1, want: drainWait}, tick(0).then(drainWait), tick(0).then(drainDone)},
		calls: []string{"cordon", "deregister"}, why: "no meetings left", state: Drained, dnsGone: true, released: 1, completed: 1, beats: 2,
	}, {
		name: "never registered: done at once", source: SourceAdmin, unreg: true,
		script: nil, why: "never registered", state: Drained, released: 1,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := testenv.NewClock()
			reg := &fakeRegistrar{fail: tt.fail}
			dns, scale, guard := &fakeDNS{}, &fakeScaleIn{}, &fakeShutdown{}
			c, err := bbb.NewClient("http://127.0.0.1:9", "never-called") // the measurements come from the script
			if err != nil {
				t.Fatal(err)
			}
			a, err := New(Config{Node: "bbb1", ReportInterval: 5 * time.Second, DrainDeadline: deadline, HeartbeatEvery: time.Minute,
				Clock: clk, Logger: slog.New(slog.DiscardHandler)},
				Deps{Registrar: reg, BBB: c, DNS: dns, ScaleIn: scale, Shutdown: guard})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			a.registered, a.everRegistered, a.dnsApplied = !tt.unreg, !tt.unreg, !tt.unreg
			a.setState(Ready)
			var undrainErr error
			if tt.undrainIn {
				reg.onDeregister = func() { undrainErr = a.undrain(ctx) }
			}
			// run does one loop step, moving the clock whenever the step
			// waits on it (the deregistration's pauses between retries).
			run := func(f func()) {
				done := make(chan struct{})
				go func() { defer close(done); f() }()
				testenv.Eventually(t, 5*time.Second, "the drain step to return", func() bool {
					select {
					case <-done:
						return true
					default:
					}
					if clk.Waiters() > 0 {
						clk.Advance(5 * time.Second)
					}
					return false
				})
			}
			phase := func() drainPhase {
				if a.drain == nil {
					return noDrain
				}
				return a.drain.phase
			}

			if tt.source == SourceShutdown {
				run(func() { a.shutdownEvent(ctx, true) })
			} else {
				run(func() { a.startDrain(ctx, tt.source) })
			}
			known := 0 // the meetings BBB told last
			for i, act := range tt.script {
				clk.Advance(act.advance)
				if act.tick && !act.bbbDown {
					known = act.meetings
				}
				switch {
				case act.tick && a.drain == nil: // tick moves only a drain under way
				case act.tick:
					m := measurement{now: clk.Now(), load: fleet.Load{Meetings: act.meetings}, afterCordon: a.drain.cordonTried()}
					if act.bbbDown {
						m.bbbErr = errors.New("BBB does not answer")
					}
					run(func() { a.advanceDrain(ctx, &m) })
				case act.undrain:
					var err error
					run(func() { err = a.undrain(ctx) })
					if act.refused == "" && err != nil || act.refused != "" && (err == nil || !strings.Contains(err.Error(), act.refused)) {
						t.Fatalf("act %d: undrain: %v, want refusal %q", i, err, act.refused)
					}
				case act.logind:
					run(func() { a.shutdownEvent(ctx, false) })
				case act.register:
					run(func() { a.register(ctx) })
				case act.gone:
					a.registered = false // as report does on ErrNotRegistered
				case act.enabled:
					a.mu.Lock()
					a.status.DesiredState = fleet.Enabled // as report does with the balancer's answer
					a.mu.Unlock()
				case act.stop:
					run(func() { a.leaveOnStop(ctx) })
				}
				if act.msg != "" {
					if st := a.Status(); st.Drain == nil || !strings.Contains(st.Drain.Message, act.msg) {
						t.Fatalf("act %d: drain status %+v, want the message to say %q", i, st.Drain, act.msg)
					}
				}
				if act.bbbDown {
					if st := a.Status(); st.Drain != nil && st.Drain.Finished == "" && (st.Drain.MeetingsUnknownSince.IsZero() || st.Drain.MeetingsLeft != known) {
						t.Fatalf("act %d: BBB down, drain status %+v: want meetings unknown since a time, the last count kept", i, st.Drain)
					}
				}
				if got := phase(); got != act.want {
					t.Fatalf("act %d: phase %q, want %q", i, got, act.want)
				}
			}

			if tt.undrainIn && (undrainErr == nil || !strings.Contains(undrainErr.Error(), "cannot be taken back")) {
				t.Fatalf("undrain while deregistering: %v", undrainErr)
			}
			if !slices.Equal(reg.calls, tt.calls) {
				t.Fatalf("registrar calls %v, want %v", reg.calls, tt.calls)
			}
			if got := a.State(); got != tt.state {
				t.Fatalf("state %s, want %s", got, tt.state)
			}
			st := a.Status()
			if tt.why != "" {
				if phase() != drainDone || st.Drain == nil || st.Drain.Finished != tt.why || st.Drain.Phase != string(drainDone) {
					t.Fatalf("drain %+v, want finished %q", st.Drain, tt.why)
				}
				if tt.err == "" && a.drain.err != nil || tt.err != "" && (a.drain.err == nil || !strings.Contains(a.drain.err.Error(), tt.err)) {
					t.Fatalf("drain error %v, want %q", a.drain.err, tt.err)
				}
				if st.Registered {
					t.Fatal("still registered after the drain")
				}
			}
			if got := dns.removed > 0; got != tt.dnsGone {
				t.Fatalf("DNS removed %d times, want removed: %v", dns.removed, tt.dnsGone)
			}
			if guard.released != tt.released || scale.completed != tt.completed || scale.beats != tt.beats {
				t.Fatalf("logind released %d (want %d), scale-in completed %d (want %d), heartbeats %d (want %d)",
					guard.released, tt.released, scale.completed, tt.completed, scale.beats, tt.beats)
			}
			if tt.source == SourceShutdown && phase() == noDrain && guard.reacquired != 1 {
				t.Fatalf("logind's lock taken again %d times after the cancel", guard.reacquired)
			}
		})
	}
}

// TestDrainDeadlineLeaving: a drain whose deadline passes with a meeting
// running leaves placement but keeps the node registered, cordoned and
// reporting: the meeting stays joinable through the balancer (join answers
// 302 to the node, getMeetingInfo finds it), `drain --wait` ends at leaving,
// and undrain is refused. Then the node leaves the balancer when the meeting
// ends, or at once when the agent is stopped (the host going away).
func TestDrainDeadlineLeaving(t *testing.T) {
	for _, end := range []string{"the meeting ends", "the host stops"} {
		t.Run(end, func(t *testing.T) {
			f := newFleet(t)
			n := newNode(t, "bbb-leaving")
			guard := &fakeShutdown{}
			n.start(t, f, Config{StateDir: n.stateDir}, Deps{Shutdown: guard})
			ctx := t.Context()
			testenv.Eventually(t, 2*time.Second, "online", func() bool { s, ok := f.server(n.name); return ok && s.Online })
			if _, err := f.client.Create(ctx, bbb.CreateRequest{MeetingID: "class", Name: "Class"}); err != nil {
				t.Fatal(err)
			}
			if _, err := n.sim.AddAttendees("class", sim.AttendeeSpec{Count: 2}); err != nil {
				t.Fatal(err)
			}
			cl := NewAdminClient(n.socket)
			st, err := cl.DrainWith(ctx, DrainRequest{DeadlineInSeconds: (6 * interval).Seconds()})
			if err != nil || st.Drain == nil || st.Drain.MeetingsLeft != 1 {
				t.Fatalf("drain with a deadline: %+v %v", st.Drain, err)
			}
			var phases []string
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			last, err := cl.WaitDrain(wctx, func(st Status) {
				if st.Drain != nil && (len(phases) == 0 || phases[len(phases)-1] != st.Drain.Phase) {
					phases = append(phases, st.Drain.Phase)
				}
			})
			if err != nil || last.Drain == nil || last.Drain.Phase != string(drainLeaving) || !slices.Contains(phases, string(drainWait)) {
				t.Fatalf("waiting for the drain: %v, last %+v, phases %v", err, last.Drain, phases)
			}
			if !strings.Contains(last.Drain.Message, "1 meeting running") || last.State != Draining || !last.Registered {
				t.Fatalf("status when leaving: %+v (drain %+v)", last, last.Drain)
			}
			if guard.released != 1 {
				t.Fatalf("logind's lock released %d times at the deadline, want once", guard.released)
			}
			raw, err := os.ReadFile(filepath.Join(n.stateDir, drainFile))
			if err != nil || !strings.Contains(string(raw), `"leaving":true`) {
				t.Fatalf("drain.json while leaving: %s %v", raw, err)
			}
			if _, err := cl.Undrain(ctx); err == nil || !strings.Contains(err.Error(), "past its deadline") {
				t.Fatalf("undrain while leaving: %v", err)
			}

			// Reports go on, and the meeting stays joinable through the balancer.
			seen := n.agent.Status().LastReportAt
			testenv.Eventually(t, 2*time.Second, "two more reports", func() bool {
				return n.agent.Status().LastReportAt.After(seen.Add(interval))
			})
			s, ok := f.server(n.name)
			if !ok || s.State != fleet.Cordoned || !s.Online || s.Meetings != 1 {
				t.Fatalf("the balancer's view of the leaving node: %+v (listed %v)", s, ok)
			}
			resp, err := noRedirect.Get(f.client.JoinURL(bbb.JoinRequest{MeetingID: "class", FullName: "Late Student", Role: bbb.RoleViewer}))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, n.http.URL) {
				t.Fatalf("join after the deadline: HTTP %d to %q, want 302 to the node %s", resp.StatusCode, loc, n.http.URL)
			}
			if m, err := f.client.GetMeetingInfo(ctx, "class"); err != nil || m.MeetingID != "class" || m.ParticipantCount != 2 {
				t.Fatalf("getMeetingInfo after the deadline: %+v %v", m, err)
			}

			switch end {
			case "the meeting ends":
				if err := f.client.End(ctx, "class", ""); err != nil {
					t.Fatal(err)
				}
				if err := n.exited(t, 4*interval+2*time.Second); err != nil {
					t.Fatalf("the drain ended with %v", err)
				}
				// The agent sees the meeting end, or the balancer does first
				// (the report saying none left) and removes the node.
				if st := n.agent.Status(); st.Drain == nil || st.Registered ||
					st.Drain.Finished != "deadline reached; the meetings then ended" && st.Drain.Finished != "deadline reached; the balancer removed the node" {
					t.Fatalf("final status %+v (drain %+v)", st, st.Drain)
				}
			case "the host stops":
				n.cancel()
				<-n.finished
				if running := n.sim.Stats().Meetings; len(running) != 1 || running[0].Ended {
					t.Fatalf("the stop touched the meeting: %+v", running)
				}
			}
			if s, ok := f.server(n.name); ok {
				t.Fatalf("the balancer still lists the node: %+v", s)
			}
			if guard.released != 1 {
				t.Fatalf("logind's lock released %d times, want once", guard.released)
			}
			if _, err := os.Stat(filepath.Join(n.stateDir, drainFile)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the finished drain left %s: %v", drainFile, err)
			}
		})
	}
}

// noRedirect is an HTTP client that shows redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// TestLeavingDrainResumes: an agent killed while leaving (no stop path ran)
// resumes the leaving drain after its restart: it registers, cordons again
// and leaves again without letting the host go twice (it only releases the
// delay lock its own run took), and leaves once the meeting ends.
func TestLeavingDrainResumes(t *testing.T) {
	f := newFleet(t)
	n := newNode(t, "bbb-resume-leaving")
	ctx := t.Context()
	node, err := bbb.NewClient(n.http.URL, n.secret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := node.Create(ctx, bbb.CreateRequest{MeetingID: "seminar", Name: "Seminar"}); err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-2 * time.Hour)
	saved := `{"source":"scale-in","started_at":"` + start.Format(time.RFC3339) + `","deadline":"` + start.Add(time.Hour).Format(time.RFC3339) + `","leaving":true}`
	if err := os.WriteFile(filepath.Join(n.stateDir, drainFile), []byte(saved), 0o600); err != nil {
		t.Fatal(err)
	}
	guard, scale := &fakeShutdown{}, &fakeScaleIn{}
	n.start(t, f, Config{StateDir: n.stateDir}, Deps{Shutdown: guard, ScaleIn: scale})
	testenv.Eventually(t, 2*time.Second, "leaving again", func() bool {
		st := n.agent.Status()
		return st.Drain != nil && st.Drain.Phase == string(drainLeaving) && st.Drain.Message != ""
	})
	if s, ok := f.server(n.name); !ok || s.State != fleet.Cordoned {
		t.Fatalf("the balancer has the resumed leaving node as %+v (listed %v), want cordoned", s, ok)
	}
	if guard.released != 1 || scale.completed != 0 {
		t.Fatalf("resumed: logind released %d (want 1: this run's lock), lifecycle completed %d (want 0: done before)", guard.released, scale.completed)
	}
	if err := node.End(ctx, "seminar", ""); err != nil {
		t.Fatal(err)
	}
	if err := n.exited(t, 4*interval+2*time.Second); err != nil {
		t.Fatalf("the resumed drain ended with %v", err)
	}
	if _, ok := f.server(n.name); ok {
		t.Fatal("the node is still listed after its meetings ended")
	}
	if guard.released != 1 || scale.completed != 0 {
		t.Fatalf("at the end: logind released %d, lifecycle completed %d: the host was let go twice", guard.released, scale.completed)
	}
}

// TestDrainDeadlineChange: `bbb-agent drain --deadline` starts a drain with
// its own deadline, or moves the deadline of a drain that still waits (kept
// in drain.json); a deadline in the past, or a drain past its wait, refuse.
func TestDrainDeadlineChange(t *testing.T) {
	clk := testenv.NewClock()
	c, err := bbb.NewClient("http://127.0.0.1:9", "never-called")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	a, err := New(Config{Node: "bbb1", ReportInterval: 5 * time.Second, DrainDeadline: time.Hour, StateDir: dir, Clock: clk,
		Logger: slog.New(slog.DiscardHandler)}, Deps{Registrar: &fakeRegistrar{}, BBB: c})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a.registered, a.everRegistered = true, true
	a.setState(Ready)
	now := clk.Now()
	if err := a.drainCommand(ctx, drainRequest{source: SourceAdmin, deadlineIn: 30 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	if st := a.Status(); st.Drain == nil || !st.Drain.Deadline.Equal(now.Add(30*time.Minute)) {
		t.Fatalf("drain with its own deadline: %+v", st.Drain)
	}
	at := now.Add(10 * time.Minute)
	if err := a.drainCommand(ctx, drainRequest{source: SourceAdmin, deadline: at}); err != nil {
		t.Fatal(err)
	}
	saved, err := a.loadDrain()
	if st := a.Status(); err != nil || st.Drain == nil || !st.Drain.Deadline.Equal(at) || saved == nil || !saved.Deadline.Equal(at) {
		t.Fatalf("moved deadline: status %+v, drain.json %+v %v", st.Drain, saved, err)
	}
	if err := a.drainCommand(ctx, drainRequest{source: SourceAdmin, deadline: now.Add(-time.Minute)}); err == nil || !strings.Contains(err.Error(), "not in the future") {
		t.Fatalf("a deadline in the past: %v", err)
	}
	clk.Advance(10 * time.Minute)
	m := measurement{now: clk.Now(), load: fleet.Load{Meetings: 1}, afterCordon: true}
	a.advanceDrain(ctx, &m)
	if a.drain.phase != drainLeaving {
		t.Fatalf("phase %s at the moved deadline, want leaving", a.drain.phase)
	}
	if err := a.drainCommand(ctx, drainRequest{source: SourceAdmin, deadlineIn: time.Hour}); err == nil || !strings.Contains(err.Error(), "can no longer change") {
		t.Fatalf("a new deadline while leaving: %v", err)
	}
}
