package agent

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/bbb-agent/bbb-agent/agent/host"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/dnsupdate"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/clock"
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
	// host is released, and a node whose meetings still run stays registered
	// and cordoned until they end or the host stops (drainLeaving).
	DrainDeadline time.Duration
	// DrainUnknownGrace is how long a drain takes a BBB that does not answer
	// for meetings unknown (it waits); longer, they count as none left.
	DrainUnknownGrace time.Duration
	// StateDir keeps a drain under way across a restart ("" : not kept).
	StateDir string
	// HeartbeatEvery is how often a scale-in drain extends the lifecycle hook.
	HeartbeatEvery time.Duration
	// TURNURIs are what a TURN node offers (role turn).
	TURNURIs []string
	// FQDN and DNSProvider describe the node's DNS records (status only);
	// DNSWait bounds the wait for them to answer before registering.
	FQDN        string
	DNSProvider string
	DNSWait     time.Duration
	// RecordingsStorage names where recordings go (status only).
	RecordingsStorage string
	// DrainWaitRecordings makes a drain wait, within its deadline, for
	// BBB's processing queue to empty and Deps.Recordings to ship its
	// backlog.
	DrainWaitRecordings bool
	// Clock is the agent's time source (the real clock unless set): every
	// wait of the agent goes through it, so tests drive them with a fake.
	Clock  Clock
	Logger *slog.Logger
}

// Clock tells the time and waits: clock.Real, or in tests testenv.Clock.
type Clock = clock.Clock

// Deps are the parts the agent talks to; only Registrar is required.
type Deps struct {
	Registrar registrar.Registrar
	// BBB is the node's own BBB API (role bbb).
	BBB *bbb.Client
	// Host reads the host's figures for a load report (host.Collector's
	// Sample).
	Host func(ctx context.Context) (host.Sample, error)
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
	// Recordings ships the node's recordings (role bbb; nil: none).
	Recordings Recordings
}

// TURNSync is turn.Manager as the agent uses it.
type TURNSync interface {
	Sync(ctx context.Context, offered []string, meetings int, publish func(turn.Status)) turn.Status
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
	// turnJobs holds the latest report's TURN servers for the sync that
	// runs beside the loop (one slot: the newest offer replaces an older one).
	turnJobs chan turnJob

	mu     sync.RWMutex
	status Status
	// drainWake is closed at the next change of the drain's status (admin
	// socket watchers, drain --wait); nil until someone waits.
	drainWake chan struct{}
	// bbbPolls keeps the report cycle's getMeetings for the exporter-compatible metrics.
	bbbPolls bbbPolls

	// Loop-owned.
	registered     bool
	everRegistered bool
	// drain is the drain under way, nil when none: its phase, its source,
	// its deadline (drain.go).
	drain        *drainRun
	pendingDrain *savedDrain // left unfinished by an earlier run; resumed once registered
	// bbbFailReason: why BBB last failed, "" while it answers (said once).
	bbbFailReason string
	seq           int64
	backoff       registrar.Backoff
	nextTry       time.Time
	scaleInErr    string // the last lifecycle-state error logged
	dnsDone       bool   // records published and answering, registration may go on
	dnsApplied    bool   // records exist that removeDNS must take back
	dnsAppliedAt  time.Time
	ticks         int
	fatal         error  // stops the agent
	bbbVersion    string // from the API root
	versionAt     time.Time
	// recScannedFor is the drain measureRecordings last scanned for;
	// recProcessing the processing backlog it last read.
	recScannedFor *drainRun
	recProcessing int
}

type command struct {
	drain bool
	req   drainRequest
	reply chan error
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
		cfg.ReportInterval = fleet.DefaultReportInterval
	}
	if cfg.DrainDeadline <= 0 {
		cfg.DrainDeadline = DefaultDrainDeadline
	}
	if cfg.DrainUnknownGrace <= 0 {
		cfg.DrainUnknownGrace = DefaultDrainUnknownGrace
	}
	if cfg.HeartbeatEvery <= 0 {
		cfg.HeartbeatEvery = DefaultHeartbeatEvery
	}
	if cfg.DNSWait <= 0 {
		cfg.DNSWait = dnsupdate.DefaultWaitTimeout
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &Agent{
		cfg: cfg, deps: deps, cmds: make(chan command), turnJobs: make(chan turnJob, 1),
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
