package ec2

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/smithy-go"

	asemu "github.com/bbb-agent/bbb-agent/internal/emulate/autoscaling"
	"github.com/bbb-agent/bbb-agent/internal/emulate/awsemu"
)

const (
	testGroup    = "bbb-media"
	testHook     = "bbb-drain"
	testInstance = "i-0123456789abcdef0"
)

// emulatedAutoScaling starts the Auto Scaling API emulation on loopback and
// returns it with a Lifecycle that reaches it through the real SDK client.
// The client retries without waiting so that throttling costs no time.
func emulatedAutoScaling(t *testing.T) (*asemu.Server, *Lifecycle) {
	t.Helper()
	emu := asemu.New()
	cfg, _ := awsemu.Serve(t, emu, "eu-central-1")
	l, err := NewLifecycle(cfg, testGroup, testHook, testInstance)
	if err != nil {
		t.Fatal(err)
	}
	return emu, l
}

func call(action, result, errCode string) asemu.Call {
	return asemu.Call{Action: action, Group: testGroup, Hook: testHook, InstanceID: testInstance, Result: result, Error: errCode}
}

func checkCalls(t *testing.T, emu *asemu.Server, want ...asemu.Call) {
	t.Helper()
	if got := emu.Calls(); !slices.Equal(got, want) {
		t.Errorf("calls to the emulation:\n got %+v\nwant %+v", got, want)
	}
}

func TestLifecycleHeartbeatAndCompleteOnceEmulatedAutoScaling(t *testing.T) {
	emu, l := emulatedAutoScaling(t)
	ctx := context.Background()
	emu.StartAction(testGroup, testHook, testInstance)

	if err := l.Heartbeat(ctx); err != nil {
		t.Fatalf("Heartbeat: %v", err)
	}
	if err := l.Complete(ctx, ResultContinue); err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if err := l.Complete(ctx, ResultContinue); err != nil {
		t.Fatalf("second Complete: %v", err)
	}
	if err := l.Complete(ctx, ResultAbandon); err != nil {
		t.Fatalf("third Complete: %v", err)
	}
	checkCalls(t, emu,
		call(asemu.ActionHeartbeat, "", ""),
		call(asemu.ActionComplete, ResultContinue, ""),
	)
}

func TestLifecycleCompleteConcurrentEmulatedAutoScaling(t *testing.T) {
	emu, l := emulatedAutoScaling(t)
	emu.StartAction(testGroup, testHook, testInstance)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = l.Complete(context.Background(), ResultContinue) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Complete %d: %v", i, err)
		}
	}
	checkCalls(t, emu, call(asemu.ActionComplete, ResultContinue, ""))
}

func TestLifecycleCompleteThrottledEmulatedAutoScaling(t *testing.T) {
	emu, l := emulatedAutoScaling(t)
	ctx := context.Background()
	emu.StartAction(testGroup, testHook, testInstance)
	emu.Throttle(3)
	if err := l.Complete(ctx, ResultContinue); err != nil {
		t.Fatalf("Complete through three throttles: %v", err)
	}
	throttled := call(asemu.ActionComplete, ResultContinue, asemu.CodeThrottling)
	checkCalls(t, emu, throttled, throttled, throttled, call(asemu.ActionComplete, ResultContinue, ""))
}

// TestLifecycleCompleteThrottledBeyondRetriesEmulatedAutoScaling: a
// completion that never got through leaves the action open, and the next
// call sends it again.
func TestLifecycleCompleteThrottledBeyondRetriesEmulatedAutoScaling(t *testing.T) {
	emu, l := emulatedAutoScaling(t)
	ctx := context.Background()
	emu.StartAction(testGroup, testHook, testInstance)
	emu.Throttle(lifecycleAttempts)
	err := l.Complete(ctx, ResultContinue)
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != asemu.CodeThrottling || errors.Is(err, ErrNoActiveAction) {
		t.Fatalf("Complete throttled %d times: %v", lifecycleAttempts, err)
	}
	if err := l.Complete(ctx, ResultContinue); err != nil {
		t.Fatalf("Complete once the throttling ended: %v", err)
	}
	if n := len(emu.Calls()); n != lifecycleAttempts+1 {
		t.Errorf("calls: %d, want %d", n, lifecycleAttempts+1)
	}
}

func TestLifecycleNoActiveActionEmulatedAutoScaling(t *testing.T) {
	emu, l := emulatedAutoScaling(t)
	ctx := context.Background()

	err := l.Heartbeat(ctx)
	if !errors.Is(err, ErrNoActiveAction) {
		t.Fatalf("Heartbeat without an action: %v", err)
	}
	err = l.Complete(ctx, ResultContinue)
	if !errors.Is(err, ErrNoActiveAction) {
		t.Fatalf("Complete without an action: %v", err)
	}
	for _, want := range []string{
		"ec2 lifecycle CompleteLifecycleAction (group bbb-media, hook bbb-drain, instance i-0123456789abcdef0): no active lifecycle action: ",
		"api error ValidationError: No active Lifecycle Action found with instance ID i-0123456789abcdef0",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
	// Nothing is left to complete: a second call returns the same answer
	// without asking again.
	if again := l.Complete(ctx, ResultContinue); again != err {
		t.Errorf("second Complete: %v, want the first outcome", again)
	}
	checkCalls(t, emu,
		call(asemu.ActionHeartbeat, "", asemu.CodeValidationError),
		call(asemu.ActionComplete, ResultContinue, asemu.CodeValidationError),
	)
}

func TestLifecycleBadInputEmulatedAutoScaling(t *testing.T) {
	emu, l := emulatedAutoScaling(t)
	if err := l.Complete(context.Background(), "PROCEED"); err == nil {
		t.Error("Complete(PROCEED): no error")
	}
	checkCalls(t, emu)
	if _, err := NewLifecycle(aws.Config{}, testGroup, "", testInstance); err == nil {
		t.Error("NewLifecycle without a hook: no error")
	}
}
