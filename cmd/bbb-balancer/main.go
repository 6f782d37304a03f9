// Command bbb-balancer is the central service of bbb-agent: `serve` runs it,
// the other commands administer a running one through its admin API.
package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := newApp().Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "bbb-balancer:", err)
		os.Exit(1)
	}
}

func newApp() *cli.App {
	return &cli.App{
		Name:    "bbb-balancer",
		Usage:   "a BigBlueButton load balancer fed by bbb-agent reports",
		Version: version,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "url", Value: "http://127.0.0.1:8090", EnvVars: []string{"BBB_BALANCER_URL"}, Usage: "the balancer to administer"},
			&cli.StringFlag{Name: "admin-token", EnvVars: []string{"BBB_BALANCER_ADMIN_TOKEN"}, Usage: "the admin API token"},
		},
		Commands: []*cli.Command{serveCommand(), statusCommand(), serversCommand(), recordingsCommand()},
	}
}
