package main

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// repoRoot is the top of the git work tree mkdeb runs in.
func repoRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return "", fmt.Errorf("mkdeb: run inside the repository's git work tree: git rev-parse: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// gitVersion is DebianVersion of `git describe --tags --always --dirty`,
// with the last commit's date for an untagged tree.
func gitVersion(ctx context.Context, root string) (string, error) {
	git := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("mkdeb: git %s: %w (give -version instead)", strings.Join(args, " "), err)
		}
		return strings.TrimSpace(string(out)), nil
	}
	desc, err := git("describe", "--tags", "--always", "--dirty")
	if err != nil {
		return "", err
	}
	date, err := git("log", "-1", "--format=%cd", "--date=format:%Y%m%d")
	if err != nil {
		return "", err
	}
	return DebianVersion(desc, date)
}

var (
	// v1.2.3, v1.2.3-rc1, then -N-gSHA when commits follow the tag.
	describeTag = regexp.MustCompile(`^v?([0-9][0-9A-Za-z.]*)(?:-([0-9A-Za-z.]+?))?(?:-([0-9]+)-g([0-9a-f]+))?(-dirty)?$`)
	// A bare abbreviated commit: no tag reachable.
	describeSHA = regexp.MustCompile(`^([0-9a-f]{4,40})(-dirty)?$`)
	// Debian policy 5.6.12, without epoch and revision.
	debVersion = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`)
)

// DebianVersion turns `git describe --tags --always --dirty` output into a
// Debian version that sorts the way the builds were made:
//
//	v1.2.3             → 1.2.3
//	v1.2.3-rc1         → 1.2.3~rc1 (before 1.2.3)
//	v1.2.3-4-gabc1234  → 1.2.3+git4.abc1234 (after 1.2.3)
//	abc1234            → 0.0.0~git20261204.abc1234 (date: the commit's, YYYYMMDD)
//
// and a -dirty tree adds "+dirty" (after the clean build of that commit).
func DebianVersion(describe, date string) (string, error) {
	var v string
	dirty := false
	if m := describeSHA.FindStringSubmatch(describe); m != nil {
		v = "0.0.0~git" + date + "." + m[1]
		dirty = m[2] != ""
	} else if m := describeTag.FindStringSubmatch(describe); m != nil {
		v = m[1]
		if m[2] != "" {
			v += "~" + m[2]
		}
		if m[3] != "" {
			v += "+git" + m[3] + "." + m[4]
		}
		dirty = m[5] != ""
	} else {
		return "", fmt.Errorf("mkdeb: git describe gave %q, not a tag like v1.2.3 or a commit; give -version", describe)
	}
	if dirty {
		v += "+dirty"
	}
	if !debVersion.MatchString(v) {
		return "", fmt.Errorf("mkdeb: %q (from git describe %q) is not a valid Debian version; give -version", v, describe)
	}
	return v, nil
}

// commitTime is the time of the last commit: the time of every file in the
// packages, so that a build of one commit gives the same packages.
func commitTime(ctx context.Context, root string) (time.Time, error) {
	cmd := exec.CommandContext(ctx, "git", "log", "-1", "--format=%ct")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return time.Time{}, fmt.Errorf("mkdeb: git log: %w", err)
	}
	sec, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("mkdeb: git log gave %q, not a time: %w", out, err)
	}
	return time.Unix(sec, 0), nil
}
