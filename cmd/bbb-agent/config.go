package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/bbb-agent/bbb-agent/internal/cliconfig"
	"github.com/urfave/cli/v2"
)

// loadConfigFile applies agent.yaml, then the drop-ins agent.d/*.yaml beside
// it in lexical order (a later file's key replaces an earlier one's, a list
// included), to every flag not given on the command line or in the
// environment: flags win, then the environment, then the files. cloud-init
// and configuration management write a drop-in of their own, so the
// package's file never needs a merge. An unknown key or a bad value is an
// error that names it and its file. It returns the names of the flags the
// files set, each with the file that set it.
func loadConfigFile(c *cli.Context) (map[string]string, error) {
	path := c.String("config")
	files, err := cliconfig.Files(path, !c.IsSet("config"), filepath.Join(filepath.Dir(path), "agent.d"))
	if err != nil {
		return nil, err
	}
	fromFile, err := cliconfig.Load(c, files, "balancer-url, report-interval")
	if err != nil {
		return nil, err
	}
	return applyEC2Tags(c, fromFile) // with --ec2: the bbb-agent:* instance tags, last
}

// printConfig prints the effective configuration, secrets masked, with
// where each value came from.
func printConfig(c *cli.Context, fromFile map[string]string) error {
	w := c.App.Writer
	given := onCommandLine(c)
	for _, f := range c.Command.Flags {
		name := f.Names()[0]
		if name == "help" {
			continue
		}
		var val string
		switch f.(type) {
		case *cli.StringSliceFlag:
			val = strings.Join(c.StringSlice(name), ",")
		default:
			val = fmt.Sprint(c.Value(name))
		}
		src := source(c, f, fromFile, given)
		if name == "admin-socket" && adminSocket(c) != val {
			val, src = adminSocket(c), "flag"
		}
		if secretFlag(name) && val != "" {
			val = "******"
		}
		fmt.Fprintf(w, "%-20s %-40s # %s\n", name+":", val, src)
	}
	return nil
}

// source says where a flag's value comes from: the command line wins over
// the environment, the environment over the file.
func source(c *cli.Context, f cli.Flag, fromFile map[string]string, given map[string]bool) string {
	name := f.Names()[0]
	switch {
	case given[name]:
		return "flag"
	case fromFile[name] != "":
		return configSource(fromFile[name])
	case !c.IsSet(name):
		return "default"
	}
	if ev, ok := f.(interface{ GetEnvVars() []string }); ok {
		for _, e := range ev.GetEnvVars() {
			if _, set := os.LookupEnv(e); set {
				return "environment " + e
			}
		}
	}
	return "flag"
}

// onCommandLine returns the (first) names of the flags given on the command
// line of c's command. urfave/cli counts a flag from the environment as set
// too, so the command's arguments are read again the way package flag parses
// them: up to the first argument that is not a flag, or "--"; a flag that is
// not a boolean takes the next argument as its value unless it has "=value".
func onCommandLine(c *cli.Context) map[string]bool {
	given := map[string]bool{}
	lineage := c.Lineage()
	if len(lineage) < 2 || c.Command == nil {
		return given
	}
	byName := map[string]cli.Flag{}
	for _, f := range c.Command.Flags {
		for _, n := range f.Names() {
			byName[n] = f
		}
	}
	args := lineage[1].Args().Slice() // the command's name, then its arguments
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a == "--" || len(a) < 2 || a[0] != '-' {
			break
		}
		name, _, withValue := strings.Cut(strings.TrimPrefix(a[1:], "-"), "=")
		f, ok := byName[name]
		if !ok {
			continue
		}
		given[f.Names()[0]] = true
		if _, isBool := f.(*cli.BoolFlag); !isBool && !withValue {
			i++
		}
	}
	return given
}
