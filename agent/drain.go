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
	// before the cordon may still be on its way), or the deadline. Meetings
	// BBB does not tell (it does not answer) are unknown, never none; unknown
	// for longer than Config.DrainUnknownGrace they count as none.
	drainWait drainPhase = "wait"
	// drainLeaving: the deadline passed with meetings still running (or
	// unknown). The host is released (the scale-in lifecycle action
	// completed, logind's delay lock released) but the node stays registered
	// and cordoned and keeps its DNS records and its reports, so its meetings
	// stay joinable through the balancer; the balancer knows it is leaving
	// (agentapi.ReportRequest.Leaving). It ends when the meetings do (two
	// empty measurements, or unknown past the grace), when the balancer has
	// removed the node, or when the agent is stopped (the host going away:
	// leaveOnStop). A drain started by a signal never leaves this way: the
	// host waits for the agent's exit, so its deadline deregisters.
	drainLeaving drainPhase = "leaving"
	// drainDeregister takes the node out of the balancer, with a few
	// retries. From here on the drain cannot be undone.
	drainDeregister drainPhase = "deregister"
	// drainRemoveDNS deletes the node's DNS records.
	drainRemoveDNS drainPhase = "remove-dns"
	// drainRelease lets the host go: the scale-in lifecycle action is
	// completed, logind's delay lock released (unless leaving did already).
	drainRelease drainPhase = "release"
	// drainDone: the agent is drained and Run returns.
	drainDone drainPhase = "done"
)

// phaseMessages are the status messages of the phases that do one thing and
// go on; the others say what they wait for.
var phaseMessages = map[drainPhase]string{
	drainDeregister: "deregistering at the balancer",
	drainRemoveDNS:  "removing the DNS records",
	drainRelease:    "letting the host go",
	drainDone:       "",
}

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
	// known is the last meeting count BBB told; unknownSince is when BBB
	// stopped answering (zero while it answers).
	known        int
	unknownSince time.Time
	graceOver    bool   // the grace ran out (said once)
	released     bool   // the host was let go at the deadline (leaving)
	gone         bool   // the balancer removed the node: nothing to deregister
	why          string // why the wait ended
	err          error  // what kept the drain from finishing cleanly
}

// cordonTried says whether a measurement taken now counts for the wait:
// the cordon was accepted, or tried against a balancer we cannot reach.
func (d *drainRun) cordonTried() bool { return d.cordoned || d.cordonFailed }

// cancellable says whether the drain can still be undone: not once its
// deadline let the host go, nor once the node is being deregistered.
func (d *drainRun) cancellable() bool { return d.phase == drainCordon || d.phase == drainWait }

