package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/bbb-agent/bbb-agent/agent"
	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	agent.Version = version
	if err := newApp().Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "bbb-agent:", err)
		os.Exit(1)
	}
}

func newApp() *cli.App {
	app := &cli.App{
		Name:    "bbb-agent",
		Usage:   "joins a BigBlueButton node to its fleet, reports its load, and drains it before the host goes away",
		Version: version,
		Suggest: true, // a mistyped command or flag gets "Did you mean ...?"
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "admin-socket", Value: agent.DefaultAdminSocket, EnvVars: env("ADMIN_SOCKET"), Usage: "the running agent's admin socket"},
		},
		Commands: []*cli.Command{
			{Name: "run", Usage: "run the agent (systemd starts this)", Flags: runFlags(), Action: run},
			{Name: "config", Usage: "print the effective configuration (secrets masked) and where each value comes from", Flags: runFlags(),
				Action: func(c *cli.Context) error {
					fromFile, err := loadConfigFile(c)
					if err != nil {
						return err
					}
					return printConfig(c, fromFile)
				}},
			{Name: "check", Usage: "preflight checks: configuration, BBB, balancer, logind, EC2 metadata", Flags: runFlags(), Action: check},
			dnsCommand(),
			statusCommand(),
			drainCommand(),
			{Name: "undrain", Usage: "cancel a drain that has not finished", Action: undrain},
			{Name: "rotate-credential", Usage: "replace the node's own credential at the balancer and in the state directory", Action: rotateCredential},
			recordingsCommand(),
		},
	}
	app.OnUsageError = usageError("", app.Flags)
	for _, cmd := range app.Commands {
		cmd.OnUsageError = usageError(cmd.Name, cmd.Flags)
	}
	return app
}

// usageError says what was wrong with the command line, the environment or
// the file, the nearest flag to one not defined, and where the flags are
// listed, without printing the whole help (under systemd it would fill the
// journal).
func usageError(command string, flags []cli.Flag) cli.OnUsageErrorFunc {
	help := "bbb-agent --help"
	if command != "" {
		help = "bbb-agent " + command + " --help"
	}
	return func(_ *cli.Context, err error, _ bool) error {
		if name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: "); ok && cli.SuggestFlag != nil {
			if near := cli.SuggestFlag(flags, strings.TrimLeft(name, "-"), true); near != "" {
				return fmt.Errorf("%w; did you mean %s? (%s lists the flags)", err, near, help)
			}
		}
		return fmt.Errorf("%w (%s lists the flags)", err, help)
	}
}

// localTime is how the command prints a time for a person: local, with the
// zone, so that it names one instant also when read on another machine or
// beside a log in UTC. The zero time (none set) is "-".
func localTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05 MST")
}
