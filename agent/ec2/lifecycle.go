package ec2

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/smithy-go"
)

// The results a lifecycle action completes with.
const (
	// ResultContinue lets the termination go on, through the group's
	// other lifecycle hooks.
	ResultContinue = "CONTINUE"
	// ResultAbandon skips the group's remaining hooks; a terminating
	// instance terminates all the same.
	ResultAbandon = "ABANDON"
)

// lifecycleAttempts is how often one Auto Scaling call is tried when it is
// throttled or fails in transit (the SDK's default is 3), unless the
// configuration sets RetryMaxAttempts.
const lifecycleAttempts = 6

// ErrNoActiveAction: Auto Scaling has no lifecycle action waiting for this
// instance at this hook: the hook's timeout passed, someone else completed
// it, or the instance is not (or no longer) in the wait state.
var ErrNoActiveAction = errors.New("no active lifecycle action")

// Lifecycle completes and extends one instance's lifecycle action at one
// hook of its Auto Scaling group. Complete sends at most one successful
// completion however often it is called; it is safe for concurrent use.
type Lifecycle struct {
	client                  *autoscaling.Client
	group, hook, instanceID string
	log                     *slog.Logger

	lock    chan struct{} // held while a completion is in flight
	done    chan struct{} // closed once the action is finished
	outcome error         // the finishing Complete's error, under lock
}

// NewLifecycle returns the lifecycle action of instanceID at hook in group,
// called through the Auto Scaling API with cfg (LoadConfig in production,
// StaticConfig against an emulation). It contacts nothing; it logs the
// completion to slog.Default().
func NewLifecycle(cfg aws.Config, group, hook, instanceID string) (*Lifecycle, error) {
	if group == "" || hook == "" || instanceID == "" {
		return nil, fmt.Errorf("ec2 lifecycle: group %q, hook %q and instance %q must all be set", group, hook, instanceID)
	}
	client := autoscaling.NewFromConfig(cfg, func(o *autoscaling.Options) {
		if o.RetryMaxAttempts == 0 {
			o.RetryMaxAttempts = lifecycleAttempts
		}
	})
	return &Lifecycle{
		client: client, group: group, hook: hook, instanceID: instanceID,
		log:  slog.Default(),
		lock: make(chan struct{}, 1),
		done: make(chan struct{}),
	}, nil
}

// Heartbeat records a lifecycle action heartbeat: Auto Scaling restarts the
// hook's heartbeat timeout. It fails with ErrNoActiveAction when no action
// waits.
func (l *Lifecycle) Heartbeat(ctx context.Context) error {
	_, err := l.client.RecordLifecycleActionHeartbeat(ctx, &autoscaling.RecordLifecycleActionHeartbeatInput{
		AutoScalingGroupName: aws.String(l.group),
		LifecycleHookName:    aws.String(l.hook),
		InstanceId:           aws.String(l.instanceID),
	})
	return l.wrap("RecordLifecycleActionHeartbeat", err)
}

// Complete completes the lifecycle action with result (ResultContinue or
// ResultAbandon), retrying throttling. The first call that finishes the
// action (success, or ErrNoActiveAction: nothing is left to complete) is the
// only one sent; later calls return its outcome without a request. A call
// that failed otherwise (throttled beyond the retries, network) leaves the
// action open for another call.
func (l *Lifecycle) Complete(ctx context.Context, result string) error {
	if result != ResultContinue && result != ResultAbandon {
		return fmt.Errorf("ec2 lifecycle: result %q: want %s or %s", result, ResultContinue, ResultAbandon)
	}
	select {
	case l.lock <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-l.lock }()
	select {
	case <-l.done:
		return l.outcome
	default:
	}
	_, err := l.client.CompleteLifecycleAction(ctx, &autoscaling.CompleteLifecycleActionInput{
		AutoScalingGroupName:  aws.String(l.group),
		LifecycleHookName:     aws.String(l.hook),
		InstanceId:            aws.String(l.instanceID),
		LifecycleActionResult: aws.String(result),
	})
	err = l.wrap("CompleteLifecycleAction", err)
	switch {
	case err == nil:
		l.log.Info("ec2: lifecycle action completed", "group", l.group, "hook", l.hook, "result", result)
	case errors.Is(err, ErrNoActiveAction):
		l.log.Warn("ec2: no lifecycle action left to complete", "group", l.group, "hook", l.hook, "err", err)
	default:
		return err
	}
	l.outcome = err
	close(l.done)
	return err
}

// wrap names the call and its action in err and marks a missing action with
// ErrNoActiveAction.
func (l *Lifecycle) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	what := fmt.Sprintf("ec2 lifecycle %s (group %s, hook %s, instance %s)", op, l.group, l.hook, l.instanceID)
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode() == "ValidationError" &&
		strings.HasPrefix(apiErr.ErrorMessage(), "No active Lifecycle Action found") {
		return fmt.Errorf("%s: %w: %w", what, ErrNoActiveAction, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
