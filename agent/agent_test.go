package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/agentapi"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/bbb/sim"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
	"github.com/bbb-agent/bbb-agent/registrar"
)

// TestAgentsJoinTheFleet: two agents are online and enabled within two
// report intervals, and meetings land on both.
func TestAgentsJoinTheFleet(t *testing.T) {
	f := newFleet(t)
	nodes := []*node{newNode(t, "bbb1"), newNode(t, "bbb2")}
	for _, n := range nodes {
		n.start(t, f, Config{}, Deps{})
	}
	for _, n := range nodes {
		testenv.Eventually(t, 2*interval+time.Second, n.name+" online and enabled", func() bool {
			s, ok := f.server(n.name)
			return ok && s.Online && s.State == fleet.Enabled
		})
		if st := n.agent.Status(); st.State != Ready || !st.Registered || st.Load.BBBVersion != sim.DefaultBBBVersion {
			t.Fatalf("%s: %+v", n.name, st)
		}
	}
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		if _, err := f.client.Create(ctx, bbb.CreateRequest{MeetingID: fmt.Sprintf("class-%d", i), Name: "Class"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		if len(n.sim.Stats().Meetings) == 0 {
			t.Fatalf("no meeting landed on %s", n.name)
		}
	}
	// The agents report the meetings; the balancer shows them.
	testenv.Eventually(t, time.Second, "meetings reported", func() bool {
		total := 0
		for _, n := range nodes {
			s, _ := f.server(n.name)
			total += s.Meetings
		}
		return total == 10
	})
	if got := nodes[0].notes.all(); len(got) == 0 || got[0] != "READY=1" {
		t.Fatalf("sd_notify: %v", got)
	}
}

// TestDrainWaitsForMeetings: a drain cordons, waits while a meeting runs
// (ending none), and deregisters and exits once the meeting is over.
func TestDrainWaitsForMeetings(t *testing.T) {
	for _, src := range []DrainSource{SourceSignal, SourceAdmin} {
		t.Run(string(src), func(t *testing.T) {
			f := newFleet(t)
			n := newNode(t, "bbb1")
			n.start(t, f, Config{}, Deps{})
			testenv.Eventually(t, time.Second, "online", func() bool { s, ok := f.server(n.name); return ok && s.Online })
			ctx := context.Background()
			if _, err := f.client.Create(ctx, bbb.CreateRequest{MeetingID: "lecture", Name: "Lecture"}); err != nil {
				t.Fatal(err)
			}
			if _, err := n.sim.AddAttendees("lecture", sim.AttendeeSpec{Count: 3}); err != nil {
				t.Fatal(err)
			}
			if src == SourceAdmin {
				if _, err := NewAdminClient(n.socket).Drain(ctx); err != nil {
					t.Fatal(err)
				}
			} else if err := n.agent.Drain(ctx, src); err != nil {
				t.Fatal(err)
			}
			testenv.Eventually(t, time.Second, "cordoned at the balancer", func() bool {
				s, _ := f.server(n.name)
				t.Logf("%+v / %+v", s.State, n.agent.Status())
				return s.State == fleet.Cordoned
			})
			// Several intervals later the agent still waits, and the meeting runs.
			time.Sleep(4 * interval)
			if st := n.agent.Status(); st.State != Draining || st.Drain == nil || st.Drain.MeetingsLeft != 1 {
				t.Fatalf("status while draining: %+v", st)
			}
			if running, err := f.client.IsMeetingRunning(ctx, "lecture"); err != nil || !running {
				t.Fatalf("the drain touched the meeting: running=%v %v", running, err)
			}
			if !slices.Contains(n.notes.all(), "STOPPING=1") || !slices.Contains(n.notes.all(), "STATUS=draining: 1 meeting left") {
				t.Fatalf("sd_notify during drain: %v", n.notes)
			}
			if err := f.client.End(ctx, "lecture", ""); err != nil {
				t.Fatal(err)
			}
			if err := n.exited(t, 2*interval+time.Second); err != nil {
				t.Fatalf("agent exit: %v", err)
			}
			if _, ok := f.server(n.name); ok {
				t.Fatal("node still registered after the drain")
			}
			if st := n.agent.Status(); st.State != Stopped || st.Registered {
				t.Fatalf("final status: %+v", st)
			}
		})
	}
}

// TestOperatorCordonDrains: a cordon set at the balancer reaches the agent,
// which drains; re-enabling at the balancer cancels the drain.
func TestOperatorCordonDrains(t *testing.T) {
	f := newFleet(t)
	n := newNode(t, "bbb1")
	ctx := context.Background()
	cordonWithMeeting(t, f, n)
	if st := n.agent.Status(); st.Drain == nil || st.Drain.Source != SourceBalancer {
		t.Fatalf("drain: %+v", st.Drain)
	}
	if _, err := f.admin.SetState(ctx, n.name, adminState(fleet.Enabled)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Second, "drain cancelled", func() bool { return n.agent.State() == Ready })
	// Cordon again and let the meeting end: the agent leaves the fleet.
	if _, err := f.admin.SetState(ctx, n.name, adminState(fleet.Cordoned)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Second, "agent draining", func() bool { return n.agent.State() == Draining })
	if err := f.client.End(ctx, "seminar", ""); err != nil {
		t.Fatal(err)
	}
	if err := n.exited(t, 2*interval+time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestOperatorEnableBeforeTheDrainCordons: an operator cordons the node at
// the balancer and enables it again at once. The drain that the cordon
// started is cancelled; no cordon of the agent's own lands after the enable
// and cordons the node for good (its Cordon calls wait here until the enable
// is in).
func TestOperatorEnableBeforeTheDrainCordons(t *testing.T) {
	f := newFleet(t)
	n := newNode(t, "bbb1")
	enabled := make(chan struct{})
	n.wrap = func(r registrar.Registrar) registrar.Registrar { return cordonAfter{r, enabled} }
	ctx := context.Background()
	cordonWithMeeting(t, f, n)
	if _, err := f.admin.SetState(ctx, n.name, adminState(fleet.Enabled)); err != nil {
		t.Fatal(err)
	}
	close(enabled)
	testenv.Eventually(t, 5*time.Second, "drain cancelled", func() bool { return n.agent.State() == Ready })
	// Three reports later, a cordon landing late would show.
	cancelled := time.Now()
	testenv.Eventually(t, 5*time.Second, "three more reports", func() bool {
		return n.agent.Status().LastReportAt.After(cancelled.Add(3 * interval))
	})
	if s, _ := f.server(n.name); s.State != fleet.Enabled || n.agent.State() != Ready {
		t.Errorf("after the operator's enable: balancer state %s, agent %s; want enabled and ready", s.State, n.agent.State())
	}
}

// cordonWithMeeting runs the node's agent with a meeting "seminar" on it,
// cordons the node at the balancer as an operator would, and waits for the
// agent to drain.
func cordonWithMeeting(t *testing.T, f *fleetEnv, n *node) {
	t.Helper()
	n.start(t, f, Config{}, Deps{})
	ctx := context.Background()
	testenv.Eventually(t, time.Second, "online", func() bool { s, ok := f.server(n.name); return ok && s.Online })
	if _, err := f.client.Create(ctx, bbb.CreateRequest{MeetingID: "seminar", Name: "Seminar"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.admin.SetState(ctx, n.name, adminState(fleet.Cordoned)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Second, "agent draining", func() bool { return n.agent.State() == Draining })
}

// cordonAfter holds the agent's Cordon calls until after is closed.
type cordonAfter struct {
	registrar.Registrar
	after chan struct{}
}

func (c cordonAfter) Cordon(ctx context.Context) error {
	select {
	case <-c.after:
	case <-ctx.Done():
		return ctx.Err()
	}
	return c.Registrar.Cordon(ctx)
}

// TestUndrain: `bbb-agent drain` cancelled by `bbb-agent undrain`; a drain
// from a signal cannot be undone.
func TestUndrain(t *testing.T) {
	f := newFleet(t)
	n := newNode(t, "bbb1")
	n.start(t, f, Config{}, Deps{})
	ctx := context.Background()
	testenv.Eventually(t, time.Second, "online", func() bool { s, ok := f.server(n.name); return ok && s.Online })
	if _, err := f.client.Create(ctx, bbb.CreateRequest{MeetingID: "keep", Name: "Keep"}); err != nil {
		t.Fatal(err)
	}
	admin := NewAdminClient(n.socket)
	if _, err := admin.Undrain(ctx); err == nil || !strings.Contains(err.Error(), "not draining") {
		t.Fatalf("undrain while ready: %v", err)
	}
	if _, err := admin.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Second, "cordoned", func() bool { s, _ := f.server(n.name); return s.State == fleet.Cordoned })
	st, err := admin.Undrain(ctx)
	if err != nil || st.State != Ready {
		t.Fatalf("undrain: %+v %v", st, err)
	}
	if s, _ := f.server(n.name); s.State != fleet.Enabled {
		t.Fatalf("balancer state after undrain: %s", s.State)
	}
	if err := n.agent.Drain(ctx, SourceSignal); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Undrain(ctx); err == nil || !strings.Contains(err.Error(), "cannot be undone") {
		t.Fatalf("undrain of a signal drain: %v", err)
	}
}

// TestCrashAndRestart: an agent that dies without draining goes offline at
// the balancer; restarted with the same state directory it comes back as the
// same node, without a duplicate.
func TestCrashAndRestart(t *testing.T) {
	f := newFleet(t)
	n := newNode(t, "")
	name, err := NodeName(context.Background(), "", n.stateDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	n.name = name
	n.start(t, f, Config{}, Deps{})
	testenv.Eventually(t, time.Second, "online", func() bool { s, ok := f.server(n.name); return ok && s.Online })
	first, _ := f.server(n.name)
	n.cancel() // the process dies: no drain, no deregistration
	<-n.done
	testenv.Eventually(t, 3*interval+time.Second, "offline within 3 intervals", func() bool { s, _ := f.server(n.name); return !s.Online })

	again, err := NodeName(context.Background(), "", n.stateDir, nil)
	if err != nil || again != name {
		t.Fatalf("node name after restart: %q, %v (was %q)", again, err, name)
	}
	n.start(t, f, Config{}, Deps{})
	testenv.Eventually(t, time.Second, "online again", func() bool { s, _ := f.server(n.name); return s.Online })
	servers, _ := f.admin.Servers(context.Background())
	if len(servers) != 1 || servers[0].ID != first.ID {
		t.Fatalf("after restart: %+v (first id %s)", servers, first.ID)
	}
}

// TestDrainCountsMeetingsNow: `bbb-agent drain` answers with the meetings BBB
// runs when it is asked, not those of a report cycle ago.
func TestDrainCountsMeetingsNow(t *testing.T) {
	f := newFleet(t)
	n := newNode(t, "bbb-now")
	n.start(t, f, Config{ReportInterval: time.Hour}, Deps{})
	ctx := context.Background()
	testenv.Eventually(t, 2*time.Second, "registered", func() bool { return n.agent.Status().Registered })
	node, err := bbb.NewClient(n.http.URL, n.secret)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"room-a", "room-b"} {
		if _, err := node.Create(ctx, bbb.CreateRequest{MeetingID: id, Name: id}); err != nil {
			t.Fatal(err)
		}
	}
	if got := n.agent.Status().Load.Meetings; got != 0 {
		t.Fatalf("the last report cycle saw %d meetings, the test needs it before the creates", got)
	}
	st, err := NewAdminClient(n.socket).Drain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Drain == nil || st.Drain.MeetingsLeft != 2 || st.Load.Meetings != 2 {
		t.Fatalf("drain answered %+v with %d meetings, want 2 left", st.Drain, st.Load.Meetings)
	}
}

// TestDrainResumesAfterRestart: an agent stopped while it drains (killed,
// restarted by an upgrade) resumes the drain after its restart with the same
// source and deadline; a drain that finished leaves nothing to resume.
func TestDrainResumesAfterRestart(t *testing.T) {
	f := newFleet(t)
	n := newNode(t, "bbb-resume")
	cfg := Config{StateDir: n.stateDir}
	n.start(t, f, cfg, Deps{})
	ctx := context.Background()
	testenv.Eventually(t, 2*time.Second, "online", func() bool { s, ok := f.server(n.name); return ok && s.Online })
	if _, err := f.client.Create(ctx, bbb.CreateRequest{MeetingID: "lecture", Name: "Lecture"}); err != nil {
		t.Fatal(err)
	}
	before, err := NewAdminClient(n.socket).Drain(ctx)
	if err != nil || before.Drain == nil {
		t.Fatalf("drain: %+v %v", before, err)
	}
	n.cancel() // the agent stops mid-drain, as on a restart
	<-n.finished

	n.start(t, f, cfg, Deps{})
	testenv.Eventually(t, 2*time.Second, "draining again", func() bool { return n.agent.State() == Draining })
	st := n.agent.Status()
	if st.Drain == nil || st.Drain.Source != SourceAdmin || !st.Drain.Deadline.Equal(before.Drain.Deadline) || !st.Drain.StartedAt.Equal(before.Drain.StartedAt) {
		t.Fatalf("resumed drain %+v, want source admin, started %v, deadline %v", st.Drain, before.Drain.StartedAt, before.Drain.Deadline)
	}
	if s, _ := f.server(n.name); s.State != fleet.Cordoned {
		t.Errorf("the balancer has the node %s, want cordoned", s.State)
	}
	// The lecture ends: the resumed drain finishes, and leaves no record.
	if err := f.client.End(ctx, "lecture", ""); err != nil {
		t.Fatal(err)
	}
	if err := n.exited(t, 5*time.Second); err != nil {
		t.Fatalf("the resumed drain ended with %v", err)
	}
	if _, err := os.Stat(filepath.Join(n.stateDir, drainFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a finished drain left %s: %v", drainFile, err)
	}
}

// TestRotateCredential: `bbb-agent rotate-credential` replaces the node's
// credential at the balancer and in the state directory; the agent goes on
// reporting with the new one, and the old one no longer speaks for the node.
func TestRotateCredential(t *testing.T) {
	f := newFleet(t)
	n := newNode(t, "bbb-rotate")
	n.start(t, f, Config{}, Deps{})
	ctx := context.Background()
	testenv.Eventually(t, 2*time.Second, "online", func() bool { s, ok := f.server(n.name); return ok && s.Online })
	file := filepath.Join(n.stateDir, "node-credential")
	old, err := os.ReadFile(file)
	if err != nil || len(old) == 0 {
		t.Fatalf("no credential kept: %v", err)
	}
	if _, err := NewAdminClient(n.socket).RotateCredential(ctx); err != nil {
		t.Fatal(err)
	}
	now, _ := os.ReadFile(file)
	if len(now) == 0 || string(now) == string(old) {
		t.Fatalf("the credential file after the rotation: %q (before %q)", now, old)
	}
	before := n.agent.Status().LastReportAt
	testenv.Eventually(t, 2*time.Second, "reports with the new credential", func() bool {
		st := n.agent.Status()
		return st.LastReportAt.After(before) && st.LastError == ""
	})
	body := strings.NewReader(`{"node":"bbb-rotate","seq":1,"load":{}}`)
	req, _ := http.NewRequest(http.MethodPost, f.lbURL+agentapi.PathReport, body)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(old)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the old credential still reports: HTTP %d", resp.StatusCode)
	}
}
