package turn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultPath is where bbb-web reads its TURN and STUN servers.
const DefaultPath = "/etc/bigbluebutton/turn-stun-servers.xml"

// BBBWebUnit is the one unit restarted after the file changes: bbb-web
// reads the file at start only. Never `bbb-conf --restart`, which ends
// every meeting.
const BBBWebUnit = "bbb-web.service"

// Restarter restarts a systemd unit (systemd.Units over D-Bus).
type Restarter interface {
	RestartUnit(ctx context.Context, name string) error
}

// ProbeFunc probes one server; Probe is the real one.
type ProbeFunc func(ctx context.Context, uri URI, secret string) Result

// Manager keeps a BBB node's turn-stun-servers.xml pointed at live, working
// TURN servers. Sync is called with the servers the balancer (or DNS) offers
// and the node's meeting count; the agent calls it beside its report loop,
// never inside it.
type Manager struct {
	Path      string        // DefaultPath unless set
	Secret    string        // coturn's static-auth-secret, shared by the fleet
	TTL       time.Duration // credential lifetime BBB hands out (default 24 h)
	Unit      string        // BBBWebUnit unless set
	Restarter Restarter
	Probe     ProbeFunc // Probe unless set
	// ProbeEvery is how long a probe result is trusted (default 1 min): a
	// new server is probed at once, a known one once a minute.
	ProbeEvery time.Duration
	// ProbeBudget bounds all the probes of one Sync together: the
	// candidates are probed in parallel, and one that has not answered
	// within the budget counts as failed (default DefaultProbeTimeout).
	ProbeBudget time.Duration
	Clock       func() time.Time
	Log         *slog.Logger

	mu      sync.Mutex
	probes  map[string]probed
	pending bool // the file changed, bbb-web not restarted yet
	status  Status
}

type probed struct {
	res Result
	at  time.Time
}

// Status is what `bbb-agent status` shows about TURN.
type Status struct {
	// InUse are the servers written to the file.
	InUse []string `json:"in_use"`
	// Probes are the last results for every candidate.
	Probes []ProbeStatus `json:"probes"`
	// WrittenAt is when the agent last wrote the file.
	WrittenAt time.Time `json:"written_at,omitzero"`
	// RestartPending: the file changed while meetings ran; bbb-web is
	// restarted once the node is idle.
	RestartPending bool      `json:"restart_pending"`
	RestartedAt    time.Time `json:"restarted_at,omitzero"`
	Restarts       int       `json:"restarts"`
	LastError      string    `json:"last_error,omitempty"`
}

// ProbeStatus is one candidate's probe.
type ProbeStatus struct {
	URI       string    `json:"uri"`
	OK        bool      `json:"ok"`
	RTTMillis float64   `json:"rtt_ms,omitempty"`
	Error     string    `json:"error,omitempty"`
	CheckedAt time.Time `json:"checked_at"`
}

// Status returns the last status.
func (m *Manager) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.status
	s.InUse = slices.Clone(s.InUse)
	s.Probes = slices.Clone(s.Probes)
	return s
}

// Sync probes the offered servers, rewrites the file when the working set
// changed, and restarts bbb-web when that is safe: when no meeting runs, or
// right away when the servers in the old file all fail (clients cannot
// connect through them anyway). publish, when not nil, receives the status
// before a changed file is written, so whoever sees the new file finds a
// status that names its servers; Sync returns the final status.
func (m *Manager) Sync(ctx context.Context, offered []string, meetings int, publish func(Status)) Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.defaults()
	now := m.Clock()
	m.status.LastError = ""

	working, probes := m.probeAll(ctx, offered, now)
	m.status.Probes = probes
	current, data, parseErr, readErr := m.current()
	switch {
	case readErr != nil:
		m.fail("reading %s: %v; BBB keeps its last configuration", m.Path, readErr)
	case len(working) == 0:
		m.fail("no working TURN server is offered (%d candidates): the file stays as it is", len(offered))
	default:
		m.update(ctx, working, current, data, parseErr, now, publish)
	}
	if m.pending && meetings == 0 {
		m.restart(ctx, now, "the node is idle")
	}
	m.status.RestartPending = m.pending
	return m.status
}

func (m *Manager) defaults() {
	if m.Path == "" {
		m.Path = DefaultPath
	}
	if m.Unit == "" {
		m.Unit = BBBWebUnit
	}
	if m.TTL <= 0 {
		m.TTL = 24 * time.Hour
	}
	if m.Probe == nil {
		m.Probe = func(ctx context.Context, u URI, secret string) Result { return Probe(ctx, u, secret) }
	}
	if m.ProbeEvery <= 0 {
		m.ProbeEvery = time.Minute
	}
	if m.ProbeBudget <= 0 {
		m.ProbeBudget = DefaultProbeTimeout
	}
	if m.Clock == nil {
		m.Clock = time.Now
	}
	if m.Log == nil {
		m.Log = slog.Default()
	}
	if m.probes == nil {
		m.probes = map[string]probed{}
	}
}

// probeAll probes each distinct candidate (results kept ProbeEvery) and
// returns the working ones, sorted.
func (m *Manager) probeAll(ctx context.Context, uris []string, now time.Time) ([]string, []ProbeStatus) {
	seen := map[string]bool{}
	for _, raw := range uris {
		seen[raw] = true
	}
	// Forget servers no longer offered.
	for k := range m.probes {
		if !seen[k] {
			delete(m.probes, k)
		}
	}
	results := m.probeMany(ctx, uris, now)
	var working []string
	out := make([]ProbeStatus, 0, len(results))
	for raw, res := range results {
		ps := ProbeStatus{URI: raw, OK: res.res.OK(), CheckedAt: res.at}
		if res.res.Err != nil {
			ps.Error = res.res.Err.Error()
		}
		if ps.OK {
			ps.RTTMillis = float64(res.res.RTT.Microseconds()) / 1000
			working = append(working, raw)
		}
		out = append(out, ps)
	}
	slices.Sort(working)
	slices.SortFunc(out, func(a, b ProbeStatus) int { return strings.Compare(a.URI, b.URI) })
	return working, out
}

