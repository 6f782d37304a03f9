// Package agent is bbb-agent, the daemon on every BBB and TURN node: it
// registers the node with its balancer, reports the node's load, and owns the
// one drain state machine every drain source feeds (SIGTERM, logind,
// Auto Scaling, the admin socket, a cordon at the balancer). It also serves
// the local admin API behind `bbb-agent status|drain|undrain`.
package agent

import "fmt"

// State is the agent's lifecycle state (DESIGN.md):
// starting → registering → ready → draining → drained → stopped.
type State string

// The lifecycle states.
const (
	Starting    State = "starting"
	Registering State = "registering"
	Ready       State = "ready"
	Draining    State = "draining"
	Drained     State = "drained"
	Stopped     State = "stopped"
)

// DrainSource says who asked for a drain.
type DrainSource string

// The drain sources.
const (
	// SourceSignal: SIGTERM or SIGINT (systemctl stop, a shutdown without logind).
	SourceSignal DrainSource = "signal"
	// SourceShutdown: logind announced a shutdown (PrepareForShutdown).
	SourceShutdown DrainSource = "shutdown"
	// SourceScaleIn: the EC2 Auto Scaling group is terminating the instance.
	SourceScaleIn DrainSource = "scale-in"
	// SourceAdmin: `bbb-agent drain`.
	SourceAdmin DrainSource = "admin"
	// SourceBalancer: an operator cordoned the node at the balancer.
	SourceBalancer DrainSource = "balancer"
)

// undoable says whether `bbb-agent undrain` may cancel a drain from src: a
// drain the host itself asked for (stop, shutdown, scale-in) cannot be undone
// from the agent; logind cancels its own.
func (src DrainSource) undoable() error {
	switch src {
	case SourceAdmin, SourceBalancer:
		return nil
	case SourceShutdown:
		return fmt.Errorf("the drain was started by a system shutdown; it ends if the shutdown is cancelled (shutdown -c)")
	default:
		return fmt.Errorf("the drain was started by %s and cannot be undone: the host is going away", src)
	}
}
