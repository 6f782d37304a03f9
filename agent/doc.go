// Package agent is bbb-agent, the daemon on every BBB and TURN node: it
// registers the node with its balancer, reports the node's load, and owns the
// one drain state machine every drain source feeds (SIGTERM, logind,
// Auto Scaling, the admin socket, a cordon at the balancer). It also serves
// the local admin API behind `bbb-agent status|drain|undrain`.
//
// One loop (lifecycle.go) owns the lifecycle; the drain is a state machine
// of named phases (drain.go: cordon, wait, deregister, remove-dns, release),
// and slow work runs beside the loop (turn.go), so the report interval holds
// whatever TURN, DNS, BBB or the balancer do.
package agent
