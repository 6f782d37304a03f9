// Package agent is bbb-agent, the daemon on every BBB and TURN node: it
// registers the node with its balancer, reports the node's load, and owns the
// one drain state machine every drain source feeds (SIGTERM, logind,
// Auto Scaling, the admin socket, a cordon at the balancer). It also serves
// the local admin API behind `bbb-agent status|drain|undrain`.
package agent
