// Package cliconfig applies YAML configuration files to a command's flags,
// with the rules both daemons follow: flags win, then the environment, then
// the files; a file's keys are the flag names (- or _); an unknown key or a
// bad value is an error that names the key and its file.
package cliconfig

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

// Files lists the configuration files to read, in order: path (left out
// when it does not exist and optional is set), then the *.yaml files of
// dropIns in lexical order ("" : none).
func Files(path string, optional bool, dropIns string) ([]string, error) {
	var files []string
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) && optional {
		// the default file is optional
	} else {
		files = append(files, path)
	}
	if dropIns != "" {
		found, err := filepath.Glob(filepath.Join(dropIns, "*.yaml"))
		if err != nil {
			return nil, fmt.Errorf("configuration drop-ins: %w", err)
		}
		sort.Strings(found)
		files = append(files, found...)
	}
	return files, nil
}

// Load applies files, in order (a later file's key replaces an earlier
// one's, a list included), to every flag of c's command that the command
// line and the environment left unset. hint names example keys for the
// unknown-key message. It returns the flags the files set, each with the
// file that set it.
func Load(c *cli.Context, files []string, hint string) (map[string]string, error) {
	type setting struct {
		path  string
		value any
	}
	merged := map[string]setting{}
	for _, p := range files {
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
	fromFile := map[string]string{}
	for _, key := range keys {
		s := merged[key]
		name := strings.ReplaceAll(key, "_", "-")
		f, ok := known[name]
		if !ok || name == "config" || name == "help" {
			return nil, fmt.Errorf("%s: unknown key %q (the keys are the flags of `%s --help`, e.g. %s)", s.path, key, c.Command.HelpName, hint)
		}
		if c.IsSet(name) {
			continue
		}
		values, err := values(s.value)
		if err != nil {
			return nil, fmt.Errorf("%s: key %q: %w", s.path, key, err)
		}
		for _, v := range values {
			if err := c.Set(name, v); err != nil {
				return nil, fmt.Errorf("%s: key %q: value %q is not valid: want %s", s.path, key, v, Expected(f))
			}
		}
		fromFile[name] = s.path
	}
	return fromFile, nil
}

// values turns a YAML scalar or list into flag values.
func values(v any) ([]string, error) {
	switch x := v.(type) {
	case nil:
		return nil, errors.New("no value")
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			vals, err := values(e)
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

// Expected says in words what a flag takes.
func Expected(f cli.Flag) string {
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
