package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/bbb-agent/bbb-agent/agent/host"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/registrar"
)

// untilNextTick is the report interval, or sooner when a retry is due.
func (a *Agent) untilNextTick() time.Duration {
	d := a.cfg.ReportInterval
	if !a.nextTry.IsZero() {
		if w := a.nextTry.Sub(a.cfg.Clock.Now()); w < d {
			d = max(w, 0)
		}
	}
	return d
}

// tick is one report cycle: measure, register if needed, report, and move a
// drain along.
func (a *Agent) tick(ctx context.Context) {
	now := a.cfg.Clock.Now()
	if !a.nextTry.IsZero() && !now.Before(a.nextTry) {
		a.nextTry = time.Time{} // this tick is the one asked for
	}
	// Emptiness counts only from measurements taken after the cordon (or
	// after trying it: a balancer we cannot reach places nothing on us).
	m := measurement{now: now, afterCordon: a.drain != nil && a.drain.cordonTried()}
	m.load, m.ids, m.bbbErr = a.measure(ctx)
	if m.rec, m.recOK = a.measureRecordings(ctx); m.recOK {
		m.load.RecordingBacklog = m.rec.Pending()
	}
	a.mu.Lock()
	a.status.Load = m.load
	a.status.BBBHealthy = m.bbbErr == nil
	a.status.BBBError = errString(m.bbbErr)
	a.mu.Unlock()

	a.ticks++
	if a.deps.DNS != nil && a.drain == nil {
		if !a.dnsDone {
			if !a.nextTry.IsZero() || !a.ensureDNS(ctx) {
				a.checkScaleIn(ctx)
				return // registration waits for the name to answer
			}
		} else if a.ticks%12 == 0 {
			a.refreshAddresses(ctx)
			a.checkDNS(ctx)
		}
	}
	if !a.registered && a.nextTry.IsZero() {
		a.register(ctx)
	}
	if a.registered {
		a.report(ctx, m.load, m.ids)
	}
	a.checkScaleIn(ctx)
	if a.drain != nil {
		a.advanceDrain(ctx, &m)
	}
}

// measure takes the node's figures: the host's, and BBB's meetings.
func (a *Agent) measure(ctx context.Context) (fleet.Load, []string, error) {
	var load fleet.Load
	if a.deps.Host != nil {
		s, err := a.deps.Host(ctx)
		if err != nil {
			a.log.Warn("reading host figures", "err", err)
		} else {
			applyHost(&load, s)
		}
	}
	if a.deps.SelfProbe != nil {
		if err := a.deps.SelfProbe(ctx); err != nil {
			a.log.Warn("the TURN server fails its own probe", "err", err)
			a.mu.Lock()
			a.status.TURNError = err.Error()
			a.mu.Unlock()
		} else {
			load.TURNHealthy = true
			a.mu.Lock()
			a.status.TURNError = ""
			a.mu.Unlock()
		}
	}
	if a.deps.BBB == nil {
		load.BBBHealthy = true
		return load, nil, nil
	}
	timeout := max(a.cfg.ReportInterval, 2*time.Second)
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// The API root (no checksum) says which BBB runs; ask now and then.
	if now := a.cfg.Clock.Now(); a.bbbVersion == "" || now.Sub(a.versionAt) > 10*time.Minute {
		if root, err := a.deps.BBB.Root(cctx); err == nil {
			a.bbbVersion, a.versionAt = root.BBBVersion, now
		}
	}
	load.BBBVersion = a.bbbVersion
	start := a.cfg.Clock.Now()
	meetings, err := a.deps.BBB.GetMeetings(cctx)
	if err != nil && ctx.Err() != nil {
		return load, nil, err // stopping: not BBB's fault
	}
	a.bbbPolls.record(meetings, err, a.cfg.Clock.Now().Sub(start))
	load.BBBError = fleet.BBBReason(err, timeout)
	a.bbbHealth(load.BBBError)
	if err != nil {
		return load, nil, err
	}
	counts := fleet.CountMeetings(meetings)
	load.Meetings, load.Participants, load.Voice, load.Video = counts.Meetings, counts.Participants, counts.Voice, counts.Video
	load.Listeners, load.LargestMeeting = counts.Listeners, counts.LargestMeeting
	load.BBBHealthy = true
	return load, fleet.MeetingIDs(meetings), nil
}

func (a *Agent) register(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	state, err := a.deps.Registrar.Register(cctx, registrar.Registration{
		Node: a.cfg.Node, URL: a.cfg.ServerURL, Secret: a.cfg.Secret, Role: a.cfg.Role, Tags: a.cfg.Tags,
		LoadMultiplier: a.cfg.LoadMultiplier, AgentVersion: Version, ReportInterval: a.cfg.ReportInterval,
		TURNURIs: a.cfg.TURNURIs,
	})
	if err != nil {
		a.retryLater("registering with the balancer", err)
		return
	}
	a.registered, a.everRegistered, a.nextTry = true, true, time.Time{}
	a.backoff.Reset()
	a.mu.Lock()
	a.status.Registered, a.status.DesiredState, a.status.LastError = true, state, ""
	a.mu.Unlock()
	a.log.Info("registered", "registrar", a.deps.Registrar.Kind(), "state", state)
	if a.State() == Registering {
		a.setState(Ready)
	}
	if a.drain != nil {
		a.drain.registered() // a new registration: cordon again
	}
	a.resumeDrain(ctx)
}

