package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/recordings"
)

// drainPhase is where a drain is. The phases run in the order below; each
// step function does its phase's work and returns the next phase, or the
// same one to wait for the next measurement.
type drainPhase string

// The drain's phases.
const (
	// drainCordon asks the balancer for no new meetings, once per
	// registration. It ends when the balancer accepts, or at once when the
	// balancer does not know the node (it places nothing on it). While the
	// balancer cannot be reached the cordon is tried again every tick and
	// the wait's checks run meanwhile: a balancer we cannot reach places
	// nothing on us either.
	drainCordon drainPhase = "cordon"
	// drainWait waits for the meetings to end: two measurements in a row,
	// both taken after the cordon, that find none (a create placed just
	// before the cordon may still be on its way), or the deadline.
	drainWait drainPhase = "wait"
	// drainDeregister takes the node out of the balancer, with a few
	// retries. From here on the drain cannot be undone.
	drainDeregister drainPhase = "deregister"
	// drainRemoveDNS deletes the node's DNS records.
	drainRemoveDNS drainPhase = "remove-dns"
	// drainRelease lets the host go: the scale-in lifecycle action is
	// completed, logind's delay lock released.
	drainRelease drainPhase = "release"
	// drainDone: the agent is drained and Run returns.
	drainDone drainPhase = "done"
)

// drainRun is one drain, from its trigger to drainDone; Agent.drain is nil
// when no drain runs. Only the loop touches it.
type drainRun struct {
	source   DrainSource
	start    time.Time
	deadline time.Time
	phase    drainPhase

	cordoned     bool // the balancer accepted the cordon (since the last registration)
	cordonFailed bool // the last cordon attempt failed
	emptyTicks   int  // measurements in a row, after the cordon, that found no meetings
	lastBeat     time.Time
	why          string // why the wait ended
	err          error  // what kept the drain from finishing cleanly
}

// cordonTried says whether a measurement taken now counts for the wait:
// the cordon was accepted, or tried against a balancer we cannot reach.
func (d *drainRun) cordonTried() bool { return d.cordoned || d.cordonFailed }

// cancellable says whether the drain can still be undone: not once the
// node is being deregistered.
func (d *drainRun) cancellable() bool { return d.phase == drainCordon || d.phase == drainWait }

// registered notes a new registration during the drain: the new
// registration is not cordoned, so the drain cordons again.
func (d *drainRun) registered() {
	d.cordoned = false
	if d.phase == drainWait {
		d.phase = drainCordon
	}
}

// measurement is one tick's figures, as the drain's steps see them.
type measurement struct {
	now    time.Time
	load   fleet.Load
	ids    []string
	bbbErr error
	// rec is the recordings backlog, when recOK.
	rec   recordings.Backlog
	recOK bool
	// afterCordon: the drain's cordon had been accepted or tried before
	// this measurement was taken.
	afterCordon bool
}

// startDrain starts a drain from src; a drain under way goes on.
func (a *Agent) startDrain(ctx context.Context, src DrainSource) {
	now := a.cfg.Clock.Now()
	a.startDrainFrom(ctx, src, now, now.Add(a.cfg.DrainDeadline))
}

// startDrainFrom starts a drain from src that began at start (a resumed
// drain keeps its start and deadline).
func (a *Agent) startDrainFrom(ctx context.Context, src DrainSource, start, deadline time.Time) {
	if a.drain != nil {
		return
	}
	a.pendingDrain = nil // a new drain replaces the one left unfinished
	d := &drainRun{source: src, start: start, deadline: deadline, phase: drainCordon}
	a.drain = d
	a.saveDrain(d)
	a.setState(Draining)
	a.notify(func(n Notifier) error { return n.Stopping() })
	a.log.Info("drain started", "source", src, "deadline", d.deadline)
	a.mu.Lock()
	a.status.Drain = &DrainStatus{Source: src, Phase: string(d.phase), StartedAt: d.start, Deadline: d.deadline,
		MeetingsLeft: a.status.Load.Meetings}
	a.mu.Unlock()
	a.advanceDrain(ctx, nil)
	if d.phase != drainDone {
		a.nextTry = a.cfg.Clock.Now() // measure again now rather than at the next interval
	}
}

// advanceDrain runs the drain's steps until one waits for the next
// measurement (m is nil when there is none yet) or the drain is done.
func (a *Agent) advanceDrain(ctx context.Context, m *measurement) {
	d := a.drain
	for d.phase != drainDone {
		next := a.drainStep(ctx, d, m)
		if next == d.phase {
			return
		}
		a.log.Debug("drain", "from", d.phase, "to", next)
		d.phase = next
		if next == drainDone {
			a.forgetDrain()
		}
		a.mu.Lock()
		if a.status.Drain != nil {
			a.status.Drain.Phase = string(next)
		}
		a.mu.Unlock()
	}
}

// drainStep runs the step of d's phase and returns the next phase.
func (a *Agent) drainStep(ctx context.Context, d *drainRun, m *measurement) drainPhase {
	switch d.phase {
	case drainCordon:
		return a.cordonStep(ctx, d, m)
	case drainWait:
		return a.waitStep(ctx, d, m)
	case drainDeregister:
		return a.deregisterStep(ctx, d)
	case drainRemoveDNS:
		return a.removeDNSStep(ctx, d)
	case drainRelease:
		return a.releaseStep(ctx, d)
	}
	return drainDone
}

