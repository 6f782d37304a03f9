package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// State is the agent's lifecycle state, in the vocabulary of the whole
// project (code, API, CLI, metrics):
// starting → registering → ready → draining → drained → stopped.
type State string

// The lifecycle states.
const (
	Starting    State = "starting"
	Registering State = "registering"
	Ready       State = "ready"
	Draining    State = "draining"
	Drained     State = "drained"
	Stopped     State = "stopped"
)

// DrainSource says who asked for a drain.
type DrainSource string

// The drain sources.
const (
	// SourceSignal: SIGTERM or SIGINT (systemctl stop, a shutdown without logind).
	SourceSignal DrainSource = "signal"
	// SourceShutdown: logind announced a shutdown (PrepareForShutdown).
	SourceShutdown DrainSource = "shutdown"
	// SourceScaleIn: the EC2 Auto Scaling group is terminating the instance.
	SourceScaleIn DrainSource = "scale-in"
	// SourceAdmin: `bbb-agent drain`.
	SourceAdmin DrainSource = "admin"
	// SourceBalancer: an operator cordoned the node at the balancer.
	SourceBalancer DrainSource = "balancer"
)

// undoable says whether `bbb-agent undrain` may cancel a drain from src: a
// drain the host itself asked for (stop, shutdown, scale-in) cannot be undone
// from the agent; logind cancels its own.
func (src DrainSource) undoable() error {
	switch src {
	case SourceAdmin, SourceBalancer:
		return nil
	case SourceShutdown:
		return fmt.Errorf("the drain was started by a system shutdown; it ends if the shutdown is cancelled (shutdown -c)")
	default:
		return fmt.Errorf("the drain was started by %s and cannot be undone: the host is going away", src)
	}
}

// Drain starts a drain (idempotent: a drain under way goes on).
func (a *Agent) Drain(ctx context.Context, src DrainSource) error {
	return a.send(ctx, command{drain: true, req: drainRequest{source: src}})
}

// DrainUntil starts a drain whose deadline is deadline, or in from now (the
// one given); a drain under way gets that deadline while it still waits.
func (a *Agent) DrainUntil(ctx context.Context, src DrainSource, deadline time.Time, in time.Duration) error {
	if deadline.IsZero() && in <= 0 {
		return errors.New("no deadline: give a duration from now or a time")
	}
	return a.send(ctx, command{drain: true, req: drainRequest{source: src, deadline: deadline, deadlineIn: in}})
}

// Undrain cancels a drain that has not started deregistering, if its
// source allows.
func (a *Agent) Undrain(ctx context.Context) error {
	return a.send(ctx, command{drain: false})
}

