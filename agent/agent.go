package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/bbb-agent/bbb-agent/agentapi"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/registrar"
	"github.com/bbb-agent/bbb-agent/turn"
)

// Version is the agent's version, set by the command.
var Version = "dev"

// Config is what the agent needs once the command has resolved identity,
// BBB discovery and the registrar.
type Config struct {
	Node           string
	Role           fleet.Role
	ServerURL      string // the BBB server URL (role bbb)
	Secret         string // the BBB API secret (role bbb)
	Tags           []string
	LoadMultiplier float64
	// Addresses are the node's IP addresses, as resolved at start.
	Addresses      Addresses
	ReportInterval time.Duration
	// DrainDeadline bounds the wait for meetings to end; at the deadline the
	// agent deregisters anyway and the meetings still running end with the host.
	DrainDeadline time.Duration
	// HeartbeatEvery is how often a scale-in drain extends the lifecycle hook.
	HeartbeatEvery time.Duration
	// TURNURIs are what a TURN node offers (role turn).
	TURNURIs []string
	// FQDN and DNSProvider describe the node's DNS records (status only);
	// DNSWait bounds the wait for them to answer before registering.
	FQDN        string
	DNSProvider string
	DNSWait     time.Duration
	Clock       func() time.Time
	Logger      *slog.Logger
}

// Deps are the parts the agent talks to; only Registrar is required.
type Deps struct {
	Registrar registrar.Registrar
	// BBB is the node's own BBB API (role bbb).
	BBB *bbb.Client
	// Host fills the host figures of a load report.
	Host func(ctx context.Context, l *fleet.Load) error
	// Notifier tells systemd what the agent is doing.
	Notifier Notifier
	// ScaleIn is the Auto Scaling lifecycle, when the node is in a group.
	ScaleIn ScaleIn
	// Shutdown is the logind delay lock, when logind is reachable.
	Shutdown ShutdownGuard
	// DNS keeps the node's records (nil: someone else manages them).
	DNS DNS
	// Addresses re-reads the node's addresses, to follow a change.
	Addresses func(ctx context.Context) (Addresses, error)
	// TURN keeps a BBB node's turn-stun-servers.xml (role bbb).
	TURN TURNSync
	// TURNDiscovery finds TURN servers in DNS, for fleets whose balancer
	// does not name them (Scalelite).
	TURNDiscovery func(ctx context.Context) ([]string, error)
	// SelfProbe checks a TURN node's own server (role turn): a STUN
	// binding and an allocation with the fleet's secret.
	SelfProbe func(ctx context.Context) error
}

// TURNSync is turn.Manager as the agent uses it.
type TURNSync interface {
	Sync(ctx context.Context, offered []string, meetings int) turn.Status
}

// Notifier is the part of sd_notify the agent uses.
type Notifier interface {
	Ready() error
	Status(msg string) error
	Stopping() error
}

// ScaleIn is an Auto Scaling group's lifecycle hook as the agent sees it.
type ScaleIn interface {
	// Terminating reports whether the group is terminating this instance.
	Terminating(ctx context.Context) (bool, error)
	// Heartbeat extends the hook's wait while the drain goes on.
	Heartbeat(ctx context.Context) error
	// Complete lets the termination go on (CONTINUE); called once per drain.
	Complete(ctx context.Context) error
}

// ShutdownGuard is logind's delay lock: Events delivers true when a
// shutdown starts and false when it is cancelled; Release lets the shutdown
// proceed; Reacquire takes the lock again after a cancel.
type ShutdownGuard interface {
	Events() <-chan bool
	Release() error
	Reacquire(ctx context.Context) error
}

// Agent runs one node's lifecycle. Its loop owns all state; the admin API
// and the drain sources talk to it through methods that are safe to call
// from any goroutine.
type Agent struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	cmds chan command

	mu     sync.RWMutex
	status Status

	// Loop-owned.
	registered     bool
	everRegistered bool
	cordoned       bool // cordon sent to the registrar in this drain
	cordonFailed   bool
	emptyTicks     int // consecutive measurements after the cordon that found no meetings
	drainSource    DrainSource
	drainStart     time.Time
	seq            int64
	backoff        registrar.Backoff
	nextTry        time.Time
	lastBeat       time.Time
	deregErr       error
	scaleInErr     string // the last lifecycle-state error logged
	dnsDone        bool   // records published and answering, registration may go on
	dnsApplied     bool   // records exist that removeDNS must take back
	dnsAppliedAt   time.Time
	ticks          int
	fatal          error  // stops the agent
	bbbVersion     string // from the API root
	versionAt      time.Time
}

type command struct {
	drain  bool
	source DrainSource
	reply  chan error
}