func (a *Agent) report(ctx context.Context, load fleet.Load, ids []string) {
	a.seq++
	cctx, cancel := context.WithTimeout(ctx, max(a.cfg.ReportInterval, 2*time.Second))
	defer cancel()
	reply, err := a.deps.Registrar.Report(cctx, registrar.Report{Seq: a.seq, Load: load, MeetingIDs: ids, Leaving: a.leaving()})
	if errors.Is(err, registrar.ErrNotRegistered) {
		a.log.Warn("the balancer does not know this node any more: registering again")
		a.registered = false
		a.mu.Lock()
		a.status.Registered = false
		a.mu.Unlock()
		a.nextTry = time.Time{}
		return
	}
	if err != nil {
		if ctx.Err() != nil {
			return // stopping
		}
		a.retryLater("reporting to the balancer", err)
		return
	}
	a.mu.Lock()
	a.status.LastReportAt, a.status.DesiredState, a.status.LastError = a.cfg.Clock.Now(), reply.State, ""
	a.status.TURNServers = reply.TURNServers
	if t, ok := a.deps.Registrar.(interface{ ReportTransport() string }); ok {
		a.status.ReportTransport = t.ReportTransport()
	}
	a.mu.Unlock()
	if a.deps.TURN != nil {
		a.offerTURN(turnJob{servers: reply.TURNServers, meetings: load.Meetings})
	}
	switch d := a.drain; {
	case reply.State == fleet.Cordoned && d == nil:
		a.log.Info("cordoned at the balancer by an operator: draining")
		// The node is cordoned already: the drain does not ask again. A
		// cordon of its own could land after the operator enabled the node
		// again, and cordon it for good.
		now := a.cfg.Clock.Now()
		a.startDrainRun(ctx, &drainRun{source: SourceBalancer, start: now, deadline: now.Add(a.cfg.DrainDeadline), phase: drainWait, cordoned: true})
	case reply.State == fleet.Enabled && d != nil && d.source == SourceBalancer && d.cordoned && d.cancellable():
		a.log.Info("enabled again at the balancer: drain cancelled")
		a.endDrain()
	}
}

// retryLater notes a failure and schedules the next try with backoff; the
// agent keeps measuring locally meanwhile.
func (a *Agent) retryLater(what string, err error) {
	wait := a.backoff.Next()
	if errors.Is(err, registrar.ErrUnauthorized) {
		// Credentials do not fix themselves: ask again only once a minute
		// (with the default interval), the operator will restart us anyway.
		wait = max(wait, 12*a.cfg.ReportInterval)
	}
	a.nextTry = a.cfg.Clock.Now().Add(wait)
	level := slog.LevelWarn
	if errors.Is(err, registrar.ErrRejected) {
		// Another node holds our name, or the balancer found the node's BBB
		// not answering with our secret: retrying cannot fix it, the
		// operator must act.
		level = slog.LevelError
	}
	a.log.Log(context.Background(), level, what+" failed; retrying", "err", err, "retry_in", wait.Round(time.Millisecond))
	a.mu.Lock()
	a.status.LastError = fmt.Sprintf("%s: %v", what, err)
	a.mu.Unlock()
}

// applyHost copies the host's figures into a load report, leaving the BBB
// figures alone.
func applyHost(l *fleet.Load, s host.Sample) {
	l.CPUPercent = s.CPUPercent
	l.CPUCores = s.CPUCores
	l.Load1, l.Load5, l.Load15 = s.Load1, s.Load5, s.Load15
	l.MemTotalBytes = s.MemTotalBytes
	l.MemUsedBytes = s.MemUsedBytes
	l.NetRxBytesPerSec = s.NetRxBytesPerSec
	l.NetTxBytesPerSec = s.NetTxBytesPerSec
	l.DiskFreeBytes = s.DiskFreeBytes
}

// bbbHealth logs a change of why the node's BBB fails (a fleet.BBBReason,
// "" when it answers) once, not per report: an ERROR with the fix when BBB
// refuses the agent's checksum (the configured secret is wrong, and the
// balancer, which signs with the same secret, gets the same answer for every
// call), a WARN for the other failures, an INFO when BBB answers again.
func (a *Agent) bbbHealth(reason string) {
	was := a.bbbFailReason
	if reason == was {
		return
	}
	a.bbbFailReason = reason
	switch {
	case reason == "":
		a.log.Info("the node's BBB answers again", "was", was)
	case fleet.ReasonClass(reason) == fleet.ChecksumError:
		a.log.Error("the node's BBB refuses the agent's checksum: the BBB secret is wrong; fix --bbb-secret (or remove it to read securitySalt from bbb-web.properties; `bbb-conf --secret` prints the right one)", "reason", reason)
	default:
		a.log.Warn("the node's BBB fails; the balancer shows why and places new meetings elsewhere while others answer", "reason", reason)
	}
}
