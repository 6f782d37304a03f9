package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
)

// Options says what Build makes.
type Options struct {
	Root    string    // the repository
	Out     string    // where the .deb files go (relative: to Root)
	Version string    // a Debian version, stamped into the binaries
	Arches  []string  // GOARCH values, which are also Debian's names (amd64, arm64)
	MTime   time.Time // of every file, for reproducible packages (zero: now)
}

const (
	maintainer = "bbb-agent maintainers <bbb-agent@users.noreply.github.com>"
	homepage   = "https://github.com/bbb-agent/bbb-agent"
)

// Build compiles bbb-agent and bbb-balancer for each architecture and packs
// each into a .deb; it returns their paths.
func Build(ctx context.Context, o Options) ([]string, error) {
	if !debVersion.MatchString(o.Version) {
		return nil, fmt.Errorf("mkdeb: version %q is not a Debian version (digits first; letters, digits, . + ~)", o.Version)
	}
	out := o.Out
	if !filepath.IsAbs(out) {
		out = filepath.Join(o.Root, out)
	}
	work, err := os.MkdirTemp("", "mkdeb-")
	if err != nil {
		return nil, fmt.Errorf("mkdeb: %w", err)
	}
	defer os.RemoveAll(work)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, fmt.Errorf("mkdeb: %w", err)
	}
	mtime := o.MTime
	if mtime.IsZero() {
		mtime = time.Now()
	}
	var debs []string
	for _, arch := range o.Arches {
		for _, p := range packages() {
			bin := filepath.Join(work, arch, p.name)
			if err := compile(ctx, o.Root, "./cmd/"+p.name, bin, arch, o.Version); err != nil {
				return nil, err
			}
			changelog := filepath.Join(work, arch, p.name+".changelog.gz")
			if err := writeChangelog(changelog, p.name, o.Version, mtime); err != nil {
				return nil, err
			}
			info := p.info(o.Root, bin, changelog, arch, o.Version, mtime)
			path := filepath.Join(out, fmt.Sprintf("%s_%s_%s.deb", p.name, o.Version, arch))
			if err := pack(info, path); err != nil {
				return nil, err
			}
			debs = append(debs, path)
		}
	}
	return debs, nil
}

// compile builds a static, stripped binary of pkg for linux/arch.
func compile(ctx context.Context, root, pkg, bin, arch, version string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath",
		"-ldflags", "-s -w -X main.version="+version, "-o", bin, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+arch, "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mkdeb: go build %s for %s: %w\n%s", pkg, arch, err, out)
	}
	return nil
}

// writeChangelog writes the one-entry Debian changelog every package needs
// (lintian: no-changelog), compressed as Debian policy asks.
func writeChangelog(path, name, version string, mtime time.Time) error {
	text := fmt.Sprintf("%s (%s) unstable; urgency=medium\n\n  * Built from %s at version %s.\n\n -- %s  %s\n",
		name, version, homepage, version, maintainer, mtime.UTC().Format(time.RFC1123Z))
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return err
	}
	if _, err := zw.Write([]byte(text)); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("mkdeb: %w", err)
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// pack writes info as a .deb at path.
func pack(info *nfpm.Info, path string) error {
	info = nfpm.WithDefaults(info)
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return fmt.Errorf("mkdeb: %s: %w", info.Name, err)
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("mkdeb: %w", err)
	}
	defer os.Remove(tmp)
	if err := deb.Default.Package(info, f); err != nil {
		f.Close()
		return fmt.Errorf("mkdeb: pack %s: %w", info.Name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("mkdeb: %w", err)
	}
	return os.Rename(tmp, path)
}