func (a *Agent) send(ctx context.Context, c command) error {
	c.reply = make(chan error, 1)
	select {
	case a.cmds <- c:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-c.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run registers, reports and drains until the drain is done (nil, or the
// error that kept it from finishing cleanly) or ctx ends (ctx.Err()). It is
// the one owner of the lifecycle: the drain sources (commands, logind, the
// scale-in check, the balancer's reply) only trigger the drain, and the
// slow work (the TURN sync) runs beside the loop.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var beside sync.WaitGroup
	defer func() {
		cancel()
		beside.Wait()
	}()
	if a.deps.TURN != nil {
		beside.Go(func() { a.runTURN(ctx) })
	}
	a.setState(Registering)
	if saved, err := a.loadDrain(); err != nil {
		a.log.Warn("an unfinished drain from an earlier run", "err", err)
	} else if saved != nil {
		a.pendingDrain = saved
		a.log.Info("an earlier run was stopped while draining: the drain resumes once the node is registered", "source", saved.Source, "deadline", saved.Deadline)
	}
	a.notify(func(n Notifier) error { return n.Ready() })
	var shutdowns <-chan bool
	if a.deps.Shutdown != nil {
		shutdowns = a.deps.Shutdown.Events()
	}
	next := a.cfg.Clock.After(0)
	for {
		select {
		case <-ctx.Done():
			a.leaveOnStop(ctx)
			a.setState(Stopped)
			return ctx.Err()
		case c := <-a.cmds:
			if c.drain {
				c.reply <- a.drainCommand(ctx, c.req)
			} else {
				c.reply <- a.undrain(ctx)
			}
		case starting, ok := <-shutdowns:
			if !ok {
				shutdowns = nil
				continue
			}
			a.shutdownEvent(ctx, starting)
		case <-next:
			a.tick(ctx)
		}
		a.publishStatus()
		if a.fatal != nil {
			a.log.Error("stopping", "err", a.fatal)
			a.setState(Stopped)
			return a.fatal
		}
		if d := a.drain; d != nil && d.phase == drainDone {
			a.setState(Stopped)
			a.publishStatus()
			return d.err
		}
		next = a.cfg.Clock.After(a.untilNextTick())
	}
}

// shutdownEvent follows logind: a shutdown starting drains, a shutdown
// cancelled cancels the drain it started and takes the delay lock again.
func (a *Agent) shutdownEvent(ctx context.Context, starting bool) {
	switch {
	case starting:
		a.log.Info("logind: the system is shutting down: draining")
		a.startDrain(ctx, SourceShutdown)
	case a.drain != nil && a.drain.source == SourceShutdown && a.drain.cancellable():
		a.log.Info("logind: the shutdown was cancelled: drain cancelled")
		if a.registered {
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := a.deps.Registrar.Enable(cctx)
			cancel()
			if err != nil {
				a.log.Warn("taking the node back at the balancer after a cancelled shutdown", "err", err)
			}
		}
		a.endDrain()
		if err := a.deps.Shutdown.Reacquire(ctx); err != nil {
			a.log.Warn("taking the shutdown delay lock again", "err", err)
		}
	}
}

// checkScaleIn drains when the Auto Scaling group terminates the instance.
func (a *Agent) checkScaleIn(ctx context.Context) {
	if a.deps.ScaleIn == nil || a.drain != nil {
		return
	}
	term, err := a.deps.ScaleIn.Terminating(ctx)
	if msg := errString(err); msg != a.scaleInErr {
		a.scaleInErr = msg
		if err != nil {
			a.log.Warn("cannot read the auto scaling lifecycle state from EC2 metadata; a scale-in will not drain until it can", "err", err)
		} else {
			a.log.Info("auto scaling lifecycle state readable again")
		}
	}
	if term {
		a.log.Info("the auto scaling group is terminating this instance: draining")
		a.startDrain(ctx, SourceScaleIn)
	}
}

func (a *Agent) setState(s State) {
	a.mu.Lock()
	old := a.status.State
	a.status.State = s
	a.mu.Unlock()
	if old != s {
		a.log.Info("lifecycle", "from", old, "to", s)
		if s == Ready {
			a.notify(func(n Notifier) error { return n.Status("ready: reporting to " + a.deps.Registrar.Kind()) })
		}
	}
}

// State is the current lifecycle state.
func (a *Agent) State() State {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.status.State
}

func (a *Agent) notify(f func(Notifier) error) {
	if a.deps.Notifier == nil {
		return
	}
	if err := f(a.deps.Notifier); err != nil {
		a.log.Debug("sd_notify", "err", err)
	}
}

// Healthy says whether the agent loop is alive and reporting (or trying
// to): the systemd watchdog is fed only while it is. The margin covers the
// longest bounded step of the loop (the deregistration's five tries at the
// end of a drain, under two minutes; a DNS apply is bounded by
// dnsApplyTimeout, and nothing in the loop waits for DNS propagation or a
// TURN probe), so only a loop that is really stuck gets restarted.
func (a *Agent) Healthy() bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return !a.status.updated.IsZero() && a.cfg.Clock.Now().Sub(a.status.updated) < 3*a.cfg.ReportInterval+2*time.Minute
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
