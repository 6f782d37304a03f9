package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/bbb-agent/bbb-agent/balancer"
	"github.com/bbb-agent/bbb-agent/balancer/adminapi"
	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := newApp().Run(os.Args); err != nil {
		if unreachable := (*adminapi.UnreachableError)(nil); errors.As(err, &unreachable) {
			err = fmt.Errorf("%w; check --url or BBB_BALANCER_URL", err)
		}
		fmt.Fprintln(os.Stderr, "bbb-balancer:", err)
		os.Exit(1)
	}
}

func newApp() *cli.App {
	return &cli.App{
		Name:    "bbb-balancer",
		Usage:   "a BigBlueButton load balancer fed by bbb-agent reports",
		Version: version,
		Suggest: true, // a mistyped command or flag gets "Did you mean ...?"
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "url", Value: "http://" + balancer.DefaultListen, EnvVars: []string{"BBB_BALANCER_URL"}, Usage: "the balancer to administer"},
			&cli.StringFlag{Name: "admin-token", EnvVars: []string{"BBB_BALANCER_ADMIN_TOKEN"}, Usage: "the admin API token"},
		},
		Commands: []*cli.Command{serveCommand(), statusCommand(), serversCommand(), roomsCommand(), recordingsCommand()},
	}
}

// localTime is how the command prints a time for a person: local, with the
// zone, so that it names one instant also when read on another machine or
// beside a log in UTC.
func localTime(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05 MST") }
