package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/bbb-agent/bbb-agent/agent"
	"github.com/bbb-agent/bbb-agent/agent/ec2"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/cliconfig"
	"github.com/urfave/cli/v2"
)

// tagPrefix starts the keys of the EC2 instance tags bbb-agent reads:
// bbb-agent:<key>, <key> one of tagKeys, as in agent.yaml ("-" or "_").
// EC2 puts a tag in the instance metadata only if its key has letters,
// digits and + - = . , _ : @ alone, so the prefix ends in a colon, not a
// slash.
const tagPrefix = "bbb-agent:"

// tagKeys are the settings an instance tag can give: what one launch
// template or Auto Scaling group gives all its instances.
var tagKeys = []string{"balancer-url", "agent-token", "role", "node-name", "tag", "dns-zone", "load-multiplier"}

// tagSourcePrefix marks, in the map of where values came from, a value
// from an instance tag rather than a file.
const tagSourcePrefix = "EC2 instance tag "

// applyEC2Tags applies, with --ec2, the instance's bbb-agent:* tags to the
// flags that the command line, the environment and the configuration files
// left unset: the tags are the cloud's configuration file, read last. It
// adds the flags they set to fromFile, each with its tag, and returns it.
// Tags not in the instance metadata (InstanceMetadataTags disabled) are an
// INFO line and change nothing; a metadata service that does not answer,
// an unknown bbb-agent:* key or a bad value is an error that names the tag.
func applyEC2Tags(c *cli.Context, fromFile map[string]string) (map[string]string, error) {
	if !c.Bool("ec2") {
		return fromFile, nil
	}
	md, err := ec2.NewMetadata(c.String("imds-endpoint"))
	if err != nil {
		return nil, settingError("imds-endpoint", err)
	}
	tags, err := md.InstanceTags(c.Context, tagPrefix)
	if errors.Is(err, ec2.ErrTagsNotExposed) {
		tagLogger(c, md).Info("EC2 instance tags are not in the instance metadata: no " + tagPrefix + "* tags read (to configure the agent with tags, set InstanceMetadataTags=enabled in the launch template)")
		return fromFile, nil
	}
	if err != nil {
		return nil, fmt.Errorf("--ec2: the instance's %s* tags: %w (the agent does not start with part of its configuration)", tagPrefix, err)
	}
	fromFile, set, overridden, err := applyTags(c, tags, fromFile)
	if err != nil {
		return nil, err
	}
	if len(set)+len(overridden) > 0 {
		// Keys only: a value may be the agent token.
		tagLogger(c, md).Info("EC2 instance tags read", "applied", set, "overridden_by_flag_env_or_file", overridden)
	}
	return fromFile, nil
}

// applyTags applies tags (whole key → value) to the unset flags of c. It
// returns the keys of the tags it applied and of those a flag, the
// environment or a file overrode.
func applyTags(c *cli.Context, tags map[string]string, fromFile map[string]string) (_ map[string]string, set, overridden []string, _ error) {
	flags := map[string]cli.Flag{}
	for _, f := range c.Command.Flags {
		flags[f.Names()[0]] = f
	}
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		name := strings.ReplaceAll(strings.TrimPrefix(key, tagPrefix), "_", "-")
		f, ok := flags[name]
		if !ok || !slices.Contains(tagKeys, name) {
			return nil, nil, nil, fmt.Errorf("EC2 instance tag %q: unknown key: the tags bbb-agent reads are %s<key> for the keys %s", key, tagPrefix, strings.Join(tagKeys, ", "))
		}
		value := strings.TrimSpace(tags[key])
		if value == "" {
			continue
		}
		if c.IsSet(name) {
			overridden = append(overridden, key)
			continue
		}
		shown := value
		if secretFlag(name) {
			shown = "******"
		}
		if err := checkTag(name, value); err != nil {
			return nil, nil, nil, fmt.Errorf("EC2 instance tag %q: value %q is not valid: %w (fix the tag, or give %s, which wins over it)", key, shown, err, setting(name))
		}
		values := []string{value}
		if _, list := f.(*cli.StringSliceFlag); list {
			values = splitList(value)
		}
		for _, v := range values {
			if err := c.Set(name, v); err != nil {
				return nil, nil, nil, fmt.Errorf("EC2 instance tag %q: value %q is not valid: want %s (fix the tag, or give %s, which wins over it)", key, shown, cliconfig.Expected(f), setting(name))
			}
		}
		if fromFile == nil {
			fromFile = map[string]string{}
		}
		fromFile[name] = tagSourcePrefix + key
		set = append(set, key)
	}
	return fromFile, set, overridden, nil
}

// checkTag refuses the tag values that would otherwise fail later, under
// the flag's name only.
func checkTag(name, value string) error {
	switch name {
	case "role":
		_, err := fleet.ParseRole(value)
		return err
	case "balancer-url":
		u, err := url.Parse(value)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return errors.New("want an http:// or https:// URL, e.g. https://lb.example.com")
		}
	}
	return nil
}

// splitList splits a tag's comma-separated list: a tag has one value.
func splitList(value string) []string {
	var out []string
	for _, v := range strings.Split(value, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// configSource says where `bbb-agent config` got a value that the files
// or the tags gave: "file PATH" or "EC2 instance tag KEY".
func configSource(from string) string {
	if strings.HasPrefix(from, tagSourcePrefix) {
		return from
	}
	return "file " + from
}

// tagLogger logs what the tags did before run has its logger: the same
// text lines on standard error, at --log-level (info when that is bad;
// run says so), with the node's name as far as it is known here: the
// configured one, {instance-id} replaced; "" for a name the first start
// generates.
func tagLogger(c *cli.Context, md *ec2.Metadata) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		level = slog.LevelInfo
	}
	node := c.String("node-name")
	if node != "" {
		if name, err := agent.NodeName(c.Context, node, "", md.InstanceID); err == nil {
			node = name
		}
	}
	return slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: level})).With("node", node)
}
