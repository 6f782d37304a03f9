package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"
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
	path := c.String("config")
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !c.IsSet("config") {
		return nil
	}
	if err != nil {
		return fmt.Errorf("configuration file: %w", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s is not valid YAML: %w", path, err)
	}
	known := map[string]cli.Flag{}
	for _, f := range c.Command.Flags {
		known[f.Names()[0]] = f
	}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		name := strings.ReplaceAll(key, "_", "-")
		f, ok := known[name]
		if !ok || name == "config" || name == "help" {
			return fmt.Errorf("%s: unknown key %q (the keys are the flags of `bbb-balancer serve --help`, e.g. secret, agent-token, listen)", path, key)
		}
		if c.IsSet(name) {
			continue
		}
		values, err := yamlValues(doc[key])
		if err != nil {
			return fmt.Errorf("%s: key %q: %w", path, key, err)
		}
		for _, v := range values {
			if err := c.Set(name, v); err != nil {
				return fmt.Errorf("%s: key %q: value %q is not valid: want %s", path, key, v, expected(f))
			}
		}
	}
	return nil
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
