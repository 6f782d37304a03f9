package main

import (
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/agent"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/bbb/sim"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// progressLine matches a line of `bbb-agent drain --wait`'s progress:
// "19:30:05  wait: 1 meeting left (deadline 2026-12-04 19:30:07 UTC)".
var progressLine = regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d  [a-z-]+: .* \(deadline \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+\)$`)

// TestDrainDeadlineKeepsMeetingJoinable is the drain-deadline test: a
// meeting still running at the drain's deadline stays joinable through the
// balancer (join answers 302 to its node, getMeetingInfo finds it) after the
// deadline, `drain --wait` returns at the deadline, and the node leaves the
// balancer once it is gone: killed (its reports stop: the balancer removes
// the leaving node once it is offline) or stopped (the agent deregisters
// on its way out).
func TestDrainDeadlineKeepsMeetingJoinable(t *testing.T) {
	t.Parallel()
	for _, gone := range []string{"killed", "stopped"} {
		t.Run(gone, func(t *testing.T) {
			t.Parallel()
			f := newFleet(t)
			s := f.startSim("1")
			a := f.startAgent(s, agentOpts{nodeName: "bbb-deadline-" + gone})
			testenv.Eventually(t, 2*interval+slack, "online and enabled", func() bool { return f.onlineAndEnabled(a.node) })
			f.create("class")
			if _, err := s.Control.AddAttendees(t.Context(), "class", sim.AttendeeSpec{Count: 2}); err != nil {
				t.Fatal(err)
			}
			testenv.Eventually(t, 2*interval+slack, "the agent sees the meeting", func() bool {
				st, _, ok := a.status(t)
				return ok && st.Load.Meetings == 1
			})

			const deadline = 2 * time.Second
			w := testenv.Start(t, testenv.Cmd{Name: "bbb-agent drain --wait", Path: a.bin, Env: testenv.CleanEnv(),
				Args:  []string{"--admin-socket", a.socket, "drain", "--wait", "--deadline", deadline.String()},
				Ready: regexp.MustCompile(`is draining`)})
			if code := w.Wait(t, deadline+4*interval+slack); code != 0 {
				t.Fatalf("drain --wait exited %d:\n%s", code, w.Output())
			}
			out := w.Output()
			zone := time.Now().Format("MST")
			for _, want := range []string{"bbb-deadline-" + gone + " is draining: no new meetings; it leaves the fleet when its 1 meeting has ended (deadline ",
				zone + "; then it leaves placement", "passed its drain deadline", "with 1 meeting running", "stays registered so they stay joinable"} {
				if !strings.Contains(out, want) {
					t.Errorf("drain --wait does not say %q:\n%s", want, out)
				}
			}
			if !progressLine.MatchString(out) || !strings.Contains(out, "  leaving: past the deadline with 1 meeting running") {
				t.Errorf("drain --wait printed no progress lines with the phase and the deadline in its zone:\n%s", out)
			}

			// After the deadline: still registered, cordoned, reporting; the
			// meeting joinable through the balancer.
			st, _, ok := a.status(t)
			if !ok || st.State != agent.Draining || !st.Registered || st.Drain == nil || st.Drain.Phase != "leaving" {
				t.Fatalf("status after the deadline: %+v (drain %+v)", st, st.Drain)
			}
			if out := a.admin(t, "status").Stdout; !strings.Contains(out, "phase leaving, 1 meeting left") || !strings.Contains(out, " "+zone) {
				t.Errorf("status after the deadline:\n%s", out)
			}
			srv, listed := f.server(a.node)
			if !listed || srv.State != fleet.Cordoned || !srv.Online || srv.Meetings != 1 {
				t.Fatalf("the balancer after the deadline: %+v (listed %v), want cordoned, online, 1 meeting", srv, listed)
			}
			noFollow := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := noFollow.Get(f.front().JoinURL(bbb.JoinRequest{MeetingID: "class", FullName: "Late Student", Role: bbb.RoleViewer}))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, s.URL) {
				t.Fatalf("join after the deadline: HTTP %d to %q, want 302 to the node %s", resp.StatusCode, loc, s.URL)
			}
			if m, err := f.front().GetMeetingInfo(t.Context(), "class"); err != nil || m.MeetingID != "class" || m.ParticipantCount != 2 {
				t.Fatalf("getMeetingInfo after the deadline: %+v %v", m, err)
			}

			// The host goes away.
			switch gone {
			case "killed":
				testenv.Eventually(t, 2*interval+slack, "the balancer knows the node is leaving", func() bool {
					return strings.Contains(f.lb.Output(), `msg="node is leaving: `)
				})
				a.Kill()
				testenv.Eventually(t, 3*interval+time.Second+slack, "the balancer removes the offline leaving node", func() bool {
					_, listed := f.server(a.node)
					return !listed
				})
				if out := f.lb.Output(); !strings.Contains(out, `msg="leaving node removed" node=bbb-deadline-killed`) {
					t.Errorf("the balancer's log does not say it removed the leaving node:\n%s", out)
				}
			case "stopped":
				if code := a.Stop(t, 10*time.Second); code != 0 {
					t.Fatalf("the leaving agent exited %d on SIGTERM:\n%s", code, a.Output())
				}
				if _, listed := f.server(a.node); listed {
					t.Fatalf("the balancer still lists the node its agent deregistered on its way out")
				}
				if out := a.Output(); !strings.Contains(out, "stopping while leaving") || !strings.Contains(out, `why="stopped while leaving"`) {
					t.Errorf("the agent's log does not say it deregistered on its way out:\n%s", out)
				}
			}
			// Nothing ended the meeting: the host would, going away.
			if got := s.meetings(t); len(got) != 1 {
				t.Errorf("the node runs %v, want the class still", got)
			}
			if n := s.requests(t, bbb.CallEnd); n != 0 {
				t.Errorf("the node got %d end calls", n)
			}
		})
	}
}

