package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/bbb-agent/bbb-agent/internal/fsutil"
)

// drainFile is the drain under way, kept in the state directory so that an
// agent stopped or killed mid-drain (an upgrade, a crash, the OOM killer)
// resumes it after its restart with the same source and deadline, instead of
// starting over or forgetting that the host is going away.
const drainFile = "drain.json"

type savedDrain struct {
	Source    DrainSource `json:"source"`
	StartedAt time.Time   `json:"started_at"`
	Deadline  time.Time   `json:"deadline"`
	// Leaving: the deadline passed with meetings running and the host was
	// released (drainLeaving); a resumed drain leaves again without
	// releasing twice.
	Leaving bool `json:"leaving,omitempty"`
}

// saveDrain records d; a failure is logged, the drain goes on.
func (a *Agent) saveDrain(d *drainRun) {
	if a.cfg.StateDir == "" {
		return
	}
	b, err := json.Marshal(savedDrain{Source: d.source, StartedAt: d.start, Deadline: d.deadline, Leaving: d.released})
	if err == nil {
		err = fsutil.WriteFile(filepath.Join(a.cfg.StateDir, drainFile), append(b, '\n'), 0o600)
	}
	if err != nil {
		a.log.Warn("keeping the drain in the state directory: a restart would not resume it", "err", err)
	}
}

// forgetDrain removes the record of a drain that finished or was cancelled.
func (a *Agent) forgetDrain() {
	if a.cfg.StateDir == "" {
		return
	}
	if err := os.Remove(filepath.Join(a.cfg.StateDir, drainFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		a.log.Warn("removing the finished drain from the state directory", "err", err)
	}
}

// loadDrain reads a drain an earlier run of the agent left unfinished.
func (a *Agent) loadDrain() (*savedDrain, error) {
	if a.cfg.StateDir == "" {
		return nil, nil
	}
	b, err := os.ReadFile(filepath.Join(a.cfg.StateDir, drainFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var s savedDrain
	if err := json.Unmarshal(b, &s); err != nil || s.Source == "" || s.Deadline.IsZero() {
		return nil, fmt.Errorf("%s is not a drain record (%v): ignoring it", filepath.Join(a.cfg.StateDir, drainFile), err)
	}
	return &s, nil
}

// resumeDrain starts the drain an earlier run left unfinished, once the node
// is registered again (a drain needs the balancer to cordon at).
func (a *Agent) resumeDrain(ctx context.Context) {
	s := a.pendingDrain
	if s == nil || a.drain != nil {
		return
	}
	a.pendingDrain = nil
	a.log.Info("resuming the drain an earlier run left unfinished", "source", s.Source, "started_at", s.StartedAt, "deadline", s.Deadline, "leaving", s.Leaving)
	if s.Leaving && a.deps.Shutdown != nil {
		// This run took logind's delay lock at its start; the drain had
		// released the host already.
		if err := a.deps.Shutdown.Release(); err != nil {
			a.log.Warn("releasing the shutdown delay lock", "err", err)
		}
	}
	a.startDrainRun(ctx, &drainRun{source: s.Source, start: s.StartedAt, deadline: s.Deadline, phase: drainCordon, released: s.Leaving})
}
