package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/fleet"
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
		k.fail("configuration", err)
		return cli.Exit("", 1)
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
	if n.role == fleet.RoleBBB {
		checkStorage(ctx, c, k)
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
		return cli.Exit(fmt.Sprintf("%d checks failed", k.failed), 1)
	}
	return nil
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
		k.ok("BBB secret", fmt.Sprintf("accepted (%d meetings running)", len(meetings)))
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