// TestDrainWaitInterrupted: Ctrl-C stops `drain --wait` with a non-zero exit
// and a message that the drain goes on, and it does; a second `drain --wait`
// follows it to its end and exits 0 once the node is drained.
func TestDrainWaitInterrupted(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	s := f.startSim("1")
	a := f.startAgent(s, agentOpts{nodeName: "bbb-interrupted"})
	testenv.Eventually(t, 2*interval+slack, "online and enabled", func() bool { return f.onlineAndEnabled(a.node) })
	f.create("seminar")
	testenv.Eventually(t, 2*interval+slack, "the agent sees the meeting", func() bool {
		st, _, ok := a.status(t)
		return ok && st.Load.Meetings == 1
	})
	w := testenv.Start(t, testenv.Cmd{Name: "bbb-agent drain --wait", Path: a.bin, Env: testenv.CleanEnv(),
		Args: []string{"--admin-socket", a.socket, "drain", "--wait"}, Ready: progressLine})
	if err := w.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := w.Wait(t, slack); code != 1 || !strings.Contains(w.Output(), "interrupted: stopped waiting, but the drain goes on") {
		t.Fatalf("drain --wait after Ctrl-C: exit %d\n%s", code, w.Output())
	}
	if st, _, ok := a.status(t); !ok || st.State != agent.Draining || st.Drain == nil {
		t.Fatalf("the drain after Ctrl-C: %+v", st)
	}
	if r := a.admin(t, "drain", "--deadline", "yesterday"); r.Code == 0 || !strings.Contains(r.Stderr, `--deadline "yesterday": want a duration`) {
		t.Errorf("drain --deadline yesterday: %s", r)
	}
	if r := a.admin(t, "drain", "--deadline", "2000-01-01T00:00:00Z"); r.Code == 0 || !strings.Contains(r.Stderr, "is not in the future") {
		t.Errorf("drain --deadline in the past: %s", r)
	}

	w = testenv.Start(t, testenv.Cmd{Name: "bbb-agent drain --wait (again)", Path: a.bin, Env: testenv.CleanEnv(),
		Args: []string{"--admin-socket", a.socket, "drain", "--wait", "--deadline", "1h"}, Ready: progressLine})
	if err := f.front().End(t.Context(), "seminar", ""); err != nil {
		t.Fatalf("end through the balancer: %v", err)
	}
	if code := w.Wait(t, 4*interval+slack); code != 0 || !strings.Contains(w.Output(), "bbb-interrupted is drained: no meetings") {
		t.Fatalf("drain --wait until drained: exit %d\n%s", code, w.Output())
	}
	if code := a.Wait(t, slack); code != 0 {
		t.Fatalf("the drained agent exited %d", code)
	}
}
