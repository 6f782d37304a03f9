// Package ec2 is what bbb-agent knows about running on Amazon EC2: the
// instance's facts from the instance metadata service (IMDSv2 only),
// including the Auto Scaling target lifecycle state that says a scale-in has
// come and the instance's tags (when they are in its metadata), and the
// lifecycle hook calls (heartbeat, completion) that hold the
// instance while the agent drains. The agent's drain owns when they are
// called. Tests run it against the loopback emulations in internal/emulate.
package ec2
