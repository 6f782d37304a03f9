package main

import (
	"fmt"
	"strings"

	"github.com/bbb-agent/bbb-agent/agent"
	"github.com/bbb-agent/bbb-agent/agent/host"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/urfave/cli/v2"
)

// DefaultConfigPath is where packaging puts the agent's configuration.
const DefaultConfigPath = "/etc/bbb-agent/agent.yaml"

// The categories of run's flags in --help; --config and --help come first,
// without one.
const (
	catNode       = "Node"
	catBBB        = "BBB"
	catBalancer   = "Balancer"
	catDrain      = "Drain"
	catEC2        = "EC2"
	catDNS        = "DNS"
	catTURN       = "TURN"
	catRecordings = "Recordings"
	catLogging    = "Logging and metrics"
)

func env(name string) []string { return []string{"BBB_AGENT_" + name} }

// setting names a setting of `bbb-agent run` by all three of its sources,
// for messages: "--report-interval (BBB_AGENT_REPORT_INTERVAL,
// report_interval in agent.yaml)". Library errors name only the setting;
// the command says where to set it, here.
func setting(name string) string {
	key := strings.ReplaceAll(name, "-", "_")
	return "--" + name + " (" + env(strings.ToUpper(key))[0] + ", " + key + " in agent.yaml)"
}

// settingError says that err is about the setting name; nil stays nil.
func settingError(name string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", setting(name), err)
}

// secretFlag says whether a flag's value is masked wherever configuration is
// shown: every *-secret and *-token flag (agent-token, bbb-secret,
// scalelite-secret, and those still to come).
func secretFlag(name string) bool {
	return strings.HasSuffix(name, "-secret") || strings.HasSuffix(name, "-token")
}

