package agent

import "time"

// Defaults of the agent's settings; bbb-agent run's flags take them as their
// values. The report interval's is fleet.DefaultReportInterval, the DNS
// wait's dnsupdate.DefaultWaitTimeout.
const (
	// DefaultDrainDeadline bounds a drain's wait for the meetings to end.
	DefaultDrainDeadline = 90 * time.Minute
	// DefaultDrainUnknownGrace is how long a drain waits on a BBB that does
	// not answer before it counts the node's meetings as none left.
	DefaultDrainUnknownGrace = 10 * time.Minute
	// DefaultHeartbeatEvery is how often a scale-in drain extends the
	// Auto Scaling lifecycle hook.
	DefaultHeartbeatEvery = time.Minute
	// DefaultStateDir is where the agent keeps its state (the generated node name).
	DefaultStateDir = "/var/lib/bbb-agent"
	// DefaultAdminSocket is the admin API's unix socket.
	DefaultAdminSocket = "/run/bbb-agent/admin.sock"
)
