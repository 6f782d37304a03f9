package main

import (
	"github.com/bbb-agent/bbb-agent/internal/cliconfig"
	"github.com/urfave/cli/v2"
)

// DefaultConfigFile is where `bbb-balancer serve` reads its settings from
// unless --config names another file.
const DefaultConfigFile = "/etc/bbb-balancer/balancer.yaml"

// loadConfigFile applies balancer.yaml to every flag of serve not given on
// the command line or in the environment: flags win, then the environment,
// then the file (the same rules as bbb-agent's agent.yaml). The keys are
// the flag names; an unknown key or a bad value is an error that names it.
// The default file is optional; a --config file must exist.
func loadConfigFile(c *cli.Context) error {
	files, err := cliconfig.Files(c.String("config"), !c.IsSet("config"), "")
	if err != nil {
		return err
	}
	_, err = cliconfig.Load(c, files, "secret, agent-token, listen")
	return err
}
