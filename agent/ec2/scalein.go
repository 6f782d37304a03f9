package ec2

import "context"

// ScaleIn is the node's Auto Scaling lifecycle as the agent's drain sees it:
// the instance metadata says when the group terminates the instance, and the
// lifecycle hook (when one is configured) waits for the drain.
type ScaleIn struct {
	Metadata *Metadata
	// Lifecycle is nil when no lifecycle hook is configured: the drain then
	// has nothing to extend or complete.
	Lifecycle *Lifecycle
}

// Terminating reports whether the group's target state for the instance is Terminated.
func (s ScaleIn) Terminating(ctx context.Context) (bool, error) {
	state, err := s.Metadata.LifecycleState(ctx)
	if err != nil {
		return false, err
	}
	return state == StateTerminated, nil
}

// Heartbeat extends the lifecycle hook's wait.
func (s ScaleIn) Heartbeat(ctx context.Context) error {
	if s.Lifecycle == nil {
		return nil
	}
	return s.Lifecycle.Heartbeat(ctx)
}

// Complete lets the termination go on (CONTINUE), once.
func (s ScaleIn) Complete(ctx context.Context) error {
	if s.Lifecycle == nil {
		return nil
	}
	return s.Lifecycle.Complete(ctx, ResultContinue)
}
