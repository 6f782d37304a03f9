// Command mkdeb builds the bbb-agent and bbb-balancer Debian packages with
// nfpm: `go run ./packaging/mkdeb -out dist -arch amd64,arm64` (what
// `make package` runs). It compiles both commands for each architecture
// (CGO_ENABLED=0, the version stamped with -ldflags "-X main.version=...")
// and writes dist/<pkg>_<version>_<arch>.deb. The version is -version, or
// `git describe --tags --always --dirty` made a valid Debian version.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
)

func main() {
	out := flag.String("out", "dist", "directory the .deb files are written to")
	arches := flag.String("arch", "amd64,arm64", "comma-separated GOARCH values (Debian architecture names)")
	version := flag.String("version", "", "the package version (default: from git describe)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *out, *version, strings.Split(*arches, ",")); err != nil {
		fmt.Fprintln(os.Stderr, "mkdeb:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out, version string, arches []string) error {
	root, err := repoRoot(ctx)
	if err != nil {
		return err
	}
	if version == "" {
		if version, err = gitVersion(ctx, root); err != nil {
			return err
		}
	}
	mtime, err := commitTime(ctx, root)
	if err != nil {
		return err
	}
	debs, err := Build(ctx, Options{Root: root, Out: out, Version: version, Arches: arches, MTime: mtime})
	if err != nil {
		return err
	}
	for _, d := range debs {
		slog.Info("package written", "path", d)
	}
	return nil
}
