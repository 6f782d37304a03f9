package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/systemd"
	"github.com/urfave/cli/v2"
)

// checker prints one ✔/✘ line per check and remembers failures.
type checker struct {
	w      io.Writer
	failed int
}

func (k *checker) ok(what, detail string) { fmt.Fprintf(k.w, "✔ %s: %s\n", what, detail) }
func (k *checker) warn(what, detail string) {
	fmt.Fprintf(k.w, "! %s: %s\n", what, detail)
}
func (k *checker) fail(what string, err error) {
	k.failed++
	fmt.Fprintf(k.w, "✘ %s: %v\n", what, err)
}

// check runs the preflight checks an operator wants before `run`.
func check(c *cli.Context) error {
	k := &checker{w: c.App.Writer}
	ctx, cancel := context.WithTimeout(c.Context, 60*time.Second)
	defer cancel()
	if _, err := loadConfigFile(c); err != nil {
		k.fail("configuration", err)
		return cli.Exit("", 1)
	}
	n, err := resolve(ctx, c)
	if err != nil {
		// The very errors run stops with, one line each.
		for _, e := range splitErrors(err) {
			k.fail("configuration", e)
		}
		return cli.Exit(fmt.Sprintf("the configuration is not valid: bbb-agent run would not start (%s)", plural(k.failed, "problem")), 1)
	}
	k.ok("configuration", fmt.Sprintf("node %s, role %s, registrar %s", n.name, n.role, n.reg.Kind()))

	if n.bbb != nil {
		checkBBB(ctx, k, n)
	}
	if err := n.reg.Check(ctx); err != nil {
		k.fail(n.reg.Kind(), err)
	} else {
		k.ok(n.reg.Kind(), "answers and accepts the agent's credentials")
	}
	if n.dns != nil {
		checkDNS(ctx, c, k, n)
	}
	if n.storage != nil {
		checkStorage(ctx, n.storage, k)
	}
	if c.Bool("logind") {
		checkLogind(ctx, k, c.Duration("drain-deadline"))
	}
	if n.metadata != nil {
		if id, err := n.metadata.InstanceID(ctx); err != nil {
			k.fail("EC2 instance metadata", err)
		} else {
			state, err := n.metadata.LifecycleState(ctx)
			if err != nil {
				state = "unknown (" + err.Error() + ")"
			}
			k.ok("EC2 instance metadata", fmt.Sprintf("instance %s, auto scaling lifecycle state %s", id, state))
		}
	}
	if k.failed > 0 {
		return cli.Exit(plural(k.failed, "check")+" failed", 1)
	}
	return nil
}

// splitErrors returns the errors an errors.Join holds, or err alone.
func splitErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// plural is "1 check", "2 checks".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// checkDNS is check's line for the DNS provider: it takes the node's
// updates (rfc2136: the key accepted for the zone) and the node's records
// can be read.
func checkDNS(ctx context.Context, c *cli.Context, k *checker, n *node) {
	what := "DNS " + n.dns.kind
	m, err := dnsManager(ctx, c, n)
	if err != nil {
		k.fail(what, err)
		return
	}
	if err := providerCheck(ctx, m.Provider); err != nil {
		k.fail(what, err)
		return
	}
	records, err := m.Provider.Records(ctx, m.FQDN)
	if err != nil {
		k.fail(what, fmt.Errorf("reading the records of %s: %w", m.FQDN, err))
		return
	}
	detail := fmt.Sprintf("zone %s answers", n.dns.zone)
	if n.dns.rfc2136 != nil {
		detail += " and takes updates"
		if c.String("dns-tsig-key-name") != "" {
			detail += " signed with key " + strings.TrimSuffix(c.String("dns-tsig-key-name"), ".")
		}
	}
	k.ok(what, fmt.Sprintf("%s; %s has %s now", detail, m.FQDN, plural(len(records), "record set")))
}

func checkBBB(ctx context.Context, k *checker, n *node) {
	root, err := n.bbb.Root(ctx)
	if err != nil {
		k.fail("BBB API", fmt.Errorf("%s does not answer: %w", n.bbb.APIURL(), err))
		return
	}
	k.ok("BBB API", fmt.Sprintf("%s answers (API %s, BBB %s)", n.bbb.APIURL(), root.APIVersion, root.BBBVersion))
	meetings, err := n.bbb.GetMeetings(ctx)
	switch {
	case errors.Is(err, bbb.ErrChecksum):
		k.fail("BBB secret", errors.New("BBB refuses our checksums: the secret is wrong (bbb-conf --secret prints the right one)"))
	case err != nil:
		k.fail("BBB secret", err)
	default:
		k.ok("BBB secret", fmt.Sprintf("accepted (%s running)", plural(len(meetings), "meeting")))
	}
}

func checkLogind(ctx context.Context, k *checker, deadline time.Duration) {
	lg, err := systemd.NewLogind()
	if err != nil {
		k.warn("logind", fmt.Sprintf("%v (a shutdown still drains through SIGTERM)", err))
		return
	}
	defer lg.Close()
	max, err := lg.InhibitDelayMax(ctx)
	if err != nil {
		k.warn("logind", err.Error())
		return
	}
	if w := systemd.CheckInhibitDelay(max, deadline); w != "" {
		k.warn("logind", w)
		return
	}
	k.ok("logind", fmt.Sprintf("delay locks available, InhibitDelayMaxSec %s covers the drain deadline %s", max, deadline))
}