func (a *Agent) cordonStep(ctx context.Context, d *drainRun, m *measurement) drainPhase {
	if !a.everRegistered {
		d.why = "never registered"
		return drainDeregister
	}
	if !a.registered {
		return drainWait
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := a.deps.Registrar.Cordon(cctx)
	cancel()
	if err == nil {
		d.cordoned, d.cordonFailed, d.emptyTicks = true, false, 0
		a.log.Info("cordoned at the balancer: no new meetings")
		return drainWait
	}
	d.cordonFailed = true
	a.retryLater("cordoning at the balancer", err)
	if next := a.waitStep(ctx, d, m); next != drainWait {
		return next
	}
	return drainCordon
}

func (a *Agent) waitStep(ctx context.Context, d *drainRun, m *measurement) drainPhase {
	if m == nil {
		return drainWait
	}
	if d.source == SourceScaleIn && a.deps.ScaleIn != nil && m.now.Sub(d.lastBeat) >= a.cfg.HeartbeatEvery {
		if err := a.deps.ScaleIn.Heartbeat(ctx); err != nil {
			a.log.Warn("auto scaling lifecycle heartbeat", "err", err)
		} else {
			d.lastBeat = m.now
		}
	}
	left := m.load.Meetings
	a.mu.Lock()
	if a.status.Drain != nil {
		a.status.Drain.MeetingsLeft = left
	}
	a.mu.Unlock()
	if m.bbbErr == nil && left == 0 && m.afterCordon {
		d.emptyTicks++
	} else {
		d.emptyTicks = 0
	}
	processing, shipping, recWait := a.recordingsLeft(m)
	switch {
	case (d.emptyTicks >= 2 || !a.registered && m.bbbErr == nil && left == 0) && !recWait:
		d.why = "no meetings left"
		if a.cfg.DrainWaitRecordings && a.deps.Recordings != nil {
			d.why = "no meetings or recordings left"
		}
		return drainDeregister
	case !m.now.Before(d.deadline):
		a.log.Warn("drain deadline reached with meetings or recordings left: deregistering anyway; they end when the host goes away",
			"meetings_left", left, "recordings_processing", processing, "recordings_shipping", shipping, "deadline", d.deadline)
		d.why = "deadline reached"
		return drainDeregister
	}
	msg := drainMessage(left, processing, shipping, a.cfg.DrainWaitRecordings && a.deps.Recordings != nil)
	if m.bbbErr != nil {
		msg = "draining: BBB does not answer, waiting"
	}
	a.notify(func(n Notifier) error { return n.Status(msg) })
	if left == 0 && d.emptyTicks > 0 {
		a.nextTry = m.now.Add(a.cfg.ReportInterval / 2) // confirm soon
	}
	return drainWait
}

// deregisterStep takes the node out of the balancer, trying a few times; a
// failure is kept for Run's result, and the drain goes on.
func (a *Agent) deregisterStep(ctx context.Context, d *drainRun) drainPhase {
	if a.everRegistered {
		var err error
		for attempt := 0; attempt < 5; attempt++ {
			cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			err = a.deps.Registrar.Deregister(cctx)
			cancel()
			if err == nil || ctx.Err() != nil {
				break
			}
			a.log.Warn("deregistering", "err", err, "attempt", attempt+1)
			select {
			case <-ctx.Done():
			case <-a.cfg.Clock.After(min(time.Duration(attempt+1)*a.cfg.ReportInterval, 5*time.Second)):
			}
		}
		if err != nil {
			d.err = fmt.Errorf("drain finished (%s) but deregistration failed: %w", d.why, err)
			a.log.Error("deregistration failed; the balancer will see the node go offline", "err", err)
		} else {
			a.log.Info("deregistered", "why", d.why)
		}
	}
	a.registered = false
	a.mu.Lock()
	a.status.Registered = false
	a.mu.Unlock()
	return drainRemoveDNS
}

func (a *Agent) removeDNSStep(ctx context.Context, d *drainRun) drainPhase {
	if a.deps.DNS != nil && a.dnsApplied {
		if err := a.removeDNS(ctx); err != nil && d.err == nil {
			d.err = fmt.Errorf("drain finished (%s) but the DNS records were not removed: %w", d.why, err)
		}
	}
	return drainRelease
}

func (a *Agent) releaseStep(ctx context.Context, d *drainRun) drainPhase {
	if d.source == SourceScaleIn && a.deps.ScaleIn != nil {
		if err := a.deps.ScaleIn.Complete(ctx); err != nil {
			a.log.Error("completing the auto scaling lifecycle action", "err", err)
		}
	}
	if a.deps.Shutdown != nil {
		if err := a.deps.Shutdown.Release(); err != nil {
			a.log.Warn("releasing the shutdown delay lock", "err", err)
		}
	}
	a.mu.Lock()
	if a.status.Drain != nil {
		a.status.Drain.Finished = d.why
	}
	a.mu.Unlock()
	a.notify(func(n Notifier) error { return n.Status("drained: " + d.why) })
	a.setState(Drained)
	return drainDone
}

// undrain cancels the drain, if it has not started deregistering and its
// source allows; the balancer takes the node back first.
func (a *Agent) undrain(ctx context.Context) error {
	d := a.drain
	if d == nil {
		return errors.New("the node is not draining")
	}
	if !d.cancellable() {
		return fmt.Errorf("the drain is past its wait (phase %s): the node is leaving the fleet and cannot be taken back", d.phase)
	}
	if err := d.source.undoable(); err != nil {
		return err
	}
	if a.registered {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := a.deps.Registrar.Enable(cctx); err != nil {
			return fmt.Errorf("the balancer did not take the node back: %w", err)
		}
	}
	a.log.Info("drain cancelled by undrain")
	a.endDrain()
	return nil
}

// endDrain returns to ready (or registering) after a cancelled drain.
func (a *Agent) endDrain() {
	a.drain = nil
	a.forgetDrain()
	a.mu.Lock()
	a.status.Drain = nil
	a.mu.Unlock()
	if a.registered {
		a.setState(Ready)
	} else {
		a.setState(Registering)
	}
}