// runFlags are the flags of `bbb-agent run` and `bbb-agent config`; every one
// can also be given as BBB_AGENT_<NAME> and as a key of agent.yaml.
func runFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "config", Value: DefaultConfigPath, EnvVars: env("CONFIG"), Usage: "the configuration file (YAML; keys are these flags' names)"},
		&cli.StringFlag{Name: "node-name", Category: catNode, EnvVars: env("NODE_NAME"), Usage: "the node's name; {instance-id} is replaced by the EC2 instance ID; empty: generated once (bbb-xxxxxx) and kept in --state-dir"},
		&cli.StringFlag{Name: "role", Category: catNode, Value: string(fleet.RoleBBB), EnvVars: env("ROLE"), Usage: "bbb (a BigBlueButton server) or turn (a TURN server)"},
		&cli.StringFlag{Name: "state-dir", Category: catNode, Value: agent.DefaultStateDir, EnvVars: env("STATE_DIR"), Usage: "where the agent keeps its state (the generated node name)"},
		&cli.StringFlag{Name: "admin-socket", Category: catNode, Value: agent.DefaultAdminSocket, EnvVars: env("ADMIN_SOCKET"), Usage: "the local admin API's unix socket"},
		&cli.DurationFlag{Name: "report-interval", Category: catBalancer, Value: fleet.DefaultReportInterval, EnvVars: env("REPORT_INTERVAL"), Usage: "how often the node's load is reported"},
		&cli.DurationFlag{Name: "drain-deadline", Category: catDrain, Value: agent.DefaultDrainDeadline, EnvVars: env("DRAIN_DEADLINE"), Usage: "how long a drain waits for meetings to end; then the host is released, and a node whose meetings still run stays registered and cordoned (they stay joinable) until they end or the host stops"},
		&cli.DurationFlag{Name: "drain-unknown-grace", Category: catDrain, Value: agent.DefaultDrainUnknownGrace, EnvVars: env("DRAIN_UNKNOWN_GRACE"), Usage: "how long a drain takes a BBB that does not answer for meetings unknown (it waits); longer, it counts them as none left"},
		&cli.StringFlag{Name: "registrar", Category: catBalancer, Value: "balancer", EnvVars: env("REGISTRAR"), Usage: "balancer (bbb-balancer) or scalelite"},
		&cli.StringFlag{Name: "balancer-url", Category: catBalancer, EnvVars: env("BALANCER_URL"), Usage: "bbb-balancer's URL, e.g. https://lb.example.com"},
		&cli.StringFlag{Name: "agent-token", Category: catBalancer, EnvVars: env("AGENT_TOKEN"), Usage: "the token bbb-balancer expects from agents"},
		&cli.StringFlag{Name: "balancer-ca", Category: catBalancer, EnvVars: env("BALANCER_CA"), Usage: "PEM file of the CA that signed the balancer's (or Scalelite's) HTTPS certificate, trusted besides the system's"},
		&cli.BoolFlag{Name: "report-stream", Category: catBalancer, Value: true, EnvVars: env("REPORT_STREAM"), Usage: "send reports over one upgraded connection (half the balancer's CPU of a POST each); where the balancer or a proxy before it refuses the upgrade, reports go by POST; false: always by POST"},
		&cli.BoolFlag{Name: "takeover", Category: catBalancer, EnvVars: env("TAKEOVER"), Usage: "take over the node name from the node holding it at the balancer (allowed only after bbb-balancer servers allow-takeover NAME)"},
		&cli.StringFlag{Name: "scalelite-url", Category: catBalancer, EnvVars: env("SCALELITE_URL"), Usage: "Scalelite's URL, e.g. https://sl.example.com (registrar scalelite)"},
		&cli.StringFlag{Name: "scalelite-secret", Category: catBalancer, EnvVars: env("SCALELITE_SECRET"), Usage: "Scalelite's LOADBALANCER_SECRET (registrar scalelite)"},
		&cli.StringFlag{Name: "scalelite-checksum", Category: catBalancer, Value: string(bbb.SHA256), EnvVars: env("SCALELITE_CHECKSUM"), Usage: "checksum algorithm of calls to Scalelite: sha1, sha256 or sha512, as its LOADBALANCER_CHECKSUM_ALGORITHM allows (registrar scalelite)"},
		&cli.StringFlag{Name: "bbb-url", Category: catBBB, EnvVars: env("BBB_URL"), Usage: "this node's BBB server URL, e.g. https://bbb1.example.com; default: from bbb-web.properties"},
		&cli.StringFlag{Name: "bbb-secret", Category: catBBB, EnvVars: env("BBB_SECRET"), Usage: "this node's BBB API secret; default: from bbb-web.properties"},
		&cli.StringFlag{Name: "properties-root", Category: catBBB, Value: "/", EnvVars: env("PROPERTIES_ROOT"), Usage: "root below which bbb-web.properties is read (for tests and containers)"},
		&cli.StringFlag{Name: "public-ipv4", Category: catNode, EnvVars: env("PUBLIC_IPV4"), Usage: "the node's public IPv4 address (default: EC2 metadata with --ec2, else the interfaces)"},
		&cli.StringFlag{Name: "public-ipv6", Category: catNode, EnvVars: env("PUBLIC_IPV6"), Usage: "the node's public IPv6 address (default: EC2 metadata with --ec2, else the interfaces)"},
		&cli.StringSliceFlag{Name: "tag", Category: catNode, EnvVars: env("TAG"), Usage: "server tag for meta_server-tag (repeatable)"},
		&cli.Float64Flag{Name: "load-multiplier", Category: catNode, Value: 1, EnvVars: env("LOAD_MULTIPLIER"), Usage: "weight of this node's load at the balancer"},
		&cli.StringFlag{Name: "host-root", Category: catNode, Hidden: true, Value: "/", EnvVars: env("HOST_ROOT"), Usage: "root of /proc and /sys to read host figures from"},
		&cli.StringFlag{Name: "recordings-dir", Category: catRecordings, Value: host.DefaultDiskPath, EnvVars: env("RECORDINGS_DIR"), Usage: "where recordings live (free space is reported)"},
		&cli.BoolFlag{Name: "ec2", Category: catEC2, EnvVars: env("EC2"), Usage: "use EC2 instance metadata (instance ID, addresses, Auto Scaling lifecycle)"},
		&cli.StringFlag{Name: "imds-endpoint", Category: catEC2, Hidden: true, EnvVars: env("IMDS_ENDPOINT"), Usage: "EC2 instance metadata endpoint (default: the SDK's)"},
		&cli.StringFlag{Name: "asg-lifecycle-hook", Category: catEC2, EnvVars: env("ASG_LIFECYCLE_HOOK"), Usage: "the Auto Scaling lifecycle hook to complete after a scale-in drain"},
		&cli.StringFlag{Name: "asg-name", Category: catEC2, EnvVars: env("ASG_NAME"), Usage: "the Auto Scaling group (default: from instance metadata tags)"},
		&cli.StringFlag{Name: "aws-endpoint", Category: catEC2, EnvVars: env("AWS_ENDPOINT"), Usage: "Auto Scaling API endpoint override (tests, VPC endpoints)"},
		&cli.DurationFlag{Name: "asg-heartbeat", Category: catEC2, Value: agent.DefaultHeartbeatEvery, EnvVars: env("ASG_HEARTBEAT"), Usage: "how often a scale-in drain extends the lifecycle hook"},
		&cli.BoolFlag{Name: "logind", Category: catDrain, Value: true, EnvVars: env("LOGIND"), Usage: "hold a logind delay lock so a shutdown waits for the drain"},
		&cli.BoolFlag{Name: "drain-on-sigterm", Category: catDrain, EnvVars: env("DRAIN_ON_SIGTERM"), Usage: "drain on SIGTERM/SIGINT (hosts without logind); by default a signal stops the agent and the node stays registered, so a restart or a package upgrade never drains"},
		&cli.StringFlag{Name: "metrics-listen", Category: catLogging, EnvVars: env("METRICS_LISTEN"), Usage: "serve Prometheus metrics on this (loopback) address, e.g. 127.0.0.1:9688"},
		&cli.StringFlag{Name: "log-level", Category: catLogging, Value: "info", EnvVars: env("LOG_LEVEL"), Usage: "debug, info, warn or error"},
	}, append(append(dnsFlags(), turnFlags()...), recordingsFlags()...)...)
}

// adminSocket is run's --admin-socket. `bbb-agent --admin-socket PATH run`,
// the form status, drain and undrain take, gives it too, unless run's own
// flag is given as well.
func adminSocket(c *cli.Context) string {
	if !onCommandLine(c)["admin-socket"] {
		for _, p := range c.Lineage()[1:] {
			if p.IsSet("admin-socket") {
				return p.String("admin-socket")
			}
		}
	}
	return c.String("admin-socket")
}
