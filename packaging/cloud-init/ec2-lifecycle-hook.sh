#!/bin/sh
# The scale-in lifecycle hook the agent completes after its drain
# (asg-lifecycle-hook: bbb-drain). The heartbeat timeout is how long the
# group waits between the agent's heartbeats (--asg-heartbeat, 1m by
# default); CONTINUE lets the instance go even if the agent never answers.
set -eu
aws autoscaling put-lifecycle-hook \
	--auto-scaling-group-name "${ASG_NAME:?set ASG_NAME}" \
	--lifecycle-hook-name bbb-drain \
	--lifecycle-transition autoscaling:EC2_INSTANCE_TERMINATING \
	--heartbeat-timeout 600 \
	--default-result CONTINUE