// probeMany returns a result for every distinct uri: a fresh one from the
// cache, else a new probe. The new probes run in parallel under one
// ProbeBudget, so dead servers cost the budget once, not once each.
func (m *Manager) probeMany(ctx context.Context, uris []string, now time.Time) map[string]probed {
	out := map[string]probed{}
	var stale []string
	for _, raw := range uris {
		if _, ok := out[raw]; ok || slices.Contains(stale, raw) {
			continue
		}
		if p, ok := m.probes[raw]; ok && now.Sub(p.at) < m.ProbeEvery {
			out[raw] = p
			continue
		}
		stale = append(stale, raw)
	}
	if len(stale) == 0 {
		return out
	}
	ctx, cancel := context.WithTimeout(ctx, m.ProbeBudget)
	defer cancel()
	results := make([]Result, len(stale))
	var wg sync.WaitGroup
	for i, raw := range stale {
		u, err := ParseURI(raw)
		if err != nil {
			results[i] = Result{Err: err}
			continue
		}
		wg.Go(func() { results[i] = m.Probe(ctx, u, m.Secret) })
	}
	wg.Wait()
	for i, raw := range stale {
		p := probed{res: results[i], at: now}
		m.probes[raw] = p
		out[raw] = p
	}
	return out
}

// current reads the file as it is (set, and its bytes): a missing file is
// an empty set; a file that cannot be read is readErr, one that does not
// parse parseErr.
func (m *Manager) current() (set Set, data []byte, parseErr, readErr error) {
	data, err := os.ReadFile(m.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return Set{}, nil, nil, nil
	}
	if err != nil {
		return Set{}, nil, nil, err
	}
	set, err = Parse(data)
	return set, data, err, nil
}

func (m *Manager) update(ctx context.Context, working []string, current Set, data []byte, parseErr error, now time.Time, publish func(Status)) {
	desired := Set{}
	for _, raw := range working {
		if strings.HasPrefix(raw, "stun:") {
			desired.STUN = append(desired.STUN, raw)
			continue
		}
		desired.TURN = append(desired.TURN, TURNEntry{URL: raw, Secret: m.Secret, TTL: m.TTL})
		if u, err := ParseURI(raw); err == nil && u.Scheme == "turn" && u.Transport != "tcp" {
			desired.STUN = append(desired.STUN, "stun:"+u.HostPort()) // coturn answers STUN too
		}
	}
	desired = desired.Normalize()
	content, err := Render(desired)
	if err != nil {
		m.fail("rendering the TURN servers: %v", err)
		return
	}
	if parseErr != nil {
		backup, err := BackupUnparsable(m.Path, now)
		if err != nil {
			m.fail("%s cannot be parsed (%v) and cannot be kept aside: %v; the file stays as it is", m.Path, parseErr, err)
			return
		}
		m.Log.Warn("turn-stun-servers.xml cannot be parsed: kept aside and replaced", "path", m.Path, "backup", backup, "err", parseErr)
	}
	// Probe bbb-web's current servers before the write, so that a restart
	// the new file needs follows the write at once.
	oldWorks := m.oldSetWorks(ctx, current, now)
	if publish != nil && !bytes.Equal(data, content) {
		next := m.status
		next.InUse, next.WrittenAt = working, now
		next.Probes = slices.Clone(next.Probes)
		publish(next)
	}
	changed, err := WriteIfChanged(m.Path, content)
	if err != nil {
		m.fail("writing %s: %v; BBB keeps its last configuration", m.Path, err)
		return
	}
	m.status.InUse = working
	if !changed {
		return
	}
	m.status.WrittenAt = now
	m.Log.Info("TURN servers written", "path", m.Path, "servers", working)
	if oldWorks {
		m.pending = true // restarted at the first idle report
		return
	}
	m.restart(ctx, now, "none of the servers bbb-web used works")
}

// oldSetWorks says whether bbb-web's current servers still include a
// working TURN server: then a restart can wait for the node to be idle.
func (m *Manager) oldSetWorks(ctx context.Context, old Set, now time.Time) bool {
	var urls []string
	for _, e := range old.TURN {
		urls = append(urls, e.URL)
	}
	for _, p := range m.probeMany(ctx, urls, now) {
		if p.res.OK() {
			return true
		}
	}
	return false
}

func (m *Manager) restart(ctx context.Context, now time.Time, why string) {
	if m.Restarter == nil {
		m.fail("bbb-web must be restarted to use the new TURN servers, but systemd is not reachable: run systemctl restart %s", m.Unit)
		return
	}
	if err := m.Restarter.RestartUnit(ctx, m.Unit); err != nil {
		m.pending = true
		m.fail("restarting %s: %v", m.Unit, err)
		return
	}
	m.pending = false
	m.status.RestartedAt, m.status.Restarts = now, m.status.Restarts+1
	m.Log.Info("bbb-web restarted for the new TURN servers", "unit", m.Unit, "why", why)
}

func (m *Manager) fail(format string, args ...any) {
	m.status.LastError = fmt.Sprintf(format, args...)
	m.Log.Warn("TURN: " + m.status.LastError)
}
