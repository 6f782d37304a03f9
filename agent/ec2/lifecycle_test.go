package ec2

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

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
func emulatedAutoScaling(t *testing.T, opts ...Option) (*asemu.Server, *Lifecycle) {
	t.Helper()
	emu := asemu.New()
	cfg, _ := awsemu.Serve(t, emu, "eu-central-1")
	l, err := NewLifecycle(cfg, testGroup, testHook, testInstance, append([]Option{testLogger(t)}, opts...)...)
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

// TestLifecycleKeepAliveEmulatedAutoScaling: heartbeats go out at once and
// at every tick, a failed one is tried at the next tick, and the loop ends
// with the completion, even one that lands while a heartbeat is in flight.
func TestLifecycleKeepAliveEmulatedAutoScaling(t *testing.T) {
	ticker := newManualTicker()
	emu, l := emulatedAutoScaling(t, ticker.option())
	ctx := context.Background()
	emu.StartAction(testGroup, testHook, testInstance)
	emu.Throttle(lifecycleAttempts) // heartbeat 1 fails, all its attempts throttled

	done := make(chan error, 1)
	go func() { done <- l.KeepAlive(ctx, HeartbeatInterval(300*time.Second)) }()
	// Each tick is taken after the previous heartbeat: after two ticks,
	// heartbeats 1 and 2 are done and 3 is under way.
	ticker.c <- time.Time{}
	ticker.c <- time.Time{}
	if err := l.Complete(ctx, ResultContinue); err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("KeepAlive after Complete: %v", err)
	}
	if ticker.every != 100*time.Second {
		t.Errorf("heartbeat interval %v, want 100s", ticker.every)
	}

	calls := emu.Calls()
	throttled := call(asemu.ActionHeartbeat, "", asemu.CodeThrottling)
	want := append(slices.Repeat([]asemu.Call{throttled}, lifecycleAttempts), call(asemu.ActionHeartbeat, "", ""))
	if len(calls) < len(want)+1 || !slices.Equal(calls[:len(want)], want) {
		t.Fatalf("calls: %+v", calls)
	}
	// Heartbeat 3 went out before the completion (and succeeded) or after
	// it (and found no action); exactly one completion either way.
	var completes int
	for _, c := range calls[len(want):] {
		if c.Action == asemu.ActionComplete {
			completes++
		}
	}
	if completes != 1 {
		t.Errorf("completions: %d, want 1; calls %+v", completes, calls)
	}
}

func TestLifecycleKeepAliveEndsEmulatedAutoScaling(t *testing.T) {
	t.Run("no action", func(t *testing.T) {
		_, l := emulatedAutoScaling(t, newManualTicker().option())
		if err := l.KeepAlive(context.Background(), time.Minute); !errors.Is(err, ErrNoActiveAction) {
			t.Fatalf("KeepAlive without an action: %v", err)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		ticker := newManualTicker()
		emu, l := emulatedAutoScaling(t, ticker.option())
		emu.StartAction(testGroup, testHook, testInstance)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- l.KeepAlive(ctx, time.Minute) }()
		ticker.c <- time.Time{}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("KeepAlive after cancel: %v", err)
		}
	})
	t.Run("bad interval", func(t *testing.T) {
		_, l := emulatedAutoScaling(t)
		if err := l.KeepAlive(context.Background(), 0); err == nil {
			t.Fatal("KeepAlive(0): no error")
		}
	})
}

func TestHeartbeatInterval(t *testing.T) {
	for _, tc := range []struct{ timeout, want time.Duration }{
		{30 * time.Second, 10 * time.Second},
		{time.Hour, 20 * time.Minute},
		{7200 * time.Second, 40 * time.Minute},
	} {
		if got := HeartbeatInterval(tc.timeout); got != tc.want {
			t.Errorf("HeartbeatInterval(%v) = %v, want %v", tc.timeout, got, tc.want)
		}
	}
}