// New returns an agent; Run starts it.
func New(cfg Config, deps Deps) (*Agent, error) {
	if deps.Registrar == nil {
		return nil, errors.New("agent: no registrar")
	}
	if cfg.Node == "" {
		return nil, errors.New("agent: no node name")
	}
	if cfg.Role == "" {
		cfg.Role = fleet.RoleBBB
	}
	if cfg.Role == fleet.RoleBBB && deps.BBB == nil {
		return nil, errors.New("agent: role bbb needs the node's BBB API")
	}
	if cfg.ReportInterval <= 0 {
		cfg.ReportInterval = 5 * time.Second
	}
	if cfg.DrainDeadline <= 0 {
		cfg.DrainDeadline = 90 * time.Minute
	}
	if cfg.HeartbeatEvery <= 0 {
		cfg.HeartbeatEvery = time.Minute
	}
	if cfg.DNSWait <= 0 {
		cfg.DNSWait = 2 * time.Minute
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &Agent{
		cfg: cfg, deps: deps, cmds: make(chan command),
		log:     cfg.Logger.With("node", cfg.Node),
		backoff: registrar.Backoff{Min: cfg.ReportInterval / 5, Max: 2 * time.Minute, Rand: rand.Float64},
	}
	a.status = Status{Node: cfg.Node, Role: cfg.Role, State: Starting, ServerURL: cfg.ServerURL,
		Registrar: deps.Registrar.Kind(), Version: Version, ReportIntervalSeconds: cfg.ReportInterval.Seconds(), Addresses: cfg.Addresses}
	if deps.DNS != nil {
		a.status.DNS = &DNSStatus{FQDN: cfg.FQDN, Provider: cfg.DNSProvider, State: dnsPending}
	}
	return a, nil
}

// Drain starts a drain (idempotent: a drain under way goes on).
func (a *Agent) Drain(ctx context.Context, src DrainSource) error {
	return a.send(ctx, command{drain: true, source: src})
}

// Undrain cancels a drain that has not finished, if its source allows.
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

// Run registers, reports and drains until the drain is done (nil) or ctx
// ends (ctx.Err()).
func (a *Agent) Run(ctx context.Context) error {
	a.setState(Registering)
	a.notify(func(n Notifier) error { return n.Ready() })
	var shutdowns <-chan bool
	if a.deps.Shutdown != nil {
		shutdowns = a.deps.Shutdown.Events()
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			a.setState(Stopped)
			return ctx.Err()
		case c := <-a.cmds:
			if c.drain {
				a.startDrain(ctx, c.source)
				c.reply <- nil
			} else {
				c.reply <- a.undrain(ctx)
			}
		case starting, ok := <-shutdowns:
			if !ok {
				shutdowns = nil
				continue
			}
			a.shutdownEvent(ctx, starting)
		case <-timer.C:
			a.tick(ctx)
		}
		a.publishStatus()
		if a.fatal != nil {
			a.log.Error("stopping", "err", a.fatal)
			a.setState(Stopped)
			return a.fatal
		}
		if st := a.State(); st == Drained {
			a.setState(Stopped)
			a.publishStatus()
			if a.deregErr != nil {
				return a.deregErr
			}
			return nil
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(a.untilNextTick())
	}
}

// untilNextTick is the report interval, or sooner when a retry is due.
func (a *Agent) untilNextTick() time.Duration {
	d := a.cfg.ReportInterval
	if !a.nextTry.IsZero() {
		if w := a.nextTry.Sub(a.cfg.Clock()); w < d {
			d = max(w, 0)
		}
	}
	return d
}

// tick is one report cycle: measure, register if needed, report, and move a
// drain along.
func (a *Agent) tick(ctx context.Context) {
	now := a.cfg.Clock()
	if !a.nextTry.IsZero() && !now.Before(a.nextTry) {
		a.nextTry = time.Time{} // this tick is the one asked for
	}
	// Emptiness counts only from measurements taken after the cordon (or
	// after trying it: a balancer we cannot reach places nothing on us).
	cordonedBefore := a.cordoned || a.cordonFailed
	load, ids, bbbErr := a.measure(ctx)
	a.mu.Lock()
	a.status.Load = load
	a.status.BBBHealthy = bbbErr == nil
	a.status.BBBError = errString(bbbErr)
	a.mu.Unlock()

	a.ticks++
	if a.deps.DNS != nil && a.drainSource == "" {
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
		a.report(ctx, load, ids)
	}
	a.checkScaleIn(ctx)
	if a.drainSource != "" {
		a.drainStep(ctx, now, load, bbbErr, cordonedBefore)
	}
}

// measure takes the node's figures: the host's, and BBB's meetings.
func (a *Agent) measure(ctx context.Context) (fleet.Load, []string, error) {
	var load fleet.Load
	if a.deps.Host != nil {
		if err := a.deps.Host(ctx, &load); err != nil {
			a.log.Warn("reading host figures", "err", err)
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
	cctx, cancel := context.WithTimeout(ctx, max(a.cfg.ReportInterval, 2*time.Second))
	defer cancel()
	// The API root (no checksum) says which BBB runs; ask now and then.
	if now := a.cfg.Clock(); a.bbbVersion == "" || now.Sub(a.versionAt) > 10*time.Minute {
		if root, err := a.deps.BBB.Root(cctx); err == nil {
			a.bbbVersion, a.versionAt = root.BBBVersion, now
		}
	}
	load.BBBVersion = a.bbbVersion
	meetings, err := a.deps.BBB.GetMeetings(cctx)
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
	if a.drainSource != "" {
		a.cordoned = false // a new registration: cordon again
	}
}

func (a *Agent) report(ctx context.Context, load fleet.Load, ids []string) {
	a.seq++
	cctx, cancel := context.WithTimeout(ctx, max(a.cfg.ReportInterval, 2*time.Second))
	defer cancel()
	reply, err := a.deps.Registrar.Report(cctx, registrar.Report{Seq: a.seq, Load: load, MeetingIDs: ids})
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
	a.status.LastReportAt, a.status.DesiredState, a.status.LastError = a.cfg.Clock(), reply.State, ""
	a.status.TURNServers = reply.TURNServers
	a.mu.Unlock()
	if a.deps.TURN != nil {
		a.syncTURN(ctx, reply.TURNServers, load.Meetings)
	}
	switch {
	case reply.State == fleet.Cordoned && a.drainSource == "":
		a.log.Info("cordoned at the balancer by an operator: draining")
		a.startDrain(ctx, SourceBalancer)
	case reply.State == fleet.Enabled && a.drainSource == SourceBalancer && a.cordoned:
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
	a.nextTry = a.cfg.Clock().Add(wait)
	level := slog.LevelWarn
	if errors.As(err, new(*registrar.ConflictError)) {
		level = slog.LevelError // another node holds our name: the operator must act
	}
	a.log.Log(context.Background(), level, what+" failed; retrying", "err", err, "retry_in", wait.Round(time.Millisecond))
	a.mu.Lock()
	a.status.LastError = fmt.Sprintf("%s: %v", what, err)
	a.mu.Unlock()
}

func (a *Agent) startDrain(ctx context.Context, src DrainSource) {
	if a.drainSource != "" {
		return
	}
	a.drainSource, a.drainStart, a.cordoned, a.cordonFailed, a.emptyTicks = src, a.cfg.Clock(), false, false, 0
	a.setState(Draining)
	a.notify(func(n Notifier) error { return n.Stopping() })
	a.log.Info("drain started", "source", src, "deadline", a.drainStart.Add(a.cfg.DrainDeadline))
	a.mu.Lock()
	a.status.Drain = &DrainStatus{Source: src, StartedAt: a.drainStart, Deadline: a.drainStart.Add(a.cfg.DrainDeadline),
		MeetingsLeft: a.status.Load.Meetings}
	a.mu.Unlock()
	if !a.everRegistered {
		a.finishDrain(ctx, "never registered")
		return
	}
	a.cordon(ctx)
	a.nextTry = a.cfg.Clock() // measure again now rather than at the next interval
}

// cordon asks the registrar for no new meetings, once per drain.
func (a *Agent) cordon(ctx context.Context) {
	if !a.registered || a.cordoned {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := a.deps.Registrar.Cordon(cctx)
	cancel()
	if err != nil {
		a.cordonFailed = true
		a.retryLater("cordoning at the balancer", err)
		return
	}
	a.cordoned, a.cordonFailed, a.emptyTicks = true, false, 0
	a.log.Info("cordoned at the balancer: no new meetings")
}

func (a *Agent) undrain(ctx context.Context) error {
	if a.drainSource == "" {
		return errors.New("the node is not draining")
	}
	if err := a.drainSource.undoable(); err != nil {
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

// endDrain returns to ready after a cancelled drain.
func (a *Agent) endDrain() {
	a.drainSource, a.cordoned, a.cordonFailed = "", false, false
	a.mu.Lock()
	a.status.Drain = nil
	a.mu.Unlock()
	if a.registered {
		a.setState(Ready)
	} else {
		a.setState(Registering)
	}
}

func (a *Agent) shutdownEvent(ctx context.Context, starting bool) {
	switch {
	case starting:
		a.log.Info("logind: the system is shutting down: draining")
		a.startDrain(ctx, SourceShutdown)
	case a.drainSource == SourceShutdown:
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

// drainStep moves a drain along: cordon once, then wait for the meetings to
// end (or the deadline), then deregister and finish. The node counts as empty
// after two measurements in a row, both taken after the cordon, find no
// meetings: a create placed just before the cordon may still be on its way.
func (a *Agent) drainStep(ctx context.Context, now time.Time, load fleet.Load, bbbErr error, cordonedBefore bool) {
	if !a.everRegistered {
		a.finishDrain(ctx, "never registered")
		return
	}
	a.cordon(ctx)
	if a.drainSource == SourceScaleIn && now.Sub(a.lastBeat) >= a.cfg.HeartbeatEvery {
		if err := a.deps.ScaleIn.Heartbeat(ctx); err != nil {
			a.log.Warn("auto scaling lifecycle heartbeat", "err", err)
		} else {
			a.lastBeat = now
		}
	}
	left := load.Meetings
	a.mu.Lock()
	if a.status.Drain != nil {
		a.status.Drain.MeetingsLeft = left
	}
	a.mu.Unlock()
	if bbbErr == nil && left == 0 && cordonedBefore {
		a.emptyTicks++
	} else {
		a.emptyTicks = 0
	}
	deadline := a.drainStart.Add(a.cfg.DrainDeadline)
	switch {
	case a.emptyTicks >= 2 || !a.registered && bbbErr == nil && left == 0:
		a.finishDrain(ctx, "no meetings left")
	case !now.Before(deadline):
		a.log.Warn("drain deadline reached with meetings still running: deregistering anyway; they end when the host goes away",
			"meetings_left", left, "deadline", deadline)
		a.finishDrain(ctx, "deadline reached")
	default:
		msg := fmt.Sprintf("draining: %d meetings left", left)
		if bbbErr != nil {
			msg = "draining: BBB does not answer, waiting"
		}
		a.notify(func(n Notifier) error { return n.Status(msg) })
		if left == 0 && a.emptyTicks > 0 {
			a.nextTry = now.Add(a.cfg.ReportInterval / 2) // confirm soon
		}
	}
}

// finishDrain deregisters and ends the lifecycle.
func (a *Agent) finishDrain(ctx context.Context, why string) {
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
			case <-time.After(min(time.Duration(attempt+1)*a.cfg.ReportInterval, 5*time.Second)):
			}
		}
		if err != nil {
			a.deregErr = fmt.Errorf("drain finished (%s) but deregistration failed: %w", why, err)
			a.log.Error("deregistration failed; the balancer will see the node go offline", "err", err)
		} else {
			a.log.Info("deregistered", "why", why)
		}
	}
	a.registered = false
	if a.deps.DNS != nil && a.dnsApplied {
		if err := a.removeDNS(ctx); err != nil && a.deregErr == nil {
			a.deregErr = fmt.Errorf("drain finished (%s) but the DNS records were not removed: %w", why, err)
		}
	}
	if a.drainSource == SourceScaleIn && a.deps.ScaleIn != nil {
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
	a.status.Registered = false
	if a.status.Drain != nil {
		a.status.Drain.Finished = why
	}
	a.mu.Unlock()
	a.notify(func(n Notifier) error { return n.Status("drained: " + why) })
	a.setState(Drained)
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
// longest bounded step of the loop (deregistration retries at the end of a
// drain), so only a loop that is really stuck gets restarted.
func (a *Agent) Healthy() bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return !a.status.updated.IsZero() && a.cfg.Clock().Sub(a.status.updated) < 3*a.cfg.ReportInterval+2*time.Minute
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// syncTURN points BBB at the live TURN servers: the balancer's list, or
// DNS when the balancer names none.
func (a *Agent) syncTURN(ctx context.Context, servers []agentapi.TURNServer, meetings int) {
	var offered []string
	for _, s := range servers {
		offered = append(offered, s.URIs...)
	}
	if len(offered) == 0 && a.deps.TURNDiscovery != nil {
		found, err := a.deps.TURNDiscovery(ctx)
		if err != nil {
			a.log.Warn("finding TURN servers in DNS", "err", err)
		}
		offered = found
	}
	st := a.deps.TURN.Sync(ctx, offered, meetings)
	a.mu.Lock()
	a.status.TURN = &st
	a.mu.Unlock()
}

// checkScaleIn drains when the Auto Scaling group terminates the instance.
func (a *Agent) checkScaleIn(ctx context.Context) {
	if a.deps.ScaleIn == nil || a.drainSource != "" {
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
