package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"
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
	fromFile := map[string]string{}
	path := c.String("config")
	paths := []string{path}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) && !c.IsSet("config") {
		paths = nil // the default file is optional
	}
	dropIns, err := filepath.Glob(filepath.Join(filepath.Dir(path), "agent.d", "*.yaml"))
	if err != nil {
		return nil, fmt.Errorf("configuration drop-ins: %w", err)
	}
	sort.Strings(dropIns)
	type setting struct {
		path  string
		value any
	}
	merged := map[string]setting{}
	for _, p := range append(paths, dropIns...) {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("configuration file: %w", err)
		}
		var doc map[string]any
		if err := yaml.Unmarshal(data, &doc); err != nil {
			return nil, fmt.Errorf("%s is not valid YAML: %w", p, err)
		}
		for k, v := range doc {
			merged[k] = setting{p, v}
		}
	}
	known := map[string]cli.Flag{}
	for _, f := range c.Command.Flags {
		known[f.Names()[0]] = f
	}
	keys := make([]string, 0, len(merged))
	for k := range merged {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		s := merged[key]
		name := strings.ReplaceAll(key, "_", "-")
		f, ok := known[name]
		if !ok || name == "config" {
			return nil, fmt.Errorf("%s: unknown key %q (the keys are the flags of `bbb-agent run --help`, e.g. balancer-url, report-interval)", s.path, key)
		}
		if c.IsSet(name) {
			continue
		}
		values, err := yamlValues(s.value)
		if err != nil {
			return nil, fmt.Errorf("%s: key %q: %w", s.path, key, err)
		}
		for _, v := range values {
			if err := c.Set(name, v); err != nil {
				return nil, fmt.Errorf("%s: key %q: value %q is not valid: want %s", s.path, key, v, expected(f))
			}
		}
		fromFile[name] = s.path
	}
	return fromFile, nil
}

// yamlValues turns a YAML scalar or list into flag values.
func yamlValues(v any) ([]string, error) {
	switch x := v.(type) {
	case nil:
		return nil, errors.New("no value")
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			vals, err := yamlValues(e)
			if err != nil {
				return nil, err
			}
			out = append(out, vals...)
		}
		return out, nil
	case map[string]any:
		return nil, errors.New("a mapping is not a value: give a string, number, boolean or list")
	default:
		return []string{fmt.Sprint(x)}, nil
	}
}

func expected(f cli.Flag) string {
	switch f.(type) {
	case *cli.DurationFlag:
		return "a duration such as 5s, 2m or 1h30m"
	case *cli.BoolFlag:
		return "true or false"
	case *cli.Float64Flag:
		return "a number"
	case *cli.IntFlag, *cli.Int64Flag:
		return "a whole number"
	case *cli.StringSliceFlag:
		return "a string or a list of strings"
	}
	return "a string"
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
		return "file " + fromFile[name]
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
