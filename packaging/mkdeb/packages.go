package main

import (
	"os"
	"path/filepath"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/files"
)

// pkg is one of the two packages.
type pkg struct {
	name        string
	description string
	depends     []string
	// contents besides the binary, the changelog and the copyright file:
	// source (relative to packaging/) → destination, type, mode.
	contents []entry
}

type entry struct {
	src, dst string
	typ      string // files.Type*; "" is a regular file
	mode     os.FileMode
}

func packages() []pkg {
	return []pkg{{
		name: "bbb-agent",
		description: "BigBlueButton / TURN node agent for bbb-balancer and Scalelite\n" +
			" Registers a BigBlueButton or TURN server with bbb-balancer (or Scalelite),\n" +
			" reports its load, keeps its DNS records, and drains it before a host\n" +
			" shutdown or an Auto Scaling scale-in. A package upgrade or a restart does\n" +
			" not drain the node.",
		contents: []entry{
			{src: "systemd/bbb-agent.service", dst: "/lib/systemd/system/bbb-agent.service", mode: 0o644},
			{src: "systemd/logind-bbb-agent.conf", dst: "/usr/lib/systemd/logind.conf.d/bbb-agent.conf", mode: 0o644},
			{src: "bbb/post_publish/bbb_agent.rb", dst: "/usr/local/bigbluebutton/core/scripts/post_publish/bbb_agent.rb", mode: 0o755},
			{src: "debian/agent.yaml", dst: "/usr/share/bbb-agent/agent.yaml", mode: 0o644},
			{src: "debian/agent.yaml", dst: "/usr/share/doc/bbb-agent/examples/agent.yaml", mode: 0o644},
			{src: "cloud-init/bbb-node.yaml", dst: "/usr/share/doc/bbb-agent/examples/cloud-init/bbb-node.yaml", mode: 0o644},
			{src: "cloud-init/turn-node.yaml", dst: "/usr/share/doc/bbb-agent/examples/cloud-init/turn-node.yaml", mode: 0o644},
			{src: "cloud-init/ec2-asg-user-data.yaml", dst: "/usr/share/doc/bbb-agent/examples/cloud-init/ec2-asg-user-data.yaml", mode: 0o644},
			{src: "cloud-init/ec2-iam-policy.json", dst: "/usr/share/doc/bbb-agent/examples/cloud-init/ec2-iam-policy.json", mode: 0o644},
			{src: "cloud-init/ec2-launch-template.json", dst: "/usr/share/doc/bbb-agent/examples/cloud-init/ec2-launch-template.json", mode: 0o644},
			{src: "cloud-init/ec2-lifecycle-hook.sh", dst: "/usr/share/doc/bbb-agent/examples/cloud-init/ec2-lifecycle-hook.sh", mode: 0o644},
			{src: "debian/bbb-agent.lintian-overrides", dst: "/usr/share/lintian/overrides/bbb-agent", mode: 0o644},
			{dst: "/etc/bbb-agent", typ: files.TypeDir, mode: 0o755},
			{dst: "/etc/bbb-agent/agent.d", typ: files.TypeDir, mode: 0o755},
		},
	}, {
		name: "bbb-balancer",
		description: "load balancer for BigBlueButton servers\n" +
			" Speaks the BigBlueButton API to front-ends (Greenlight, Moodle, ...) and\n" +
			" places each meeting on a BigBlueButton server of its fleet; bbb-agent on\n" +
			" each server registers it and reports its load.",
		depends: []string{"adduser"},
		contents: []entry{
			{src: "systemd/bbb-balancer.service", dst: "/lib/systemd/system/bbb-balancer.service", mode: 0o644},
			{src: "debian/balancer.env", dst: "/usr/share/bbb-balancer/balancer.env", mode: 0o644},
			{src: "debian/balancer.env", dst: "/usr/share/doc/bbb-balancer/examples/balancer.env", mode: 0o644},
			{src: "grafana/bbb-fleet.json", dst: "/usr/share/bbb-balancer/grafana/bbb-fleet.json", mode: 0o644},
			{src: "debian/bbb-balancer.lintian-overrides", dst: "/usr/share/lintian/overrides/bbb-balancer", mode: 0o644},
			{dst: "/etc/bbb-balancer", typ: files.TypeDir, mode: 0o755},
		},
	}}
}

// info is the nfpm description of p for arch, with bin as its binary.
func (p pkg) info(root, bin, changelog, arch, version string, mtime time.Time) *nfpm.Info {
	dir := filepath.Join(root, "packaging")
	owned := func(mode os.FileMode) *files.ContentFileInfo {
		return &files.ContentFileInfo{Owner: "root", Group: "root", Mode: mode, MTime: mtime}
	}
	contents := files.Contents{
		{Source: bin, Destination: "/usr/bin/" + p.name, FileInfo: owned(0o755)},
		{Source: changelog, Destination: "/usr/share/doc/" + p.name + "/changelog.gz", FileInfo: owned(0o644)},
		{Source: filepath.Join(dir, "debian/copyright"), Destination: "/usr/share/doc/" + p.name + "/copyright", FileInfo: owned(0o644)},
	}
	for _, e := range p.contents {
		c := &files.Content{Destination: e.dst, Type: e.typ, FileInfo: owned(e.mode)}
		if e.src != "" {
			c.Source = filepath.Join(dir, e.src)
		}
		contents = append(contents, c)
	}
	script := func(kind string) string { return filepath.Join(dir, "debian", p.name+"."+kind) }
	return &nfpm.Info{
		Name:          p.name,
		Arch:          arch,
		Platform:      "linux",
		Version:       version,
		VersionSchema: "none",
		Section:       "net",
		Priority:      "optional",
		Maintainer:    maintainer,
		Description:   p.description,
		Homepage:      homepage,
		MTime:         mtime,
		Overridables: nfpm.Overridables{
			Depends:  p.depends,
			Contents: contents,
			Scripts: nfpm.Scripts{
				PostInstall: script("postinst"),
				PreRemove:   script("prerm"),
				PostRemove:  script("postrm"),
			},
			Deb: nfpm.Deb{Compression: "xz"},
		},
	}
}