// registered notes a new registration during the drain: the new
// registration is not cordoned, so the drain cordons again (a leaving
// drain too: the wait finds its deadline passed and leaves again).
func (d *drainRun) registered() {
	d.cordoned = false
	if d.phase == drainWait || d.phase == drainLeaving {
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

// drainRequest is what a drain command asks: who, and optionally this
// drain's own deadline (an absolute time, or a duration from now).
type drainRequest struct {
	source     DrainSource
	deadline   time.Time
	deadlineIn time.Duration
}

// drainCommand starts a drain, or moves the deadline of the one under way
// when the request gives one.
func (a *Agent) drainCommand(ctx context.Context, r drainRequest) error {
	now := a.cfg.Clock.Now()
	deadline := r.deadline
	if r.deadlineIn != 0 {
		deadline = now.Add(r.deadlineIn)
	}
	if deadline.IsZero() {
		a.startDrain(ctx, r.source)
		return nil
	}
	if !deadline.After(now) {
		return fmt.Errorf("the deadline %s is not in the future: give a duration (30m) or a later time", formatTime(deadline))
	}
	d := a.drain
	if d == nil {
		a.startDrainFrom(ctx, r.source, now, deadline)
		return nil
	}
	if !d.cancellable() {
		return fmt.Errorf("the drain is past its wait (phase %s): its deadline can no longer change", d.phase)
	}
	a.log.Info("drain deadline changed", "from", d.deadline, "to", deadline)
	d.deadline = deadline
	a.saveDrain(d)
	a.updateDrain(func(s *DrainStatus) { s.Deadline = deadline })
	a.nextTry = now // measure again now: the new deadline may have passed the wait
	return nil
}

// startDrain starts a drain from src; a drain under way goes on.
func (a *Agent) startDrain(ctx context.Context, src DrainSource) {
	now := a.cfg.Clock.Now()
	a.startDrainFrom(ctx, src, now, now.Add(a.cfg.DrainDeadline))
}

// startDrainFrom starts a drain from src that began at start (a resumed
// drain keeps its start and deadline).
func (a *Agent) startDrainFrom(ctx context.Context, src DrainSource, start, deadline time.Time) {
	a.startDrainRun(ctx, &drainRun{source: src, start: start, deadline: deadline, phase: drainCordon})
}

// startDrainRun starts the drain d (a resumed leaving drain comes with its
// host already released).
func (a *Agent) startDrainRun(ctx context.Context, d *drainRun) {
	if a.drain != nil {
		return
	}
	a.pendingDrain = nil // a new drain replaces the one left unfinished
	a.drain = d
	a.saveDrain(d)
	a.setState(Draining)
	a.notify(func(n Notifier) error { return n.Stopping() })
	a.log.Info("drain started", "source", d.source, "deadline", d.deadline)
	a.mu.RLock()
	left := a.status.Load.Meetings
	a.mu.RUnlock()
	d.known = left
	a.setDrainStatus(&DrainStatus{Source: d.source, Phase: string(d.phase), StartedAt: d.start, Deadline: d.deadline, MeetingsLeft: left})
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
		a.updateDrain(func(s *DrainStatus) {
			s.Phase = string(next)
			if msg, ok := phaseMessages[next]; ok {
				s.Message = msg
			}
		})
	}
}

// drainStep runs the step of d's phase and returns the next phase.
func (a *Agent) drainStep(ctx context.Context, d *drainRun, m *measurement) drainPhase {
	switch d.phase {
	case drainCordon:
		return a.cordonStep(ctx, d, m)
	case drainWait:
		return a.waitStep(ctx, d, m)
	case drainLeaving:
		return a.leavingStep(ctx, d, m)
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
		a.mu.Lock()
		a.status.DesiredState = fleet.Cordoned
		a.mu.Unlock()
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

// meetings is what a measurement says about the node's meetings, as the
// drain sees it.
type meetings struct {
	left int // BBB's count; while unknown, the last one it told
	// unknownFor is how long BBB has not answered (0: it answers).
	unknownFor time.Duration
	known      bool
	// empty: none left, or unknown for longer than the grace.
	empty bool
}

// observe reads the node's meetings from m for the drain: a BBB that does not
// answer leaves them unknown, never none, until it has not answered for
// longer than Config.DrainUnknownGrace; an answer resets that. The status
// shows the count, or since when it is unknown; the log says when BBB stops
// answering, when the grace runs out and when it answers again.
func (a *Agent) observe(d *drainRun, m *measurement) meetings {
	var s meetings
	if m.bbbErr == nil {
		if !d.unknownSince.IsZero() {
			a.log.Info("drain: BBB answers again: meetings known", "meetings", m.load.Meetings,
				"unknown_for", m.now.Sub(d.unknownSince).Round(time.Second).String())
			d.unknownSince, d.graceOver = time.Time{}, false
		}
		d.known = m.load.Meetings
		s = meetings{left: d.known, known: true, empty: d.known == 0}
	} else {
		if d.unknownSince.IsZero() {
			d.unknownSince = m.now
			a.log.Warn("drain: BBB not answering: meetings unknown (not counted as none); treated as none left once unknown for longer than the grace",
				"grace", a.cfg.DrainUnknownGrace.String(), "meetings_last_known", d.known, "err", m.bbbErr)
		}
		s = meetings{left: d.known, unknownFor: m.now.Sub(d.unknownSince)}
		if s.unknownFor >= a.cfg.DrainUnknownGrace {
			if !d.graceOver {
				a.log.Warn("drain: BBB not answering for longer than the grace: meetings unknown, treated as none left",
					"unknown_for", s.unknownFor.Round(time.Second).String(), "grace", a.cfg.DrainUnknownGrace.String())
			}
			d.graceOver, s.empty = true, true
		}
	}
	since := d.unknownSince
	a.updateDrain(func(st *DrainStatus) {
		st.MeetingsLeft, st.MeetingsUnknownSince = s.left, since
	})
	return s
}

// unknownMessage says that BBB does not answer: "BBB not answering for
// 5m0s: meetings unknown".
func (s meetings) unknownMessage() string {
	return fmt.Sprintf("BBB not answering for %s: meetings unknown", s.unknownFor.Round(time.Second))
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
	s := a.observe(d, m)
	if s.empty && m.afterCordon {
		d.emptyTicks++
	} else {
		d.emptyTicks = 0
	}
	emptyDone := d.emptyTicks >= 2 || !a.registered && s.empty || s.empty && !s.known
	processing, shipping, recWait := a.recordingsLeft(m)
	switch {
	case emptyDone && !recWait:
		switch {
		case !s.known:
			d.why = fmt.Sprintf("BBB not answering for %s (longer than the grace %s): meetings treated as none left",
				s.unknownFor.Round(time.Second), a.cfg.DrainUnknownGrace)
		case a.cfg.DrainWaitRecordings && a.deps.Recordings != nil:
			d.why = "no meetings or recordings left"
		default:
			d.why = "no meetings left"
		}
		return drainDeregister
	case !m.now.Before(d.deadline) && !s.empty && a.registered && d.source != SourceSignal:
		d.why = "deadline reached"
		if s.known {
			a.log.Warn("drain deadline reached with meetings still running: leaving placement, but the node stays registered and cordoned "+
				"so its meetings stay joinable; the host is released; the node leaves the balancer once they end or the host stops",
				"meetings_left", s.left, "deadline", d.deadline)
		} else {
			a.log.Warn("drain deadline reached while BBB does not answer (meetings unknown): leaving placement, but the node stays registered and cordoned; "+
				"the host is released; the node leaves the balancer once the meetings are known to have ended, unknown past the grace, or the host stops",
				"unknown_for", s.unknownFor.Round(time.Second).String(), "deadline", d.deadline)
		}
		a.leave(ctx, d, s)
		return drainLeaving
	case !m.now.Before(d.deadline):
		a.log.Warn("drain deadline reached with meetings or recordings left: deregistering anyway; they end when the host goes away",
			"meetings_left", s.left, "meetings_known", s.known, "recordings_processing", processing, "recordings_shipping", shipping, "deadline", d.deadline)
		d.why = "deadline reached"
		return drainDeregister
	}
	msg := drainMessage(s.left, processing, shipping, a.cfg.DrainWaitRecordings && a.deps.Recordings != nil)
	if !s.known {
		msg = "draining: " + s.unknownMessage()
	}
	a.updateDrain(func(st *DrainStatus) { st.Message = msg })
	a.notify(func(n Notifier) error { return n.Status(msg) })
	if s.empty && d.emptyTicks > 0 {
		a.nextTry = m.now.Add(a.cfg.ReportInterval / 2) // confirm soon
	}
	return drainWait
}

// leave enters leaving: the host is let go (once: a resumed leaving drain
// had done it), and the status says why the node stays.
func (a *Agent) leave(ctx context.Context, d *drainRun, s meetings) {
	if !d.released {
		a.releaseHost(ctx, d)
		d.released = true
		a.saveDrain(d)
	}
	d.emptyTicks = 0
	a.leavingStatus(s)
	// Report now, saying leaving: the balancer then removes the node once
	// it goes offline, even if the host goes away before the next interval.
	a.nextTry = a.cfg.Clock.Now()
}

// leavingStatus says, in the status and to systemd, why a leaving node
// stays: "leaving: past the deadline with 1 meeting running, joinable; ...".
func (a *Agent) leavingStatus(s meetings) {
	msg := fmt.Sprintf("leaving: past the deadline with %s running, joinable; the node leaves the balancer once they end or the host stops",
		meetingCount(s.left))
	if !s.known {
		msg = "leaving: past the deadline; " + s.unknownMessage() + "; the node leaves the balancer once they are known to have ended, unknown past the grace, or the host stops"
	}
	a.updateDrain(func(st *DrainStatus) { st.Message = msg })
	a.notify(func(n Notifier) error { return n.Status(msg) })
}

// leavingStep waits, after the deadline, for the meetings to end (or the
// balancer to remove the node) while the node stays registered, cordoned
// and reporting.
func (a *Agent) leavingStep(ctx context.Context, d *drainRun, m *measurement) drainPhase {
	if m == nil {
		return drainLeaving
	}
	if !a.registered {
		// The balancer no longer knows the node (it removed it: reports of
		// a leaving node that end, or zero meetings): nothing to deregister.
		a.log.Info("leaving: the balancer has removed the node")
		d.gone = true
		d.why = "deadline reached; the balancer removed the node"
		return drainDeregister
	}
	a.mu.RLock()
	desired := a.status.DesiredState
	a.mu.RUnlock()
	if desired == fleet.Enabled {
		// An operator enabled the node at the balancer, but its host was
		// released: it must not take new meetings.
		a.log.Warn("leaving: the balancer has the node enabled again, but its host was released at the drain deadline: cordoning it again")
		d.cordoned = false
		return drainCordon
	}
	s := a.observe(d, m)
	if s.empty {
		d.emptyTicks++
	} else {
		d.emptyTicks = 0
	}
	switch {
	case s.empty && !s.known:
		d.why = fmt.Sprintf("deadline reached; BBB then not answering for %s (longer than the grace %s): meetings treated as none left",
			s.unknownFor.Round(time.Second), a.cfg.DrainUnknownGrace)
		return drainDeregister
	case d.emptyTicks >= 2:
		d.why = "deadline reached; the meetings then ended"
		return drainDeregister
	}
	a.leavingStatus(s)
	if s.empty {
		a.nextTry = m.now.Add(a.cfg.ReportInterval / 2) // confirm soon
	}
	return drainLeaving
}

// leaving says whether the node is leaving: past its drain's deadline, still
// registered for its meetings' sake. Every report says so to the balancer.
func (a *Agent) leaving() bool { return a.drain != nil && a.drain.phase == drainLeaving }

// leaveStopTimeout bounds what a stop does for a leaving node: deregister
// and remove its DNS records (systemd's stop timeout is 30 s).
const leaveStopTimeout = 10 * time.Second

// leaveOnStop: the agent stops while its node is leaving. The host was
// released at the deadline, so this stop is the host going away: the node
// leaves the balancer and its DNS records go, within leaveStopTimeout (the
// balancer removes a leaving node that goes offline, should this fail). The
// drain is over: a restarted agent does not resume it.
func (a *Agent) leaveOnStop(ctx context.Context) {
	d := a.drain
	if d == nil || d.phase != drainLeaving {
		return
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), leaveStopTimeout)
	defer cancel()
	a.log.Info("stopping while leaving: the host is going away; deregistering and removing the DNS records now")
	if a.registered {
		if err := a.deps.Registrar.Deregister(sctx); err != nil {
			a.log.Error("deregistering on stop failed; the balancer removes the leaving node once it is offline", "err", err)
		} else {
			a.log.Info("deregistered", "why", "stopped while leaving")
		}
		a.registered = false
	}
	if a.deps.DNS != nil && a.dnsApplied {
		if _, err := a.deps.DNS.Remove(sctx); err != nil {
			a.log.Error("removing the DNS records on stop", "err", err)
		} else {
			a.dnsApplied = false
			a.setDNS(dnsRemoved, false, nil)
			a.log.Info("DNS records removed")
		}
	}
	a.forgetDrain()
	a.mu.Lock()
	a.status.Registered = false
	a.mu.Unlock()
	a.updateDrain(func(st *DrainStatus) { st.Finished = "stopped while leaving: the host is going away" })
}

// deregisterStep takes the node out of the balancer, trying a few times; a
// failure is kept for Run's result, and the drain goes on.
func (a *Agent) deregisterStep(ctx context.Context, d *drainRun) drainPhase {
	if a.everRegistered && !d.gone {
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
	if !d.released {
		a.releaseHost(ctx, d)
	}
	a.updateDrain(func(st *DrainStatus) { st.Finished, st.Message, st.Error = d.why, "", errString(d.err) })
	a.notify(func(n Notifier) error { return n.Status("drained: " + d.why) })
	a.setState(Drained)
	return drainDone
}

// releaseHost lets the host go: the scale-in lifecycle action is completed,
// logind's delay lock released.
func (a *Agent) releaseHost(ctx context.Context, d *drainRun) {
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
}

// undrain cancels the drain, if it has not started deregistering and its
// source allows; the balancer takes the node back first.
func (a *Agent) undrain(ctx context.Context) error {
	d := a.drain
	if d == nil {
		return errors.New("the node is not draining")
	}
	if d.phase == drainLeaving {
		return errors.New("the drain is past its deadline (leaving): the host was released; the node leaves the fleet once its meetings end or the host stops, and cannot be taken back")
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
	a.setDrainStatus(nil)
	if a.registered {
		a.setState(Ready)
	} else {
		a.setState(Registering)
	}
}

// meetingCount is "1 meeting", "2 meetings".
func meetingCount(n int) string {
	if n == 1 {
		return "1 meeting"
	}
	return fmt.Sprintf("%d meetings", n)
}

// formatTime is how the agent writes a time for people: with its zone,
// "2026-12-04 21:30:00 UTC".
func formatTime(t time.Time) string { return t.Format("2006-01-02 15:04:05 MST") }
