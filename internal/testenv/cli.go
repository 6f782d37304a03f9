package testenv

import (
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// RunCLI runs a command's urfave/cli app in-process with args (the program
// name first) and returns what it wrote to standard output; an error that
// would exit the process is returned instead.
func RunCLI(t testing.TB, app *cli.App, args ...string) (stdout string, err error) {
	t.Helper()
	var out, errOut strings.Builder
	app.Writer, app.ErrWriter = &out, &errOut
	app.ExitErrHandler = func(*cli.Context, error) {}
	err = app.Run(args)
	return out.String(), err
}

// HelpFlags lists the flags a help text shows ("--name" at the start of a
// line).
func HelpFlags(help string) []string {
	var flags []string
	for _, l := range strings.Split(help, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "--") {
			flags = append(flags, strings.TrimRight(strings.Fields(l)[0], ","))
		}
	}
	return flags
}
