package agent

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/agent/ec2"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/emulate/autoscaling"
	"github.com/bbb-agent/bbb-agent/internal/emulate/awsemu"
	"github.com/bbb-agent/bbb-agent/internal/emulate/imds"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// TestScaleInDrainEmulatedAWS: the Auto Scaling group terminates the
// instance (emulated IMDS lifecycle state), the agent drains, heartbeats the
// hook while a meeting runs, and completes the lifecycle action exactly once
// with CONTINUE when the meeting is over (emulated Auto Scaling API, real SDK).
func TestScaleInDrainEmulatedAWS(t *testing.T) {
	md := imds.New(time.Now)
	md.Set("instance-id", "i-0123456789abcdef0")
	md.Set("placement/region", "eu-central-1")
	md.Set("autoscaling/target-lifecycle-state", ec2.StateInService)
	mdSrv := httptest.NewServer(md)
	t.Cleanup(mdSrv.Close)
	asg := autoscaling.New()
	asgCfg, _ := awsemu.Serve(t, asg, "eu-central-1")

	meta, err := ec2.NewMetadata(mdSrv.URL)
	if err != nil {
		t.Fatal(err)
	}
	lc, err := ec2.NewLifecycle(asgCfg, "bbb-fleet", "drain-hook", "i-0123456789abcdef0")
	if err != nil {
		t.Fatal(err)
	}

	f := newFleet(t)
	n := newNode(t, "bbb-i-0123456789abcdef0")
	n.start(t, f, Config{HeartbeatEvery: interval}, Deps{ScaleIn: ec2.ScaleIn{Metadata: meta, Lifecycle: lc}})
	ctx := context.Background()
	testenv.Eventually(t, time.Second, "online", func() bool { s, ok := f.server(n.name); return ok && s.Online })
	if _, err := f.client.Create(ctx, bbb.CreateRequest{MeetingID: "exam", Name: "Exam"}); err != nil {
		t.Fatal(err)
	}

	// Scale-in: the group moves the instance to Terminating:Wait.
	asg.StartAction("bbb-fleet", "drain-hook", "i-0123456789abcdef0")
	md.Set("autoscaling/target-lifecycle-state", ec2.StateTerminated)
	testenv.Eventually(t, 2*time.Second, "cordoned", func() bool { s, _ := f.server(n.name); return s.State == fleet.Cordoned })
	testenv.Eventually(t, 2*time.Second, "a heartbeat", func() bool { return countCalls(asg, "RecordLifecycleActionHeartbeat") > 0 })
	if c := countCalls(asg, "CompleteLifecycleAction"); c != 0 {
		t.Fatalf("completed with a meeting running (%d calls)", c)
	}
	if err := f.client.End(ctx, "exam", ""); err != nil {
		t.Fatal(err)
	}
	if err := n.exited(t, 2*interval+2*time.Second); err != nil {
		t.Fatal(err)
	}
	var completes []autoscaling.Call
	for _, c := range asg.Calls() {
		if c.Action == "CompleteLifecycleAction" {
			completes = append(completes, c)
		}
	}
	if len(completes) != 1 || completes[0].Result != "CONTINUE" || completes[0].Error != "" ||
		completes[0].Group != "bbb-fleet" || completes[0].Hook != "drain-hook" || completes[0].InstanceID != "i-0123456789abcdef0" {
		t.Fatalf("CompleteLifecycleAction calls: %+v", completes)
	}
	if _, ok := f.server(n.name); ok {
		t.Fatal("still registered after the scale-in drain")
	}
}

func countCalls(s *autoscaling.Server, action string) int {
	n := 0
	for _, c := range s.Calls() {
		if c.Action == action {
			n++
		}
	}
	return n
}

// TestScaleInIMDSAbsent: with EC2 metadata unreachable the agent runs and
// reports as usual; it just cannot see a scale-in.
func TestScaleInIMDSAbsent(t *testing.T) {
	closed := httptest.NewServer(nil)
	closed.Close()
	meta, err := ec2.NewMetadata(closed.URL)
	if err != nil {
		t.Fatal(err)
	}
	f := newFleet(t)
	n := newNode(t, "bbb1")
	n.start(t, f, Config{}, Deps{ScaleIn: ec2.ScaleIn{Metadata: meta}})
	testenv.Eventually(t, 3*time.Second, "online", func() bool { s, ok := f.server(n.name); return ok && s.Online })
	if st := n.agent.Status(); st.State != Ready {
		t.Fatalf("status: %+v", st)
	}
}
